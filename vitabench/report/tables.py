"""Success tables: per task, per suite, overall, and the policies × suites matrix of papers.

Every rate is ``successes / ok`` where ``ok`` counts the episodes that ran to the end
(``status == "ok"``); errored episodes are neither successes nor failures and are counted in
``errors`` beside the rate. Intervals are 95% Wilson score intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from vitabench.report.runs import (
    completeness_notes, load_episodes, protocols_frame, run_untrained_backbone, suite_sort_key, untrained_backbone_notes,
)
from vitabench.stats import wilson_interval

DENOMINATOR_NOTE = (
    "Success rate = successes / episodes that ran to the end (status ok); errored episodes are "
    "excluded from the denominator and counted in the 'errors' column, never as failures."
)
COUNT_COLUMNS = ["episodes", "ok", "errors", "successes", "rate", "ci_low", "ci_high"]


def aggregate(episodes: pd.DataFrame, keys: Sequence[str], confidence: float = 0.95) -> pd.DataFrame:
    """Counts, success rate and Wilson interval of ``episodes`` grouped by ``keys``."""
    ok = episodes["status"].eq("ok")
    success = ok & episodes["success"].fillna(False).astype(bool)
    counts = pd.DataFrame({"episodes": 1, "ok": ok.astype(int), "errors": (~ok).astype(int),
                           "successes": success.astype(int)})
    grouped = counts.groupby([episodes[k] for k in keys], sort=False, dropna=False).sum().reset_index()
    intervals = [wilson_interval(int(s), int(n), confidence) for s, n in zip(grouped["successes"], grouped["ok"])]
    grouped["rate"] = [s / n if n else math.nan for s, n in zip(grouped["successes"], grouped["ok"])]
    grouped["ci_low"] = [low for low, _ in intervals]
    grouped["ci_high"] = [high for _, high in intervals]
    return grouped


def _order(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Rows in first-seen label order, LIBERO suites in paper order."""
    label_rank = {label: i for i, label in enumerate(dict.fromkeys(frame["label"]))}
    key_frame = frame.assign(
        _label=frame["label"].map(label_rank),
        _suite=frame["suite"].map(suite_sort_key) if "suite" in frame else 0,
    )
    sort_by = ["_label", "protocol"] + [("_suite" if c == "suite" else c) for c in by]
    return key_frame.sort_values(sort_by, kind="stable").drop(columns=["_label", "_suite"]).reset_index(drop=True)


def task_table(episodes: pd.DataFrame) -> pd.DataFrame:
    """One row per (label, protocol, suite, task)."""
    return _order(aggregate(episodes, ["label", "protocol", "suite", "task_id", "task"]), ["suite", "task_id"])


def suite_table(episodes: pd.DataFrame) -> pd.DataFrame:
    """One row per (label, protocol, suite)."""
    return _order(aggregate(episodes, ["label", "protocol", "suite"]), ["suite"])


def domain_table(episodes: pd.DataFrame) -> pd.DataFrame:
    """Runs over a domain set (records of two or more domains): one row per (label, protocol, suite,
    domain), then the set's row (``domain`` = ``SET (all)``): every domain's episodes pooled, which
    equals the mean of the domain rates when none errored (each domain runs the same episodes)."""
    in_set = episodes[episodes.groupby("run_dir")["domain"].transform("nunique") > 1]
    keys = ["label", "protocol", "suite"]
    if in_set.empty:
        return pd.DataFrame(columns=[*keys, "domain", *COUNT_COLUMNS])
    sets = in_set.groupby(keys, sort=False)["domain"].agg(lambda refs: ",".join(sorted({r.split("/")[0] for r in refs})))
    pooled = aggregate(in_set, keys)
    pooled.insert(len(keys), "domain", [f"{sets[tuple(k)]} (all)" for k in pooled[keys].itertuples(index=False)])
    return _order(pd.concat([aggregate(in_set, [*keys, "domain"]), pooled], ignore_index=True), ["suite"])


def overall_table(episodes: pd.DataFrame, suites: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (label, protocol): episodes pooled over all suites, plus ``average``, the
    unweighted mean of the suite rates as papers report it (``suites``: :func:`suite_table`'s, if at hand)."""
    pooled = aggregate(episodes, ["label", "protocol"])
    suites = suite_table(episodes) if suites is None else suites
    means = suites.groupby(["label", "protocol"], sort=False).agg(
        average=("rate", "mean"), n_suites=("suite", "nunique")
    )
    return _order(pooled.merge(means.reset_index(), on=["label", "protocol"], how="left"), [])


def matrix_table(
    episodes: pd.DataFrame, suites: pd.DataFrame | None = None, overall: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Policies as rows, suites as columns (the paper's layout).

    Columns: ``label``, ``protocol``, ``source`` (``measured``), for every suite ``S`` the
    columns ``S``, ``S:low``, ``S:high``, ``S:ok``, ``S:errors``, then ``Average`` (mean of the
    row's suite rates, as papers report it), ``n_suites``, ``overall``/``overall:low``/``overall:high``
    (all the row's episodes pooled, with its Wilson interval), ``episodes``, ``ok``, ``errors``.
    """
    suites = suite_table(episodes) if suites is None else suites
    overall = overall_table(episodes, suites) if overall is None else overall
    suite_names = sorted(suites["suite"].unique(), key=suite_sort_key)
    rows = []
    for _, row in overall.iterrows():
        out = {"label": row["label"], "protocol": row["protocol"], "source": "measured"}
        mine = suites[(suites["label"] == row["label"]) & (suites["protocol"] == row["protocol"])]
        for suite in suite_names:
            hit = mine[mine["suite"] == suite]
            if hit.empty:
                out.update({suite: math.nan, f"{suite}:low": math.nan, f"{suite}:high": math.nan,
                            f"{suite}:ok": 0, f"{suite}:errors": 0})
                continue
            cell = hit.iloc[0]
            out.update({suite: cell["rate"], f"{suite}:low": cell["ci_low"], f"{suite}:high": cell["ci_high"],
                        f"{suite}:ok": int(cell["ok"]), f"{suite}:errors": int(cell["errors"])})
        out.update({"Average": row["average"], "n_suites": int(row["n_suites"]),
                    "overall": row["rate"], "overall:low": row["ci_low"], "overall:high": row["ci_high"],
                    "episodes": int(row["episodes"]), "ok": int(row["ok"]), "errors": int(row["errors"])})
        rows.append(out)
    return pd.DataFrame(rows)


def success_table(run_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """The policies × suites matrix of ``run_dirs`` (see :func:`matrix_table`)."""
    return matrix_table(load_episodes(run_dirs))


@dataclass
class Report:
    """Everything one report shows, as DataFrames plus the notes that must accompany them."""

    episodes: pd.DataFrame
    tasks: pd.DataFrame
    suites: pd.DataFrame
    overall: pd.DataFrame
    matrix: pd.DataFrame
    protocols: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    domains: pd.DataFrame = field(default_factory=pd.DataFrame)  # domain_table's; empty without a domain-set run

    @property
    def suite_names(self) -> list[str]:
        return sorted(self.suites["suite"].unique(), key=suite_sort_key)

    def long_frame(self) -> pd.DataFrame:
        """Task, suite and overall rows in one frame, told apart by ``level`` (for CSV/JSON)."""
        overall = self.overall.assign(level="overall", suite="*", task_id=pd.NA, task="*")
        suites = self.suites.assign(level="suite", task_id=pd.NA, task="*")
        tasks = self.tasks.assign(level="task")
        columns = ["level", "label", "protocol", "suite", "task_id", "task", *COUNT_COLUMNS]
        return pd.concat([tasks[columns], suites[columns], overall[columns]], ignore_index=True)


def protocol_notes(matrix: pd.DataFrame) -> list[str]:
    """Say so when rows of one table were measured under different protocols."""
    protocols = list(dict.fromkeys(matrix["protocol"]))
    if len(protocols) < 2:
        return []
    groups = "; ".join(
        f"{p}: {', '.join(matrix.loc[matrix['protocol'] == p, 'label'])}" for p in protocols
    )
    return [
        f"MIXED PROTOCOLS: rows were measured under {len(protocols)} different protocols ({groups}). "
        "A column compares rows only within one protocol: step limits, settle steps, image size and "
        "seeds differ between protocols and move success rates by several points."
    ]


def build_report(run_dirs: Sequence[str | Path]) -> Report:
    """Load ``run_dirs`` and build every table of the report."""
    episodes = load_episodes(run_dirs)
    suites = suite_table(episodes)
    overall = overall_table(episodes, suites)
    matrix = matrix_table(episodes, suites, overall)
    labels = episodes.groupby("run_dir", sort=False)["label"].first()
    backbones: dict[str, str | None] = {}
    for run_dir, label in labels.items():
        backbones[label] = backbones.get(label) or run_untrained_backbone(run_dir)
    notes = [DENOMINATOR_NOTE, *protocol_notes(matrix), *completeness_notes(run_dirs, episodes),
             *untrained_backbone_notes(backbones)]
    if int(matrix["errors"].sum()):
        notes.append(f"{int(matrix['errors'].sum())} episode(s) errored; see the 'errors' counts.")
    return Report(
        episodes=episodes,
        tasks=task_table(episodes),
        suites=suites,
        overall=overall,
        matrix=matrix,
        protocols=protocols_frame(run_dirs),
        notes=notes,
        domains=domain_table(episodes),
    )
