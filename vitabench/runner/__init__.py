"""Running evaluations: ``run_evaluation`` (the API behind ``vitabench run``), executors, the store.

Python API::

    from vitabench.runner import print_summary, run_evaluation
    result = run_evaluation("random", {"scale": 0.5}, "libero_object", tasks=[0], episodes_per_task=4,
                            workers=2, out=Path("runs/x"))
    print_summary(result)              # the table ``vitabench run`` prints
    result.run_dir, result.overall.rate, result.errors
"""

from vitabench.runner.evaluation import RunResult, errored_records, export_parquet, run_evaluation
from vitabench.runner.executor import EpisodeResult, Executor, LocalExecutor, LockstepLoop, RunPlan, WorkerHandle
from vitabench.runner.summary import print_summary

__all__ = [
    "EpisodeResult",
    "Executor",
    "LocalExecutor",
    "LockstepLoop",
    "RunPlan",
    "RunResult",
    "WorkerHandle",
    "errored_records",
    "export_parquet",
    "print_summary",
    "run_evaluation",
]
