"""Paired comparison of two runs over the episodes both share: the CI regression gate.

Episodes pair by ``episode_id`` (same protocol ⇒ same task, init state and seed; checked).
Only pairs where both episodes ran to the end (``status == "ok"``) count. The test is the
exact McNemar test: among discordant pairs, ``b`` = baseline succeeded and candidate failed,
``c`` = the reverse; under "no change" ``b ~ Binomial(b + c, 1/2)``. The gate is one-sided
(H1: the candidate is worse): ``p = P[X >= b]``. A regression is declared when
``p < alpha`` AND the paired drop in success rate is at least ``min_drop``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vitabench.report.runs import ReportError, RunInfo, run_info
from vitabench.stats import PairedCounts, mcnemar_exact, paired_counts, wilson_interval
from vitabench.runner.store import RunStore


class CompareRefused(ReportError):
    """Two runs that cannot be compared: different protocols, or no shared episodes."""


@dataclass(frozen=True)
class Comparison:
    baseline: RunInfo
    candidate: RunInfo
    counts: PairedCounts
    p_value: float
    alpha: float
    min_drop: float
    errors_baseline: int  # errored episodes among the shared ids, excluded from the pairs
    errors_candidate: int
    unshared: tuple[int, int]  # episodes only the baseline / only the candidate has (not compared)
    tasks: pd.DataFrame  # per task: pairs, rates, b, c

    @property
    def drop(self) -> float:
        """Baseline minus candidate success rate on the paired episodes (positive = worse)."""
        return self.counts.rate_first - self.counts.rate_second

    @property
    def regression(self) -> bool:
        return self.p_value < self.alpha and self.drop >= self.min_drop - 1e-12

    def frame(self) -> pd.DataFrame:
        """One row: the verdict and every number behind it."""
        n = self.counts.n
        base_s = self.counts.both + self.counts.only_first
        cand_s = self.counts.both + self.counts.only_second
        return pd.DataFrame([{
            "baseline": self.baseline.path, "candidate": self.candidate.path, "protocol": self.baseline.protocol,
            "pairs": n, "baseline_successes": base_s, "candidate_successes": cand_s,
            "baseline_rate": self.counts.rate_first, "candidate_rate": self.counts.rate_second,
            "baseline_ci": wilson_interval(base_s, n), "candidate_ci": wilson_interval(cand_s, n),
            "drop": self.drop, "b_baseline_only": self.counts.only_first, "c_candidate_only": self.counts.only_second,
            "p_value": self.p_value, "alpha": self.alpha, "min_drop": self.min_drop,
            "errors_baseline": self.errors_baseline, "errors_candidate": self.errors_candidate,
            "regression": self.regression,
        }])

    def markdown(self) -> str:
        """A summary fit for a CI job summary (``$GITHUB_STEP_SUMMARY``)."""
        row = self.frame().iloc[0]
        verdict = (
            f"❌ **REGRESSION**: success fell by {100 * self.drop:.1f} points (p = {self.p_value:.3g} < {self.alpha:g})"
            if self.regression else
            f"✅ **no significant regression** (drop {100 * self.drop:+.1f} points, p = {self.p_value:.3g}; "
            f"gate: p < {self.alpha:g} and drop ≥ {100 * self.min_drop:.1f} points)"
        )

        def cell(rate: float, ci: tuple[float, float]) -> str:
            return f"{100 * rate:.1f}% [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"

        lines = [
            "## vitabench compare", "", verdict, "",
            "| | run | policy | successes / pairs | success (95% Wilson CI) | errored (excluded) |",
            "|---|---|---|---|---|---|",
            f"| baseline | `{self.baseline.path}` | {self.baseline.label} | {row['baseline_successes']}/{self.counts.n} "
            f"| {cell(row['baseline_rate'], row['baseline_ci'])} | {self.errors_baseline} |",
            f"| candidate | `{self.candidate.path}` | {self.candidate.label} | {row['candidate_successes']}/{self.counts.n} "
            f"| {cell(row['candidate_rate'], row['candidate_ci'])} | {self.errors_candidate} |",
            "",
            f"Paired on {self.counts.n} shared episodes (same episode id, both ran to the end) under protocol "
            f"`{self.baseline.protocol}`. Discordant pairs: baseline-only successes b = {self.counts.only_first}, "
            f"candidate-only successes c = {self.counts.only_second}. One-sided exact McNemar p = P[X ≥ b], "
            f"X ~ Binomial(b + c, 1/2) = {self.p_value:.4g}."
            + (f" Not compared: {self.unshared[0]} episode(s) only in the baseline, {self.unshared[1]} only in "
               "the candidate." if any(self.unshared) else ""),
            "",
            "| suite | task | pairs | baseline | candidate | b | c |",
            "|---|---|---|---|---|---|---|",
        ]
        for _, t in self.tasks.iterrows():
            lines.append(
                f"| {t['suite']} | {t['task_id']} | {t['pairs']} | {100 * t['baseline_rate']:.1f}% "
                f"| {100 * t['candidate_rate']:.1f}% | {t['b']} | {t['c']} |"
            )
        return "\n".join(lines) + "\n"


def compare_runs(baseline_dir: str | Path, candidate_dir: str | Path, alpha: float = 0.05,
                 min_drop: float = 0.05) -> Comparison:
    """Pair two runs; :class:`CompareRefused` when they differ in protocol or share no episode."""
    if not 0 < alpha < 1:
        raise ReportError(f"--alpha {alpha}: must lie strictly between 0 and 1")
    if not 0 <= min_drop <= 1:
        raise ReportError(f"--min-drop {min_drop}: must be a fraction between 0 and 1 (0.05 = 5 points)")
    baseline, candidate = run_info(baseline_dir), run_info(candidate_dir)
    base_records = {r.episode_id: r for r in RunStore(Path(baseline_dir)).records()}
    cand_records = {r.episode_id: r for r in RunStore(Path(candidate_dir)).records()}
    protocols = {r.protocol.get("hash") for r in (*base_records.values(), *cand_records.values())}
    if baseline.protocol != candidate.protocol or len(protocols) > 1:
        raise CompareRefused(
            f"runs were measured under different protocols ({baseline.protocol} vs {candidate.protocol}); "
            "a paired comparison needs one protocol"
        )
    shared = sorted(base_records.keys() & cand_records.keys())
    if not shared:
        raise CompareRefused(f"{baseline_dir} and {candidate_dir} share no episode id; nothing to pair")
    for episode_id in shared:
        a, b = base_records[episode_id], cand_records[episode_id]
        if (a.task_id, a.init_state_id, a.seed) != (b.task_id, b.init_state_id, b.seed):
            raise CompareRefused(
                f"episode {episode_id} differs between the runs (task/init state/seed "
                f"{(a.task_id, a.init_state_id, a.seed)} vs {(b.task_id, b.init_state_id, b.seed)})"
            )
    paired = [e for e in shared if base_records[e].status == "ok" and cand_records[e].status == "ok"]
    if not paired:
        raise CompareRefused(f"none of the {len(shared)} shared episodes ran to the end in both runs")
    base_ok = {e: bool(base_records[e].success) for e in paired}
    cand_ok = {e: bool(cand_records[e].success) for e in paired}
    counts = paired_counts(base_ok, cand_ok)
    return Comparison(
        baseline=baseline, candidate=candidate, counts=counts,
        p_value=mcnemar_exact(counts.only_first, counts.only_second, "greater"),
        alpha=alpha, min_drop=min_drop,
        errors_baseline=sum(base_records[e].status != "ok" for e in shared),
        errors_candidate=sum(cand_records[e].status != "ok" for e in shared),
        unshared=(len(base_records.keys() - cand_records.keys()), len(cand_records.keys() - base_records.keys())),
        tasks=_task_pairs(paired, base_records, base_ok, cand_ok),
    )


def _task_pairs(paired: list[str], records: dict, base_ok: dict[str, bool], cand_ok: dict[str, bool]) -> pd.DataFrame:
    frame = pd.DataFrame({
        "suite": [records[e].suite for e in paired], "task_id": [records[e].task_id for e in paired],
        "base": [base_ok[e] for e in paired], "cand": [cand_ok[e] for e in paired],
    })
    frame["b"] = frame["base"] & ~frame["cand"]
    frame["c"] = frame["cand"] & ~frame["base"]
    grouped = frame.groupby(["suite", "task_id"], sort=True).agg(
        pairs=("base", "size"), baseline_rate=("base", "mean"), candidate_rate=("cand", "mean"),
        b=("b", "sum"), c=("c", "sum"),
    )
    return grouped.reset_index()
