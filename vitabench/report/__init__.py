"""The report engine: run directories in, DataFrames, tables, plots, HTML and CI verdicts out.

Python API (every function returns pandas DataFrames or plain values)::

    from vitabench import report
    report.success_table(["runs/a", "runs/b"])       # policies x suites, Wilson intervals
    report.build_report(run_dirs).tasks               # per task; .suites, .overall, .matrix
    report.compare_runs(baseline, candidate).frame()  # paired regression gate
    report.check_published()                          # published averages vs their rows
    report.ablation_table(spec, runs)                 # variants, deltas, paired McNemar

Names are imported lazily so ``vitabench.report.stats`` stays cheap to import.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "wilson_interval": "stats",
    "mcnemar_exact": "stats",
    "paired_counts": "stats",
    "load_episodes": "runs",
    "ReportError": "runs",
    "aggregate": "tables",
    "task_table": "tables",
    "suite_table": "tables",
    "overall_table": "tables",
    "matrix_table": "tables",
    "success_table": "tables",
    "build_report": "tables",
    "Report": "tables",
    "published_tables": "published",
    "check_published": "published",
    "compare_runs": "compare",
    "Comparison": "compare",
    "load_ablation_spec": "ablation",
    "transfer_table": "transfer",
    "ensure_runs": "ablation",
    "ablation_table": "ablation",
    "render_report": "document",
    "render_published": "document",
    "render_ablation": "document",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vitabench.report' has no attribute {name!r}")
    return getattr(import_module(f"vitabench.report.{_EXPORTS[name]}"), name)
