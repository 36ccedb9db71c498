"""Demonstrations from a policy (usually the ``scripted`` expert) on real LIBERO episodes.

Episode ``k`` of a task starts from init state ``first_init_state + k``; every step records the
observation the policy saw (at the protocol's cameras and resolution) and the action it took.
Successful episodes are written as LIBERO-format demos; failed ones are counted and reported.

DAgger (``learner=CHECKPOINT``): a trained teacher acts and the expert, shadowing the episode
from its reset, labels every state the learner visits; every episode is kept (its labels are
the expert's), and the learner's successes and failures are reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import STATE_KEYS, check_actions
from vitabench.api.protocol import Protocol, check_trained_protocol
from vitabench.training.data import Demo, DemoWriter


@dataclass(frozen=True)
class CollectResult:
    """What a collection produced: kept demos and failures per task, wall time. In DAgger mode
    every episode is kept and ``failed`` lists the episodes the learner failed."""

    path: Path
    kept: Mapping[int, int]
    failed: Mapping[int, list[int]]  # task id -> init states whose episode failed
    steps: int
    wall_s: float


@dataclass
class _Trajectory:
    """What one episode recorded, step by step."""

    frames: dict[str, list[np.ndarray]]
    ee_pos: list[np.ndarray] = field(default_factory=list)
    ee_ori: list[np.ndarray] = field(default_factory=list)
    gripper_states: list[np.ndarray] = field(default_factory=list)
    joint_states: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    executed: list[np.ndarray] = field(default_factory=list)
    states: list[np.ndarray] = field(default_factory=list)

    def record(self, env: Any, observation: Mapping[str, Any], label: np.ndarray, executed: np.ndarray) -> None:
        for camera, frames in self.frames.items():
            frames.append(observation["images"][camera])
        state = observation["state"]
        self.ee_pos.append(state["ee_pos"])
        self.ee_ori.append(state["ee_axis_angle"])
        self.gripper_states.append(state["gripper_qpos"])
        self.joint_states.append(state["joint_pos"])
        self.states.append(env.sim_env.get_sim_state())
        self.labels.append(np.clip(label, -1.0, 1.0))
        self.executed.append(executed)

    def demo(self, task: Any, init_state: int, keep_executed: bool, attrs: Mapping[str, Any]) -> Demo:
        return Demo(
            actions=np.stack(self.labels).astype(np.float32),
            images={camera: np.stack(frames) for camera, frames in self.frames.items()},
            ee_pos=np.stack(self.ee_pos),
            ee_ori=np.stack(self.ee_ori),
            gripper_states=np.stack(self.gripper_states),
            joint_states=np.stack(self.joint_states),
            instruction=task.instruction,
            states=np.stack(self.states),
            executed_actions=np.stack(self.executed).astype(np.float32) if keep_executed else None,
            attrs={"task_id": task.task_id, "init_state": init_state, **attrs},
        )


def _rollout(
    env: Any,
    expert: Any,
    task: Any,
    init_state: int,
    seed: int,
    noise: float = 0.0,
    learner: Any = None,
    beta: float = 0.0,
) -> tuple[Demo, bool]:
    """One episode: the observation before each step, the expert's action there (the label), and
    whether the episode succeeded.

    Without ``learner`` the expert acts. With one (DAgger) the learner acts, its chunks executed
    whole as the runner would, while the expert shadows the episode from its reset and labels
    every step; with probability ``beta`` a step runs the expert's action instead. ``noise > 0``
    (DART) adds Gaussian noise of that standard deviation to every executed arm action. Noise
    and the beta draws are seeded by (seed, task, init state).
    """
    observation, info = env.reset(seed=seed, options={"init_state": init_state})
    expert.reset(task, 0, seed)
    if learner is not None:
        learner.reset(task, 0, seed)
    rng = np.random.default_rng([seed, task.task_id, init_state])
    trajectory = _Trajectory({camera: [] for camera in env.cameras})
    done = bool(info["success"])
    while not done:
        chunk = check_actions((learner or expert).act([observation], [0]), 1)[0]
        for proposed in chunk:
            label = check_actions(expert.act([observation], [0]), 1)[0, 0] if learner is not None else proposed
            executed = label.copy() if learner is None or rng.random() < beta else proposed.copy()
            if noise > 0:
                executed[:6] += rng.normal(0.0, noise, 6)
            executed = np.clip(executed, -1.0, 1.0)
            trajectory.record(env, observation, label, executed)
            observation, _, terminated, truncated, info = env.step(executed)
            done = terminated or truncated
            if done:
                break
    dagger = {"dagger": True, "learner_success": bool(info["success"])} if learner is not None else {}
    demo = trajectory.demo(task, init_state, keep_executed=noise > 0 or learner is not None, attrs=dagger)
    return demo, bool(info["success"])


def collect(
    policy_name: str,
    policy_args: Mapping[str, Any],
    suite: str,
    *,
    tasks: Sequence[int] | None,
    episodes: int,
    out: Path,
    protocol: Protocol,
    first_init_state: int = 0,
    noise: float = 0.0,
    learner: str | None = None,
    learner_ensemble: float | None = 0.01,
    beta: float = 0.0,
    on_episode: Callable[[int, int, bool, int], None] | None = None,
) -> CollectResult:
    """Run ``episodes`` episodes per task with ``policy_name``; keep the successful ones in ``out``.

    ``noise``: DART noise on the executed arm actions (see :func:`_rollout`). ``learner``: a
    teacher checkpoint (directory or shipped name) that acts while ``policy_name`` labels
    (DAgger), run with temporal ensembling ``learner_ensemble`` as it is evaluated; ``beta``:
    the probability that a step runs the expert's action instead. Every DAgger episode is kept.
    ``on_episode(task_id, init_state, success, steps)`` is called after every episode.
    """
    from vitabench.plugins import get_suite, make_policy

    if episodes < 1:
        raise VitabenchError(f"--episodes {episodes}; accepted: a positive integer")
    if not 0 <= noise <= 1:
        raise VitabenchError(f"--noise {noise}; accepted: a standard deviation from 0 to 1 (action units)")
    if not 0 <= beta <= 1:
        raise VitabenchError(f"--beta {beta}; accepted: a probability from 0 to 1")
    suite_obj = get_suite(suite)
    task_ids = list(range(len(suite_obj.tasks))) if tasks is None else list(tasks)
    chosen = []
    for task_id in task_ids:
        try:
            chosen.append(suite_obj.task(task_id))
        except ValueError as exc:
            raise VitabenchError(str(exc)) from None
    for task in chosen:
        if first_init_state < 0 or first_init_state + episodes > task.n_init_states:
            raise VitabenchError(
                f"init states {first_init_state}-{first_init_state + episodes - 1} for task {task.task_id}; "
                f"accepted: 0-{task.n_init_states - 1} (lower --episodes or --first-init-state)"
            )
    policy = make_policy(policy_name, **dict(policy_args))
    learner_policy = None if learner is None else _learner(learner, learner_ensemble, protocol)
    if Path(out).exists():
        raise VitabenchError(f"--out {out} already exists; accepted: a new file path")
    instructions = sorted({task.instruction for task in chosen})
    env_args = {
        "env_name": suite,
        "type": 1,
        "env_kwargs": {
            "bddl_file_name": chosen[0].source.get("bddl_file") if len(chosen) == 1 else None,
            "camera_names": list(protocol.cameras),
            "camera_heights": protocol.resolution,
            "camera_widths": protocol.resolution,
            "control_freq": protocol.control_freq,
        },
    }
    attrs = {
        "problem_info": {"language_instruction": instructions[0] if len(instructions) == 1 else None, "suite": suite},
        "env_args": env_args,
        "protocol": protocol.to_dict(),
        "resolution": protocol.resolution,
        "cameras": list(protocol.cameras),
        "collected_with": {"policy": policy_name, "args": dict(policy_args), "noise": noise},
        **({"dagger": {"learner": learner, "checkpoint_hash": learner_policy.checkpoint_hash,
                       "ensemble": learner_ensemble, "beta": beta}} if learner_policy is not None else {}),
    }
    start = time.monotonic()
    kept: dict[int, int] = {}
    failed: dict[int, list[int]] = {}
    from vitabench.envs.libero_env import LiberoEnv

    with DemoWriter(out, attrs=attrs) as writer:
        for task in chosen:
            env = LiberoEnv(
                task, protocol, cameras=protocol.cameras, resolution=protocol.resolution,
                state_keys=STATE_KEYS, privileged=policy.spec.privileged,
            )
            try:
                kept[task.task_id], failed[task.task_id] = 0, []
                for k in range(episodes):
                    init_state = first_init_state + k
                    demo, success = _rollout(env, policy, task, init_state, protocol.seed, noise, learner_policy, beta)
                    if success or learner_policy is not None:
                        writer.append(demo)
                        kept[task.task_id] += 1
                    if not success:
                        failed[task.task_id].append(init_state)
                    if on_episode is not None:
                        on_episode(task.task_id, init_state, success, len(demo))
            finally:
                env.close()
        steps = writer.steps
    return CollectResult(Path(out), kept, failed, steps, time.monotonic() - start)


def _learner(checkpoint: str, ensemble: float | None, protocol: Protocol) -> Any:
    """The DAgger learner: a teacher checkpoint trained under ``protocol`` (or one derived from
    it), with temporal ensembling ``ensemble`` (``None``: its raw chunks)."""
    from vitabench.models.checkpoint import resolve_checkpoint
    from vitabench.plugins import make_policy

    policy = make_policy("teacher", checkpoint=checkpoint, ensemble="none" if ensemble is None else ensemble)
    check_trained_protocol(resolve_checkpoint(checkpoint, "teacher").protocol, protocol)
    if policy.spec.resolution not in (None, protocol.resolution):
        raise VitabenchError(
            f"--dagger {checkpoint} reads {policy.spec.resolution} px images but protocol {protocol.name} renders "
            f"{protocol.resolution} px; accepted: the protocol the checkpoint was trained under"
        )
    return policy
