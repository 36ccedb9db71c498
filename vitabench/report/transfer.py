"""The zero-shot transfer table: each policy with and without the PVA aligner, on canonical, seen and unseen domains.

An episode's domain is its record's (its run's ``--domain``, or its own in a domain-set run;
none counts as ``canonical``). A ``pva`` run is reported under its inner policy with ``aligner`` set, so the
two rows of a policy sit together. Rates carry 95% Wilson intervals; the drop from canonical
(percentage points) carries Newcombe's hybrid-score interval for a difference of two
independent proportions. What the aligner changes is paired: the same episodes (domain and
episode id) with and without it, per domain set, with the exact McNemar test. Only ``ok``
episodes count; errors are shown apart.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from vitabench.report.runs import ReportError, default_label, run_untrained_backbone, untrained_backbone_notes
from vitabench.stats import mcnemar_exact, paired_counts, wilson_interval
from vitabench.runner.store import RunStore

SETS = ("canonical", "seen", "unseen")


@dataclass(frozen=True)
class TransferTable:
    """``cells``: one row per (policy, aligner, domain); ``summary``: one row per (policy, aligner);
    ``aligner_effect``: one row per (policy, aligner, domain set), paired with the policy's runs
    without an aligner (empty when no policy has both); ``notes``: what must be read with them
    (a student with a random-initialised VLM)."""

    cells: pd.DataFrame
    summary: pd.DataFrame
    aligner_effect: pd.DataFrame
    notes: tuple[str, ...] = ()


def _policy_and_aligner(config: Mapping[str, Any]) -> tuple[str, str | None]:
    """The row label of a run and its aligner (``None`` without one)."""
    policy = config.get("policy") or {}
    if policy.get("name") != "pva":
        return default_label(config), None
    args = dict(policy.get("args") or {})
    inner_args = args.get("inner_args") or {}
    if isinstance(inner_args, str):
        inner_args = json.loads(inner_args)
    inner = default_label({"policy": {"name": args.get("inner", "vita_vla"), "args": inner_args}})
    return inner, Path(str(args.get("aligner", "?"))).name


def _domain(ref: str | None) -> tuple[str, str]:
    """``(set, name)`` of a record's domain (``set/name@version``); none counts as canonical."""
    if not ref:
        return "canonical", "canonical"
    domain_set, _, name = ref.rpartition("@")[0].partition("/")
    return domain_set, name


def newcombe_interval(s1: int, n1: int, s2: int, n2: int, confidence: float = 0.95) -> tuple[float, float]:
    """Interval of ``s1/n1 - s2/n2`` (Newcombe 1998, method 10, from two Wilson intervals)."""
    p1, p2 = s1 / n1, s2 / n2
    l1, u1 = wilson_interval(s1, n1, confidence)
    l2, u2 = wilson_interval(s2, n2, confidence)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def transfer_table(run_dirs: Iterable[str | Path]) -> TransferTable:
    """Success per policy x aligner x domain, and per domain set with the drop from canonical."""
    rows = []
    outcomes: dict[tuple[str, str, str], dict[str, bool]] = {}  # (policy, aligner, set) -> episode -> success
    backbones: dict[str, str | None] = {}  # policy -> the random-initialised VLM it was distilled around
    for run_dir in run_dirs:
        store = RunStore(Path(run_dir))
        if not store.exists():
            raise ReportError(f"{str(run_dir)!r} holds no vitabench run (no run.json)")
        config = store.config()
        policy, aligner = _policy_and_aligner(config)
        by_domain: dict[tuple[str, str], list] = {}  # a domain-set run holds several
        for record in store.records():
            by_domain.setdefault(_domain(record.domain), []).append(record)
        backbones[policy] = backbones.get(policy) or run_untrained_backbone(run_dir)
        for (domain_set, domain), records in by_domain.items():
            ok = [r for r in records if r.status == "ok"]
            paired = outcomes.setdefault((policy, aligner or "none", domain_set), {})
            paired.update({_episode_key(domain, r): bool(r.success) for r in ok})
            rows.append({
                "policy": policy, "aligner": aligner or "none", "set": domain_set, "domain": domain,
                "n": len(ok), "successes": sum(bool(r.success) for r in ok), "errors": len(records) - len(ok),
                "run_dir": str(run_dir),
            })
    if not rows:
        raise ReportError("no run directories given")
    cells = pd.DataFrame(rows).groupby(["policy", "aligner", "set", "domain"], as_index=False, sort=False).agg(
        n=("n", "sum"), successes=("successes", "sum"), errors=("errors", "sum"), runs=("run_dir", ", ".join)
    )
    cells = _with_rates(cells)
    summary_rows = []
    for (policy, aligner), group in cells.groupby(["policy", "aligner"], sort=False):
        row: dict[str, Any] = {"policy": policy, "aligner": aligner}
        totals = {s: (int(group.loc[group["set"] == s, "successes"].sum()), int(group.loc[group["set"] == s, "n"].sum())) for s in SETS}
        for name, (successes, n) in totals.items():
            low, high = wilson_interval(successes, n)
            row.update({f"{name}_n": n, f"{name}_successes": successes, f"{name}_rate": successes / n if n else math.nan,
                        f"{name}_low": low, f"{name}_high": high})
        base_s, base_n = totals["canonical"]
        for name in ("seen", "unseen"):
            successes, n = totals[name]
            if n and base_n:
                low, high = newcombe_interval(successes, n, base_s, base_n)
                row.update({f"{name}_drop": successes / n - base_s / base_n, f"{name}_drop_low": low, f"{name}_drop_high": high})
            else:
                row.update({f"{name}_drop": math.nan, f"{name}_drop_low": math.nan, f"{name}_drop_high": math.nan})
        row["errors"] = int(group["errors"].sum())
        summary_rows.append(row)
    return TransferTable(cells=cells, summary=pd.DataFrame(summary_rows), aligner_effect=_aligner_effect(outcomes),
                         notes=tuple(untrained_backbone_notes(backbones)))


def _episode_key(domain: str, record: Any) -> str:
    """What makes two records the same episode for pairing: domain, task, init state and seed (not
    the episode id, which a domain-set run suffixes with ``@SET/NAME``)."""
    return f"{domain}:{record.suite}/{record.task_id}/{record.init_state_id}/{record.seed}"


def _aligner_effect(outcomes: Mapping[tuple[str, str, str], dict[str, bool]]) -> pd.DataFrame:
    """Per policy, aligner and domain set: success without and with the aligner on the episodes both
    ran, the difference, the discordant pairs (b: only without, c: only with) and McNemar's p."""
    rows = []
    for (policy, aligner, domain_set), with_aligner in outcomes.items():
        without = outcomes.get((policy, "none", domain_set))
        if aligner == "none" or without is None:
            continue
        counts = paired_counts(without, with_aligner)
        if counts.n:
            rows.append({
                "policy": policy, "aligner": aligner, "set": domain_set, "pairs": counts.n,
                "rate_without": counts.rate_first, "rate_with": counts.rate_second,
                "difference": counts.rate_second - counts.rate_first, "b": counts.only_first, "c": counts.only_second,
                "p": mcnemar_exact(counts.only_first, counts.only_second),
            })
    first_seen: dict[tuple[str, str], int] = {}
    for policy, aligner, _ in outcomes:
        first_seen.setdefault((policy, aligner), len(first_seen))
    rows.sort(key=lambda r: (first_seen[(r["policy"], r["aligner"])], SETS.index(r["set"]) if r["set"] in SETS else len(SETS)))
    columns = ["policy", "aligner", "set", "pairs", "rate_without", "rate_with", "difference", "b", "c", "p"]
    return pd.DataFrame(rows, columns=columns)


def _with_rates(cells: pd.DataFrame) -> pd.DataFrame:
    intervals = [wilson_interval(int(s), int(n)) for s, n in zip(cells["successes"], cells["n"])]
    return cells.assign(
        rate=[s / n if n else math.nan for s, n in zip(cells["successes"], cells["n"])],
        low=[i[0] for i in intervals], high=[i[1] for i in intervals],
    )


def _pct(rate: float, low: float, high: float, n: int) -> str:
    if not n:
        return "-"
    return f"{100 * rate:.0f}% [{100 * low:.0f}, {100 * high:.0f}] (n={n})"


def _drop(value: float, low: float, high: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{100 * value:+.0f} pp [{100 * low:+.0f}, {100 * high:+.0f}]"


def render_transfer(table: TransferTable, fmt: str = "md") -> str:
    """Markdown (``md``), ``csv`` or ``json`` of the summary, then (md) the per-domain cells."""
    if fmt == "json":
        return json.dumps({"summary": table.summary.to_dict("records"), "cells": table.cells.to_dict("records"),
                           "aligner_effect": table.aligner_effect.to_dict("records"), "notes": list(table.notes)},
                          indent=2, default=str)
    if fmt == "csv":
        return table.summary.to_csv(index=False)
    if fmt != "md":
        raise ReportError(f"transfer table format {fmt!r}; accepted: md, csv, json")
    lines = [
        "| policy | aligner | canonical | seen | unseen | drop seen | drop unseen |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table.summary.to_dict("records"):
        cells = [_pct(r[f"{s}_rate"], r[f"{s}_low"], r[f"{s}_high"], r[f"{s}_n"]) for s in SETS]
        drops = [_drop(r[f"{s}_drop"], r[f"{s}_drop_low"], r[f"{s}_drop_high"]) for s in ("seen", "unseen")]
        lines.append(f"| {r['policy']} | {r['aligner']} | " + " | ".join(cells + drops) + " |")
    lines += ["", "| policy | aligner | set | domain | success | errors |", "|---|---|---|---|---|---|"]
    for r in table.cells.to_dict("records"):
        lines.append(
            f"| {r['policy']} | {r['aligner']} | {r['set']} | {r['domain']} | {_pct(r['rate'], r['low'], r['high'], r['n'])} | {r['errors']} |"
        )
    if len(table.aligner_effect):
        lines += ["", "| policy | aligner | set | pairs | without | with | difference | b / c | p (exact McNemar) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in table.aligner_effect.to_dict("records"):
            lines.append(
                f"| {r['policy']} | {r['aligner']} | {r['set']} | {r['pairs']} | {100 * r['rate_without']:.0f}% | "
                f"{100 * r['rate_with']:.0f}% | {100 * r['difference']:+.0f} pp | {r['b']} / {r['c']} | {r['p']:.3g} |"
            )
    if table.notes:
        lines += ["", *(f"> {note}" for note in table.notes)]
    return "\n".join(lines) + "\n"
