"""Demonstrations from a policy (usually the ``scripted`` expert) on real LIBERO episodes.

Episode ``k`` of a task starts from init state ``first_init_state + k``; every step records the
observation the policy saw (at the protocol's cameras and resolution) and the action it took.
Successful episodes are written as LIBERO-format demos; failed ones are counted and reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import STATE_KEYS, check_actions
from vitabench.api.protocol import Protocol
from vitabench.training.data import Demo, DemoWriter


@dataclass(frozen=True)
class CollectResult:
    """What a collection produced: kept demos and failures per task, wall time."""

    path: Path
    kept: Mapping[int, int]
    failed: Mapping[int, list[int]]  # task id -> init states whose episode failed
    steps: int
    wall_s: float


def _rollout(env: Any, policy: Any, task: Any, init_state: int, seed: int) -> tuple[Demo, bool]:
    """One episode; the observations before each action, the actions, and whether it succeeded."""
    observation, info = env.reset(seed=seed, options={"init_state": init_state})
    policy.reset(task, 0, seed)
    frames: dict[str, list[np.ndarray]] = {camera: [] for camera in env.cameras}
    records: dict[str, list[np.ndarray]] = {"ee_pos": [], "ee_ori": [], "gripper_states": [], "joint_states": [], "actions": [], "states": []}
    done = bool(info["success"])
    while not done:
        chunk = check_actions(policy.act([observation], [0]), 1)[0]
        for action in chunk:
            for camera in env.cameras:
                frames[camera].append(observation["images"][camera])
            state = observation["state"]
            records["ee_pos"].append(state["ee_pos"])
            records["ee_ori"].append(state["ee_axis_angle"])
            records["gripper_states"].append(state["gripper_qpos"])
            records["joint_states"].append(state["joint_pos"])
            records["states"].append(env.sim_env.get_sim_state())
            records["actions"].append(np.clip(action, -1.0, 1.0))
            observation, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if done:
                break
    stack = {key: np.stack(values) if values else np.zeros((0,)) for key, values in records.items()}
    demo = Demo(
        actions=stack["actions"].astype(np.float32),
        images={camera: np.stack(images) for camera, images in frames.items()},
        ee_pos=stack["ee_pos"],
        ee_ori=stack["ee_ori"],
        gripper_states=stack["gripper_states"],
        joint_states=stack["joint_states"],
        instruction=task.instruction,
        states=stack["states"],
        attrs={"task_id": task.task_id, "init_state": init_state},
    )
    return demo, bool(info["success"]) and len(demo) > 0


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
    on_episode: Callable[[int, int, bool, int], None] | None = None,
) -> CollectResult:
    """Run ``episodes`` episodes per task with ``policy_name``; keep the successful ones in ``out``.

    ``on_episode(task_id, init_state, success, steps)`` is called after every episode.
    """
    from vitabench.registry import get_suite, make_policy

    if episodes < 1:
        raise VitabenchError(f"--episodes {episodes}; accepted: a positive integer")
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
        "collected_with": {"policy": policy_name, "args": dict(policy_args)},
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
                    demo, success = _rollout(env, policy, task, init_state, protocol.seed)
                    if success:
                        writer.append(demo)
                        kept[task.task_id] += 1
                    else:
                        failed[task.task_id].append(init_state)
                    if on_episode is not None:
                        on_episode(task.task_id, init_state, success, len(demo))
            finally:
                env.close()
        steps = writer.steps
    return CollectResult(Path(out), kept, failed, steps, time.monotonic() - start)
