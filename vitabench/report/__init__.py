"""The report engine: run directories in, DataFrames, tables, plots, HTML and CI verdicts out.

Python API (every function returns pandas DataFrames or plain values)::

    from vitabench import report
    report.success_table(["runs/a", "runs/b"])       # policies x suites, Wilson intervals
    report.build_report(run_dirs).tasks               # per task; .suites, .overall, .matrix
    report.compare_runs(baseline, candidate).frame()  # paired regression gate
    report.check_published()                          # published averages vs their rows
    report.ablation_table(spec, runs)                 # variants, deltas, paired McNemar

Names are imported lazily; the statistics live in :mod:`vitabench.stats` (shared with the
runner's end-of-run summary) and are re-exported here.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "wilson_interval": "vitabench.stats",
    "mcnemar_exact": "vitabench.stats",
    "paired_counts": "vitabench.stats",
    "load_episodes": "vitabench.report.runs",
    "ReportError": "vitabench.report.runs",
    "aggregate": "vitabench.report.tables",
    "task_table": "vitabench.report.tables",
    "suite_table": "vitabench.report.tables",
    "overall_table": "vitabench.report.tables",
    "matrix_table": "vitabench.report.tables",
    "success_table": "vitabench.report.tables",
    "build_report": "vitabench.report.tables",
    "Report": "vitabench.report.tables",
    "published_tables": "vitabench.report.published",
    "check_published": "vitabench.report.published",
    "compare_runs": "vitabench.report.compare",
    "Comparison": "vitabench.report.compare",
    "load_ablation_spec": "vitabench.report.ablation",
    "transfer_table": "vitabench.report.transfer",
    "ensure_runs": "vitabench.report.ablation",
    "ablation_table": "vitabench.report.ablation",
    "render_report": "vitabench.report.document",
    "render_published": "vitabench.report.document",
    "render_ablation": "vitabench.report.document",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vitabench.report' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
