"""``vitabench collect``: demonstrations from a policy on real LIBERO episodes, as LIBERO-format HDF5."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vitabench.cli.common import CliError


def collect(
    policy: str = typer.Option("scripted", "--policy", help="Registered policy name (usually the scripted expert)."),
    policy_arg: list[str] = typer.Option([], "--policy-arg", help="KEY=VALUE policy argument (JSON value or string); repeatable."),
    suite: str = typer.Option(..., "--suite", help="LIBERO suite name."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Task ids, e.g. 0,3 or 0-4 (default: all)."),
    episodes: int = typer.Option(..., "--episodes", help="Episodes run per task; only successful ones are kept."),
    first_init_state: int = typer.Option(0, "--first-init-state", help="Episode k of a task starts from init state FIRST+k."),
    protocol: str = typer.Option("distill_64", "--protocol", help="Protocol preset or file: cameras, resolution, settle steps, step limit."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Override every step limit (derived protocol)."),
    noise: float = typer.Option(0.0, "--noise", help="DART: Gaussian noise (std, action units) on the executed arm actions; labels stay clean."),
    dagger: Optional[str] = typer.Option(None, "--dagger", help="DAgger: this teacher checkpoint (directory or shipped name) acts, POLICY labels every step; all episodes kept."),
    dagger_ensemble: str = typer.Option("0.01", "--dagger-ensemble", help="The learner's temporal ensembling weight, as it is evaluated (none: raw chunks)."),
    beta: float = typer.Option(0.0, "--beta", help="DAgger: probability that a step runs POLICY's action instead of the learner's."),
    out: Path = typer.Option(..., "--out", help="New HDF5 file to write."),
) -> None:
    """Run POLICY on SUITE's tasks and keep the successful episodes as demonstrations in OUT;
    with --dagger, a trained teacher acts and POLICY labels the states it visits."""
    from rich.console import Console

    from vitabench.cli.policy_options import parse_policy_args
    from vitabench.cli.run import parse_tasks
    from vitabench.runner.plan import resolve_protocol
    from vitabench.training.collect import collect as run_collect

    console = Console(stderr=True)
    resolved = resolve_protocol(protocol, seed=None, max_steps=max_steps)
    if not resolved.cameras:
        raise CliError(f"--protocol {protocol} names no cameras; demonstrations need camera images")

    if dagger is None and (beta != 0.0 or dagger_ensemble != "0.01"):
        raise CliError("--beta and --dagger-ensemble need --dagger CHECKPOINT")
    ensemble = None if dagger_ensemble.lower() == "none" else _parse_ensemble(dagger_ensemble)

    def report(task_id: int, init_state: int, success: bool, steps: int) -> None:
        if dagger is not None:
            console.print(f"task {task_id} init state {init_state}: learner {'succeeded' if success else 'failed'} ({steps} steps, kept)")
        else:
            console.print(f"task {task_id} init state {init_state}: {'kept' if success else 'FAILED'} ({steps} steps)")

    result = run_collect(
        policy, parse_policy_args(policy_arg, None), suite, tasks=parse_tasks(tasks), episodes=episodes,
        out=out, protocol=resolved, first_init_state=first_init_state, noise=noise, learner=dagger,
        learner_ensemble=ensemble, beta=beta, on_episode=report,
    )
    for task_id, kept in result.kept.items():
        failed = result.failed[task_id]
        shown = f" (init states {', '.join(map(str, failed))})" if failed else ""
        who = "learner failed" if dagger is not None else "failed"
        typer.echo(f"task {task_id}: kept {kept}, {who} {len(failed)}{shown}")
    typer.echo(f"wrote {sum(result.kept.values())} demos, {result.steps} steps to {result.path} in {result.wall_s:.0f} s "
               f"({resolved.resolution} px, {', '.join(resolved.cameras)}, protocol {resolved.ref})")


def _parse_ensemble(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise CliError(f"--dagger-ensemble {value!r}; accepted: a number (0.01 in VITA-VLA) or none") from None
