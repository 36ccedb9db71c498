"""``vitabench pva render|train-clip|tune-prompts|align|check|evaluate`` and ``vitabench transfer``.

A typical pipeline (see ``vitabench.pva``)::

    vitabench pva render --suite libero_object --tasks 0 --domains canonical,seen --out runs/pva/seen.npz
    vitabench pva train-clip --data runs/pva/seen.npz --out runs/pva/clip       # no pretrained CLIP here
    vitabench pva tune-prompts --data runs/pva/seen.npz --clip runs/pva/clip --out runs/pva/prompts
    vitabench pva align --data runs/pva/seen.npz --prompts runs/pva/prompts --out runs/pva/aligner
    vitabench pva evaluate --policy teacher --policy-arg checkpoint=DIR --aligner runs/pva/aligner \\
        --suite libero_object --tasks 0 --domains canonical,seen/warm_light,unseen/dusk --out runs/pva/transfer
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vitabench.cli.common import CliError, echo_json

app = typer.Typer(no_args_is_help=True, help="PVA: visual domains, prompt tuning, the visual aligner, zero-shot transfer.")

DATA = typer.Option(..., "--data", help="Domain images written by vitabench pva render (.npz).")


def _log(message: str) -> None:
    typer.echo(message, err=True)


def _data(path: Path, *, training: bool):
    from vitabench.pva.data import DomainImages

    data = DomainImages.load(path)
    unseen = [n for n, s in zip(data.domain_names, data.domain_sets) if s == "unseen"]
    if training and unseen:
        raise CliError(f"{path} holds unseen domain(s) {', '.join(unseen)}; unseen domains are for evaluation only")
    return data


def _threads() -> None:
    import torch

    torch.set_num_threads(1)


def _domain_names(text: str) -> list[str]:
    from vitabench.envs.domains import resolve_domains

    names: list[str] = []
    for part in text.split(","):
        names.extend(d.name for d in resolve_domains(part.strip()) if d.name not in names)
    return names


@app.command("render")
def render(
    suite: str = typer.Option("libero_object", "--suite"),
    tasks: str = typer.Option("0", "--tasks", help="Task ids, e.g. 0,3 or 0-4."),
    domains: str = typer.Option("canonical,seen", "--domains", help="Comma-separated domains or sets."),
    init_states: str = typer.Option("0-5", "--init-states", help="Init states the scripted expert starts from."),
    steps: int = typer.Option(120, "--steps", help="Expert steps per episode."),
    every: int = typer.Option(12, "--every", help="Render in every domain each EVERY steps."),
    protocol: str = typer.Option("distill_64", "--protocol", help="Protocol (cameras, resolution, settle)."),
    out: Path = typer.Option(..., "--out", help="Output .npz file."),
) -> None:
    """Render LIBERO scenes along scripted-expert episodes in several visual domains."""
    from vitabench.cli.run import parse_tasks
    from vitabench.pva.data import render_domain_images

    _threads()
    data = render_domain_images(
        suite, parse_tasks(tasks) or [0], _domain_names(domains), protocol=protocol,
        init_states=parse_tasks(init_states) or [0], steps=steps, every=every, progress=_log,
    )
    typer.echo(f"wrote {data.save(out)}: {len(data)} images of {', '.join(data.domain_names)}")


@app.command("train-clip")
def train_clip(
    data: Path = DATA,
    out: Path = typer.Option(..., "--out", help="CLIP directory to write (from_pretrained format)."),
    size: str = typer.Option("small", "--size", help="tiny | small."),
    steps: int = typer.Option(300, "--steps"),
    batch: int = typer.Option(64, "--batch"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Stage 0 (no pretrained CLIP at hand): train a small CLIP on rendered images and domain descriptions."""
    from vitabench.pva.train import train_clip as train

    _threads()
    result = train(_data(data, training=True), out, size=size, steps=steps, batch=batch, seed=seed, log=_log)
    typer.echo(f"wrote {result.out}: loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}")


@app.command("tune-prompts")
def tune_prompts(
    data: Path = DATA,
    clip: Path = typer.Option(..., "--clip", help="Local CLIP directory (from_pretrained)."),
    out: Path = typer.Option(..., "--out"),
    steps: int = typer.Option(200, "--steps"),
    batch: int = typer.Option(64, "--batch"),
    n_global: int = typer.Option(4, "--global-tokens"),
    n_domain: int = typer.Option(4, "--domain-tokens"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Stage 1: global, domain-specific and instance-conditional prompt tokens (CLIP frozen)."""
    from vitabench.pva.train import tune_prompts as tune

    _threads()
    result = tune(_data(data, training=True), clip, out, steps=steps, batch=batch, n_global=n_global, n_domain=n_domain, seed=seed, log=_log)
    typer.echo(f"wrote {result.out}: loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}")


@app.command("align")
def align(
    data: Path = DATA,
    prompts: Path = typer.Option(..., "--prompts", help="Directory written by vitabench pva tune-prompts."),
    out: Path = typer.Option(..., "--out"),
    steps: int = typer.Option(300, "--steps"),
    batch: int = typer.Option(32, "--batch"),
    width: int = typer.Option(16, "--width", help="Aligner channels at full resolution."),
    global_weight: float = typer.Option(1.0, "--global-weight", help="Whole image vs canonical prompt."),
    patch_weight: float = typer.Option(0.5, "--patch-weight", help="Random crops vs canonical prompt."),
    content_weight: float = typer.Option(2.0, "--content-weight", help="Luminance edges of output vs input."),
    identity_weight: float = typer.Option(10.0, "--identity-weight", help="Canonical images left unchanged."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Stage 2: train the aligner towards the canonical prompt embedding (global, patch, content losses)."""
    from vitabench.pva.train import AlignWeights, train_aligner

    _threads()
    weights = AlignWeights(global_weight, patch_weight, content_weight, identity_weight)
    result = train_aligner(
        _data(data, training=True), prompts, out, steps=steps, batch=batch, width=width, weights=weights, seed=seed, log=_log
    )
    typer.echo(f"wrote {result.out}: loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}")


@app.command("check")
def check(
    aligner: Path = typer.Option(..., "--aligner"),
    data: Path = DATA,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Pixel error to the canonical render of the same scene, per domain, before and after alignment."""
    from vitabench.pva.models import Aligner
    from vitabench.pva.train import alignment_report

    _threads()
    rows = alignment_report(Aligner.load(aligner), _data(data, training=False))
    if as_json:
        echo_json(rows)
        return
    typer.echo("| set | domain | images | error before | error after |\n|---|---|---|---|---|")
    for r in rows:
        typer.echo(f"| {r['set']} | {r['domain']} | {r['images']} | {r['error_before']:.1f} | {r['error_after']:.1f} |")


@app.command("evaluate")
def evaluate(
    policy: str = typer.Option(..., "--policy", help="The inner policy (registered name)."),
    policy_arg: List[str] = typer.Option([], "--policy-arg", help="KEY=VALUE argument of the inner policy; repeatable."),
    aligner: Optional[Path] = typer.Option(None, "--aligner", help="Aligner directory; without it only the plain policy runs."),
    suite: str = typer.Option("libero_object", "--suite"),
    tasks: Optional[str] = typer.Option(None, "--tasks"),
    domains: str = typer.Option("canonical,seen,unseen", "--domains", help="Comma-separated domains or sets."),
    episodes_per_task: Optional[int] = typer.Option(None, "--episodes-per-task"),
    protocol: str = typer.Option("distill_64", "--protocol"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps"),
    workers: int = typer.Option(1, "--workers"),
    out: Path = typer.Option(..., "--out", help="Parent directory: one run per (plain|pva, domain); reruns resume."),
) -> None:
    """Stage 3: the policy with and without the aligner in each domain (vitabench run), then the transfer table."""
    from vitabench.api.protocol import load_protocol
    from vitabench.cli.policy_options import parse_policy_args
    from vitabench.cli.run import parse_tasks
    from vitabench.envs.domains import resolve_domain
    from vitabench.report.transfer import render_transfer, transfer_table
    from vitabench.runner import print_summary, run_evaluation

    inner_args = parse_policy_args(policy_arg, None)
    variants = [("plain", policy, inner_args)]
    if aligner is not None:
        variants.append(("pva", "pva", {"aligner": str(aligner), "inner": policy, "inner_args": inner_args}))
    base = load_protocol(protocol)
    run_dirs = []
    for name in _domain_names(domains):
        domain = resolve_domain(name)
        for variant, policy_name, args in variants:
            run_dir = out / variant / f"{domain.set}_{domain.name}"
            _log(f"{variant} in {domain.ref} -> {run_dir}")
            print_summary(run_evaluation(
                policy_name, args, suite, tasks=parse_tasks(tasks), episodes_per_task=episodes_per_task,
                protocol=base.with_domain(domain), max_steps=max_steps, workers=workers, out=run_dir, resume=True,
            ))
            run_dirs.append(run_dir)
    typer.echo(render_transfer(transfer_table(run_dirs)))


def transfer(
    run_dirs: List[Path] = typer.Argument(..., help="Run directories (vitabench run --domain ..., with and without --policy pva)."),
    fmt: str = typer.Option("md", "--format", "-f", help="md | csv | json."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to FILE instead of stdout."),
) -> None:
    """The zero-shot transfer table: success on canonical, seen and unseen domains, with and without the aligner."""
    from vitabench.report.transfer import render_transfer, transfer_table

    text = render_transfer(transfer_table(run_dirs), fmt)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        typer.echo(f"wrote {out}", err=True)


def register(root: typer.Typer) -> None:
    """Add ``vitabench pva ...`` and ``vitabench transfer`` to the app."""
    root.add_typer(app, name="pva")
    root.command("transfer")(transfer)
