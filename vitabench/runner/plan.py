"""A run's plan, resolved and checked before anything is written: the suite, the protocol (a preset
or file, then its derivations), the manifest, the policy's record, the video mode and, for a
real-robot suite, the robot its env drives."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from vitabench.api.episode import Manifest, build_manifest
from vitabench.api.errors import VitabenchError
from vitabench.api.protocol import Protocol, load_protocol
from vitabench.api.suite import Suite
from vitabench.runner.executor import DEFAULT_STEP_TIMEOUT_S
from vitabench.runner.video import VideoMode

#: The protocol of a run that names none, by the kind of its suite.
DEFAULT_PROTOCOLS: dict[str, str] = {"simulation": "standard", "real_robot": "real_robot"}


def canonical_json(value: Any) -> str:
    """``value`` as sorted-key JSON (non-JSON values as strings): how records compare arguments."""
    return json.dumps(value, sort_keys=True, default=str)


def resolve_protocol(
    protocol: str | Protocol, *, seed: int | None, max_steps: int | None, domain: str | None = None,
    init_states: str | None = None,
) -> Protocol:
    """The protocol of a run: a preset or file, then the ``--init-states``, ``--domain`` (one domain,
    or a whole set run in one manifest), ``--seed`` and ``--max-steps`` derivations, in that order."""
    resolved = load_protocol(protocol) if isinstance(protocol, str) else protocol
    if init_states is not None:
        resolved = resolved.with_init_states(init_states)
    if domain is not None:
        from vitabench.envs.domains import resolve_domains

        resolved = resolved.with_domains(resolve_domains(domain), domain)
    if seed is not None:
        resolved = resolved.with_seed(seed)
    if max_steps is not None:
        resolved = resolved.with_max_steps(max_steps)
    return resolved


def run_manifest(suite: Suite, protocol: Protocol, tasks: Sequence[int] | None, episodes_per_task: int | None) -> Manifest:
    """The manifest of a run, after checking the protocol has a step limit for the suite and the
    tasks exist (one-line :class:`VitabenchError` otherwise)."""
    try:
        protocol.steps_for(suite.steps_key)
        for task_id in tasks or ():
            suite.task(task_id)
        return build_manifest(suite, protocol, tasks, episodes_per_task)
    except ValueError as exc:
        if isinstance(exc, VitabenchError):
            raise
        raise VitabenchError(str(exc)) from None


def robot_env_kwargs(suite: Suite, robot: str | None, robot_args: Mapping[str, Any] | None, workers: int, out: Path) -> tuple:
    """Constructor arguments of a real-robot suite's env (:class:`vitabench.robots.env.RobotEnv`);
    ``()`` for a simulated suite."""
    if robot is None:
        if suite.real_robot:
            raise VitabenchError(f"suite {suite.name!r} runs on a real robot; accepted: --robot franka|piper with --robot-arg KEY=VALUE")
        return ()
    if not suite.real_robot:
        raise VitabenchError(f"--robot {robot}: suite {suite.name!r} is simulated; accepted: a real-robot suite (real_five, real_user)")
    if workers != 1:
        raise VitabenchError(f"--workers {workers}: a robot run uses one worker (one arm); accepted: --workers 1")
    from vitabench.robots.driver import ROBOT_DRIVERS

    if robot not in ROBOT_DRIVERS:
        raise VitabenchError(f"unknown robot {robot!r}; accepted: {', '.join(sorted(ROBOT_DRIVERS))}")
    return (("robot", robot), ("robot_args", tuple(sorted(dict(robot_args or {}).items()))), ("run_dir", str(out)))


@dataclass(frozen=True)
class ResolvedRun:
    """Everything a run is, before its policy is built or its directory touched.

    ``policy`` and ``robot`` are as ``run.json`` records them (``{"name", "args"}``; ``robot`` is
    ``None`` for a simulated suite).
    """

    suite: Suite
    protocol: Protocol
    manifest: Manifest
    policy: dict[str, Any]
    video: VideoMode
    step_timeout: float
    env_kwargs: tuple[tuple[str, Any], ...]
    robot: dict[str, Any] | None


def resolve_run(
    policy_name: str,
    policy_args: Mapping[str, Any],
    suite: str,
    *,
    tasks: Sequence[int] | None,
    episodes_per_task: int | None,
    protocol: str | Protocol | None,
    max_steps: int | None,
    seed: int | None,
    domain: str | None,
    init_states: str | None,
    workers: int,
    step_timeout: float | None,
    video: str,
    out: Path,
    robot: str | None,
    robot_args: Mapping[str, Any] | None,
) -> ResolvedRun:
    """Resolve a run's inputs; every bad one raises :class:`VitabenchError` naming it. ``protocol``
    ``None`` is the suite kind's default (:data:`DEFAULT_PROTOCOLS`), ``step_timeout`` ``None``
    :data:`~vitabench.runner.executor.DEFAULT_STEP_TIMEOUT_S`."""
    from vitabench.plugins import POLICIES, get_suite

    suite_obj = get_suite(suite)
    env_kwargs = robot_env_kwargs(suite_obj, robot, robot_args, workers, out)
    resolved = resolve_protocol(
        protocol if protocol is not None else DEFAULT_PROTOCOLS[suite_obj.kind],
        seed=seed, max_steps=max_steps, domain=domain, init_states=init_states,
    )
    manifest = run_manifest(suite_obj, resolved, tasks, episodes_per_task)
    video_mode = VideoMode.parse(video)
    if workers < 1:
        raise VitabenchError(f"--workers {workers}: must be >= 1")
    step_timeout = DEFAULT_STEP_TIMEOUT_S if step_timeout is None else step_timeout
    if step_timeout <= 0:
        raise VitabenchError(f"--step-timeout {step_timeout}: must be > 0 seconds")
    return ResolvedRun(
        suite=suite_obj,
        protocol=resolved,
        manifest=manifest,
        policy={"name": POLICIES.canonical(policy_name), "args": json.loads(canonical_json(dict(policy_args)))},
        video=video_mode,
        step_timeout=step_timeout,
        env_kwargs=env_kwargs,
        robot=None if robot is None else {"name": robot, "args": json.loads(canonical_json(dict(robot_args or {})))},
    )
