"""Real-robot suites: ``real_five`` (the paper's five PiPer tasks, ``real_tasks/real_five.toml``) and
``real_user`` (tasks from a TOML file).

A real task has no simulator scene: its ``source`` holds what the operator and the control loop
need: ``max_steps``, ``control_hz``, ``reset_instructions`` (read to the operator before each
episode) and ``success_criterion`` (read to the operator when labelling). Each task has one
"init state", the operator's reset, so the manifest gives every episode init state 0.

Step limits: the protocol's ``max_steps["real"]`` caps every real task, and the episode ends at
the smaller of that cap and the task's own ``max_steps`` (``--max-steps N`` derives a protocol
whose cap is N, so it can shorten tasks, never lengthen them). The control rate is the task's
``control_hz`` (the rate its demonstrations were taken at), else the protocol's ``control_freq``.

User tasks: point ``VITABENCH_REAL_TASKS`` at a TOML file and run ``--suite real_user`` (unset, it
loads the example file ``real_tasks/example.toml`` shipped beside this module)::

    [[task]]
    name = "wipe_table"
    instruction = "wipe the table with the sponge"
    max_steps = 400                 # required
    control_hz = 20                 # optional (protocol's control_freq otherwise)
    reset_instructions = "sponge at the left edge, table dry"
    success_criterion = "no visible stain left"
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

from vitabench.api.errors import VitabenchError
from vitabench.api.config import read_toml
from vitabench.api.suite import REAL_ROBOT_STEPS_KEY, Suite, Task

ENV_ENTRY_POINT = "vitabench.robots.env:RobotEnv"
STEPS_KEY = REAL_ROBOT_STEPS_KEY
USER_TASKS_VARIABLE = "VITABENCH_REAL_TASKS"
EXAMPLE_TASKS = Path(__file__).parent / "real_tasks" / "example.toml"
TASK_FIELDS = {"name": str, "instruction": str, "max_steps": int, "control_hz": (int, float), "reset_instructions": str, "success_criterion": str}
REQUIRED_FIELDS = ("name", "instruction", "max_steps")

#: The five real-robot tasks of the VITA-VLA paper, with the paper's instructions verbatim.
REAL_FIVE_TASKS = Path(__file__).parent / "real_tasks" / "real_five.toml"


def real_task(suite: str, task_id: int, fields: Mapping[str, Any], source: str) -> Task:
    """A :class:`Task` from one task table, its fields checked."""
    unknown = sorted(set(fields) - set(TASK_FIELDS))
    if unknown:
        raise VitabenchError(f"{source}: task {task_id} has unknown field(s) {', '.join(unknown)}; accepted: {', '.join(TASK_FIELDS)}")
    missing = [k for k in REQUIRED_FIELDS if k not in fields]
    if missing:
        raise VitabenchError(f"{source}: task {task_id} lacks {', '.join(missing)}; required: {', '.join(REQUIRED_FIELDS)}")
    for key, kind in TASK_FIELDS.items():
        if key in fields and (not isinstance(fields[key], kind) or isinstance(fields[key], bool)):
            raise VitabenchError(f"{source}: task {task_id} {key}={fields[key]!r} has the wrong type")
    if fields["max_steps"] <= 0 or fields.get("control_hz", 1) <= 0:
        raise VitabenchError(f"{source}: task {task_id} max_steps and control_hz must be > 0")
    extra = {k: v for k, v in fields.items() if k not in ("name", "instruction")}
    return Task(suite=suite, task_id=task_id, name=fields["name"], instruction=fields["instruction"], n_init_states=1, source=extra)


def load_user_tasks(path: str | Path, suite: str = "real_user") -> Suite:
    """A suite from a TOML file of ``[[task]]`` tables."""
    path = Path(path)
    data = read_toml(path, "real task file")
    tables = data.get("task")
    if not isinstance(tables, list) or not tables:
        raise VitabenchError(f"real task file {str(path)!r} has no [[task]] tables; accepted: see vitabench.suites.real")
    tasks = tuple(real_task(suite, i, t, str(path)) for i, t in enumerate(tables))
    return Suite(suite, STEPS_KEY, tasks, ENV_ENTRY_POINT, description=f"real-robot tasks from {path}", kind="real_robot")


def load_suite(name: str) -> Suite:
    if name == "real_five":
        suite = load_user_tasks(REAL_FIVE_TASKS, name)
        return dataclasses.replace(suite, description="VITA-VLA's five real-robot tasks, the paper's instructions (operator-labelled)")
    return load_user_tasks(os.environ.get(USER_TASKS_VARIABLE) or EXAMPLE_TASKS, name)
