"""Suites and tasks: what is evaluated, independent of how."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Task:
    """One task of a suite: its instruction and how many init states it ships.

    ``source`` holds what the suite's environment needs to build the scene (for LIBERO the
    BDDL file and the init-state file); it is recorded so a result can be rebuilt.
    """

    suite: str
    task_id: int
    name: str
    instruction: str
    n_init_states: int
    source: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    """A named, ordered collection of tasks and the environment that runs them.

    ``steps_key`` names the entry of a protocol's ``max_steps`` this suite uses;
    ``env_entry_point`` is a lazy ``module:Class`` taking ``(task, protocol, **kwargs)``.
    """

    name: str
    steps_key: str
    tasks: tuple[Task, ...]
    env_entry_point: str
    description: str = ""
    aliases: tuple[str, ...] = ()

    def task(self, task_id: int) -> Task:
        """The task with id ``task_id``; a clear error names the valid range."""
        if not 0 <= task_id < len(self.tasks):
            raise ValueError(
                f"task {task_id} is not in suite {self.name!r}; accepted: 0-{len(self.tasks) - 1}"
            )
        return self.tasks[task_id]
