"""Ablations: a declarative spec (``reports/ablations/*.toml``), the runs it needs, and its table.

A spec names suites and variants; each variant is either existing run directories
(``runs = [...]``, one per suite) or a policy with its arguments, evaluated into
``OUT/<variant>/<suite>`` when that run is missing or incomplete. The table gives each
variant's success per suite and overall, its delta from the reference variant, a paired
two-sided exact McNemar p-value over the episodes both ran to the end (same ``episode_id``),
that p-value Holm-adjusted over the table's paired variants, and the verdict it gives at
:data:`ALPHA`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from vitabench.api.config import read_toml
from vitabench.report.runs import ReportError, RunInfo, load_episodes, run_info, run_untrained_backbone, suite_sort_key
from vitabench.stats import holm_adjusted, mcnemar_exact, paired_counts
from vitabench.report.tables import aggregate
from vitabench.runner.store import RunStore

_SPEC_KEYS = {"name", "description", "reference", "suites", "tasks", "episodes_per_task", "protocol",
              "max_steps", "workers", "variants"}
_VARIANT_KEYS = {"name", "policy", "args", "runs", "description"}

#: The family-wise significance level of an ablation table's verdicts (Holm-adjusted p below it).
ALPHA = 0.05
#: A paired row's verdict against the reference: significantly higher, lower, or neither.
HIGHER, LOWER, NOT_SIGNIFICANT = "higher", "lower", "no significant difference"


@dataclass(frozen=True)
class Variant:
    """One row of an ablation: a policy with arguments, or existing run directories."""

    name: str
    policy: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    runs: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class AblationSpec:
    """What to compare, on what, and under which protocol."""

    name: str
    reference: str
    suites: tuple[str, ...]
    variants: tuple[Variant, ...]
    description: str = ""
    tasks: tuple[int, ...] | None = None
    episodes_per_task: int | None = None
    protocol: str = "standard"
    max_steps: int | None = None
    workers: int = 1
    source: str = "<spec>"

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise ReportError(f"{self.source}: no variant {name!r}; variants: {', '.join(v.name for v in self.variants)}")


def _variant(data: Mapping[str, Any], source: str) -> Variant:
    unknown = sorted(set(data) - _VARIANT_KEYS)
    if unknown:
        raise ReportError(f"{source}: unknown variant key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(_VARIANT_KEYS))}")
    if "name" not in data:
        raise ReportError(f"{source}: a variant has no 'name'")
    has_policy, has_runs = "policy" in data, "runs" in data
    if has_policy == has_runs:
        raise ReportError(f"{source}: variant {data['name']!r} needs exactly one of 'policy' or 'runs'")
    return Variant(
        name=str(data["name"]),
        policy=data.get("policy"),
        args=dict(data.get("args", {})),
        runs=tuple(str(r) for r in data.get("runs", ())),
        description=str(data.get("description", "")),
    )


def load_ablation_spec(path: str | Path) -> AblationSpec:
    """Parse and check an ablation spec file; ``runs`` paths are relative to the current directory."""
    path = Path(path)
    data = read_toml(path, "ablation spec", ReportError)
    source = str(path)
    unknown = sorted(set(data) - _SPEC_KEYS)
    if unknown:
        raise ReportError(f"{source}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(_SPEC_KEYS))}")
    for key in ("reference", "suites", "variants"):
        if key not in data:
            raise ReportError(f"{source}: missing key {key!r}")
    variants = tuple(_variant(v, source) for v in data["variants"])
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ReportError(f"{source}: variant names repeat: {', '.join(names)}")
    suites = tuple(str(s) for s in data["suites"])
    for variant in variants:
        if variant.runs and len(variant.runs) != len(suites):
            raise ReportError(
                f"{source}: variant {variant.name!r} lists {len(variant.runs)} run(s) for {len(suites)} suite(s); "
                "give one run directory per suite, in the order of 'suites'"
            )
    spec = AblationSpec(
        name=str(data.get("name", path.stem)),
        reference=str(data["reference"]),
        suites=suites,
        variants=variants,
        description=str(data.get("description", "")),
        tasks=None if data.get("tasks") is None else tuple(int(t) for t in data["tasks"]),
        episodes_per_task=data.get("episodes_per_task"),
        protocol=str(data.get("protocol", "standard")),
        max_steps=data.get("max_steps"),
        workers=int(data.get("workers", 1)),
        source=source,
    )
    spec.variant(spec.reference)
    return spec


def _is_complete(run_dir: Path) -> bool:
    store = RunStore(run_dir)
    if not store.exists():
        return False
    return {e.episode_id for e in store.manifest().episodes} <= store.done_ids()


def _check_reusable(info: RunInfo, variant: Variant, spec: AblationSpec) -> None:
    """A complete run found under OUT must be the one the spec asks for."""
    from vitabench.plugins import POLICIES
    from vitabench.runner.plan import resolve_protocol

    wanted_protocol = resolve_protocol(spec.protocol, seed=None, max_steps=spec.max_steps)
    problems = []
    if info.policy != POLICIES.canonical(str(variant.policy)):
        problems.append(f"policy {info.policy} instead of {variant.policy}")
    if dict(info.policy_args) != dict(variant.args):
        problems.append(f"args {dict(info.policy_args)} instead of {dict(variant.args)}")
    if not info.protocol.endswith(f"#{wanted_protocol.hash}"):
        problems.append(f"protocol {info.protocol} instead of {wanted_protocol.ref}")
    if problems:
        raise ReportError(f"{info.path} holds another run ({'; '.join(problems)}); remove it or choose another --out")


def evaluate_variant(variant: Variant, suite: str, spec: AblationSpec, run_dir: Path) -> Path:
    """The one place the reporter runs a policy: through the runner's Python API (resumes a partial run).

    The run's summary table goes to stderr, so stdout carries only the ablation table.
    """
    from rich.console import Console

    from vitabench.runner import print_summary, run_evaluation

    result = run_evaluation(
        str(variant.policy), dict(variant.args), suite,
        tasks=list(spec.tasks) if spec.tasks is not None else None,
        episodes_per_task=spec.episodes_per_task, protocol=spec.protocol, max_steps=spec.max_steps,
        workers=spec.workers, out=run_dir, resume=RunStore(run_dir).exists(), quiet=True, label=variant.name,
        argv=["vitabench", "ablate", spec.source],
    )
    print_summary(result, Console(stderr=True))
    return result.run_dir


def ensure_runs(
    spec: AblationSpec, out: str | Path, evaluate: Callable[[Variant, str, AblationSpec, Path], Path] = evaluate_variant
) -> dict[str, list[Path]]:
    """Run directories of every variant, one per suite, evaluating those missing or incomplete."""
    runs: dict[str, list[Path]] = {}
    for variant in spec.variants:
        if variant.runs:
            runs[variant.name] = [Path(r) for r in variant.runs]
            for run_dir in runs[variant.name]:
                run_info(run_dir)  # fails clearly if it is not a run directory
            continue
        dirs = []
        for suite in spec.suites:
            run_dir = Path(out) / variant.name / suite
            if _is_complete(run_dir):
                _check_reusable(run_info(run_dir), variant, spec)
            else:
                evaluate(variant, suite, spec, run_dir)
            dirs.append(run_dir)
        runs[variant.name] = dirs
    return runs


def ablation_table(spec: AblationSpec, runs: Mapping[str, list[Path]]) -> pd.DataFrame:
    """One row per variant: per-suite and overall success with intervals, delta from the reference,
    and the paired exact McNemar test against it.

    Columns: ``variant``, ``protocol``, per suite ``S`` / ``S:low`` / ``S:high``, ``overall``,
    ``overall:low``, ``overall:high``, ``ok``, ``errors``, ``delta`` (overall rate minus the
    reference's), ``pairs`` (shared episodes ok in both), ``b`` (reference-only successes),
    ``c`` (variant-only successes), ``p_value`` (two-sided; NaN for the reference, or when the
    protocols differ or no episode is shared), ``p_holm`` (``p_value`` Holm-adjusted over the
    table's paired variants), ``verdict`` (``higher``/``lower`` when ``p_holm < ALPHA``, else
    ``no significant difference``; empty when not paired), ``note``, ``untrained_backbone``
    (the random-initialised VLM a student variant was distilled around, else empty).
    """
    names = [v.name for v in spec.variants]
    dirs = [d for name in names for d in runs[name]]
    labels = [name for name in names for _ in runs[name]]
    episodes = load_episodes(dirs, labels=labels)
    suites = aggregate(episodes, ["label", "suite"])
    overall = aggregate(episodes, ["label"]).set_index("label")
    protocols = episodes.groupby("label")["protocol"].agg(lambda s: ", ".join(sorted(set(s))))
    outcomes = {
        name: dict(zip(frame["episode_id"], frame["success"].astype(bool)))
        for name, frame in episodes[episodes["status"] == "ok"].groupby("label")
    }
    reference_protocol = protocols.get(spec.reference)
    reference_rate = overall.loc[spec.reference, "rate"] if spec.reference in overall.index else math.nan
    suite_names = sorted(suites["suite"].unique(), key=suite_sort_key)
    rows = []
    for name in names:
        row: dict[str, Any] = {"variant": name, "protocol": protocols.get(name, "")}
        for suite in suite_names:
            hit = suites[(suites["label"] == name) & (suites["suite"] == suite)]
            cell = hit.iloc[0] if not hit.empty else None
            row[suite] = math.nan if cell is None else cell["rate"]
            row[f"{suite}:low"] = math.nan if cell is None else cell["ci_low"]
            row[f"{suite}:high"] = math.nan if cell is None else cell["ci_high"]
        total = overall.loc[name] if name in overall.index else None
        row.update({
            "overall": math.nan if total is None else total["rate"],
            "overall:low": math.nan if total is None else total["ci_low"],
            "overall:high": math.nan if total is None else total["ci_high"],
            "ok": 0 if total is None else int(total["ok"]), "errors": 0 if total is None else int(total["errors"]),
            "delta": row_delta(name, spec.reference, total, reference_rate),
        })
        row.update(_paired(name, spec.reference, outcomes, protocols.get(name), reference_protocol))
        row["untrained_backbone"] = next(filter(None, map(run_untrained_backbone, runs[name])), "")
        rows.append(row)
    for row, p_holm in zip(rows, holm_adjusted([row["p_value"] for row in rows])):
        row["p_holm"] = p_holm
        row["verdict"] = verdict(row["b"], row["c"], p_holm)
    return pd.DataFrame(rows)


def verdict(b: float, c: float, p_holm: float) -> str:
    """``higher``/``lower`` (than the reference) when the adjusted p-value is below
    :data:`ALPHA`, else ``no significant difference``; empty for a row that is not paired."""
    if math.isnan(p_holm):
        return ""
    if p_holm >= ALPHA:
        return NOT_SIGNIFICANT
    return HIGHER if c > b else LOWER


def row_delta(name: str, reference: str, total: Any, reference_rate: float) -> float:
    if name == reference or total is None:
        return 0.0 if name == reference else math.nan
    return float(total["rate"] - reference_rate)


def _paired(name: str, reference: str, outcomes: Mapping[str, dict], protocol: str | None,
            reference_protocol: str | None) -> dict[str, Any]:
    if name == reference:
        return {"pairs": math.nan, "b": math.nan, "c": math.nan, "p_value": math.nan, "note": "reference"}
    if protocol != reference_protocol:
        return {"pairs": 0, "b": math.nan, "c": math.nan, "p_value": math.nan,
                "note": f"not paired: protocol {protocol} differs from the reference's {reference_protocol}"}
    counts = paired_counts(outcomes.get(reference, {}), outcomes.get(name, {}))
    if counts.n == 0:
        return {"pairs": 0, "b": math.nan, "c": math.nan, "p_value": math.nan,
                "note": "not paired: no episode shared with the reference"}
    return {"pairs": counts.n, "b": counts.only_first, "c": counts.only_second,
            "p_value": mcnemar_exact(counts.only_first, counts.only_second, "two-sided"), "note": ""}
