"""Suites and tasks: what is evaluated, independent of how."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping

if TYPE_CHECKING:
    from vitabench.api.protocol import Protocol

#: What runs a suite's episodes: a simulator, or a real arm with an operator in the loop.
SuiteKind = Literal["simulation", "real_robot"]
SUITE_KINDS: tuple[str, ...] = ("simulation", "real_robot")
#: The entry of a real-robot protocol's ``max_steps`` (a cap; each task file gives its own limit).
REAL_ROBOT_STEPS_KEY = "real"


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
    ``env_entry_point`` is a lazy ``module:Class`` taking ``(task, protocol, **kwargs)``;
    ``kind`` says what runs it (a ``real_robot`` suite needs ``--robot``).
    """

    name: str
    steps_key: str
    tasks: tuple[Task, ...]
    env_entry_point: str
    description: str = ""
    aliases: tuple[str, ...] = ()
    kind: SuiteKind = "simulation"

    def __post_init__(self) -> None:
        if self.kind not in SUITE_KINDS:
            raise ValueError(f"suite {self.name!r} kind={self.kind!r}; accepted: {', '.join(SUITE_KINDS)}")

    @property
    def real_robot(self) -> bool:
        return self.kind == "real_robot"

    def task(self, task_id: int) -> Task:
        """The task with id ``task_id``; a clear error names the valid range."""
        if not 0 <= task_id < len(self.tasks):
            raise ValueError(
                f"task {task_id} is not in suite {self.name!r}; accepted: 0-{len(self.tasks) - 1}"
            )
        return self.tasks[task_id]

    def step_limit(self, protocol: Protocol, task_id: int) -> int:
        """The step limit of an episode of task ``task_id`` under ``protocol`` (:func:`step_limit`)."""
        return step_limit(protocol, self.task(task_id), self.steps_key)


def step_limit(protocol: Protocol, task: Task, steps_key: str | None = None) -> int:
    """The step limit of an episode of ``task``, the one rule every runner and env uses: the
    protocol's limit for the suite (its ``steps_key``, default the task's suite name), or the
    task's own ``max_steps`` (a real-robot task file) when that is smaller."""
    limit = protocol.steps_for(steps_key or task.suite)
    own = task.source.get("max_steps")
    return min(limit, int(own)) if own else limit
