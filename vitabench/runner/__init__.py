"""Running evaluations: ``run_evaluation`` (the API behind ``vitabench run``), executors, the store.

Python API::

    from vitabench.runner import run_evaluation
    run_dir = run_evaluation("random", {"scale": 0.5}, "libero_object", tasks=[0], episodes_per_task=4,
                             protocol="standard", max_steps=None, seed=None, workers=2,
                             out=Path("runs/x"), resume=False, video="none", quiet=True, label=None)
"""

from vitabench.runner.evaluation import errored_records, export_parquet, run_evaluation
from vitabench.runner.executor import EpisodeResult, Executor, LocalExecutor, LockstepLoop, RunPlan, WorkerHandle

__all__ = [
    "EpisodeResult",
    "Executor",
    "LocalExecutor",
    "LockstepLoop",
    "RunPlan",
    "WorkerHandle",
    "errored_records",
    "export_parquet",
    "run_evaluation",
]
