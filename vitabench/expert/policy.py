"""The scripted policy: each slot runs the skills of its task's goal in order, and every skill's
command becomes a 7-D OSC_POSE action."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import ACTION_DIM, BasePolicy, Observation, PolicySpec, batch_slots
from vitabench.api.suite import Task
from vitabench.expert.goals import parse_goal
from vitabench.expert.gripper import DOWN, OPEN, POS_SCALE, ROT_SCALE, gripper_yaw
from vitabench.expert.scene import Scene
from vitabench.expert.skills import Skill, make_skills
from vitabench.geometry import matrix_to_rotation_vector, yaw_matrix


@dataclass
class _Episode:
    skills: list[Skill]
    current: int = 0


class ScriptedPolicy(BasePolicy):
    """Privileged expert for LIBERO goals (see :mod:`vitabench.expert`).

    ``position_gain`` turns a position error (m) into an action, ``rotation_gain`` a rotation
    error (rad); both are clipped to ``[-1, 1]`` after scaling by the OSC_POSE limits.
    """

    def __init__(self, position_gain: float = 1.0, rotation_gain: float = 1.0) -> None:
        self.spec = PolicySpec(privileged=True, state_keys=("ee_pos", "ee_quat", "gripper_qpos"))
        self.position_gain = float(position_gain)
        self.rotation_gain = float(rotation_gain)
        self._episodes: dict[int, _Episode] = {}

    def reset(self, task: Task, slot: int = 0, seed: int | None = None) -> None:
        del seed
        bddl_file = task.source.get("bddl_file")
        if not bddl_file:
            raise VitabenchError(f"task {task.name!r} of {task.suite} has no BDDL goal; scripted needs a LIBERO task")
        self._episodes[slot] = _Episode(make_skills(parse_goal(bddl_file)))

    def release(self, slot: int) -> None:
        self._episodes.pop(slot, None)

    def act(self, observations: Sequence[Observation], slots: Sequence[int] | None = None) -> np.ndarray:
        actions = np.zeros((len(observations), 1, ACTION_DIM), dtype=np.float32)
        for row, (observation, slot) in enumerate(zip(observations, batch_slots(observations, slots))):
            episode = self._episodes.get(slot)
            if episode is None:
                raise VitabenchError(f"scripted policy got an observation for slot {slot} before reset(task, slot)")
            actions[row, 0] = self._act_one(episode, Scene.from_observation(observation))
        return actions

    def phase(self, slot: int = 0) -> str:
        """Where a slot's episode stands, ``"<skill index>:<phase>"`` or ``"done"`` (diagnostics)."""
        episode = self._episodes[slot]
        if episode.current >= len(episode.skills):
            return "done"
        return f"{episode.current}:{episode.skills[episode.current].phase}"

    def _act_one(self, episode: _Episode, scene: Scene) -> np.ndarray:
        if episode.current >= len(episode.skills):
            return self._command(scene, scene.ee_pos, gripper_yaw(scene.ee_rotation), OPEN)
        target, orientation, gripper, done = episode.skills[episode.current].act(scene)
        if done:
            episode.current += 1
        return self._command(scene, target, orientation, gripper)

    def _command(self, scene: Scene, target: np.ndarray, orientation: "float | np.ndarray", gripper: float) -> np.ndarray:
        position = np.clip((target - scene.ee_pos) / POS_SCALE * self.position_gain * 4.0, -1.0, 1.0)
        desired = orientation if isinstance(orientation, np.ndarray) else yaw_matrix(orientation) @ DOWN
        rotation = np.clip(
            matrix_to_rotation_vector(desired @ scene.ee_rotation.T) / ROT_SCALE * self.rotation_gain * 2.0, -1.0, 1.0
        )
        return np.concatenate([position, rotation, [gripper]]).astype(np.float32)
