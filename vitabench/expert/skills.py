"""The skills: one closed-loop controller per goal predicate (pick-and-place, sliding a drawer,
turning a knob), and :func:`make_skills`, which orders them for a conjunction of goals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.expert.goals import SUPPORTED_GOALS, Goal
from vitabench.expert.gripper import CLOSE, OPEN, finger_yaw_for, gripper_yaw, wrap_full_turn, wrap_half_turn
from vitabench.expert.scene import Scene
from vitabench.geometry import matrix_to_rotation_vector, quat_to_matrix

#: Objects grasped by the rim (fingers across the wall) rather than across the body.
RIM_OBJECTS: tuple[str, ...] = ("bowl", "mug", "cup", "ramekin")


def _has_rim(name: str) -> bool:
    return any(kind in name for kind in RIM_OBJECTS)


def _category(name: str) -> str:
    """``wooden_cabinet_1_top_region`` -> ``wooden_cabinet``: the object class of a name."""
    words = name.split("_")
    for i, word in enumerate(words):
        if word.isdigit():
            return "_".join(words[:i])
    return name


#: Joint position that counts as open for each articulated object class (LIBERO's ranges).
OPEN_POSITIONS: dict[str, float] = {
    "wooden_cabinet": -0.15,
    "white_cabinet": -0.15,
    "yellow_cabinet": -0.15,
    "short_cabinet": 0.13,
}
#: Joint position that counts as turned on, for knobs.
TURNED_ON_POSITIONS: dict[str, float] = {"flat_stove": 0.5, "yellow_stove": 0.5}

#: What a skill asks for: (ee target position, orientation, gripper command, done). The
#: orientation is a yaw of the downward-pointing gripper, or a full rotation matrix.
Command = tuple[np.ndarray, "float | np.ndarray", float, bool]


class Skill:
    """One goal predicate's controller: ``act(scene) -> Command``."""

    phase: str = "start"

    def act(self, scene: Scene) -> Command:
        raise NotImplementedError


@dataclass
class PickPlace(Skill):
    """Pick ``obj`` and put it in/on ``target`` (a region site or an object)."""

    obj: str
    target: str
    inside: bool
    phase: str = "approach"
    phase_steps: int = 0
    grasp_offset: np.ndarray | None = None  # grasp point - object centre, fixed at approach
    grasp_yaw: float = 0.0
    hold_offset: float = 0.0  # ee z - object bottom while held
    carry_bottom: float = 0.0  # object bottom height while carried
    attempts: int = 0
    failed_directions: list[np.ndarray] = field(default_factory=list)
    z_history: list[float] = field(default_factory=list)
    xy_history: list[np.ndarray] = field(default_factory=list)

    # ---- plan ----
    def _plan_grasp(self, scene: Scene) -> None:
        """Choose the grasp point (offset from the object's centre) and the gripper yaw."""
        extents = scene.extents[self.obj]
        rotation = quat_to_matrix(scene.objects[self.obj][3:])
        current = gripper_yaw(scene.ee_rotation)
        if _has_rim(self.obj):
            self.grasp_offset, self.grasp_yaw = self._rim_grasp(scene, extents, current)
            return
        vertical = int(np.argmax(np.abs(rotation[2, :])))
        axes = [i for i in range(3) if i != vertical]
        # Close across a horizontal axis narrow enough for the fingers, turning as little as possible.
        candidates = [i for i in axes if 2 * extents[i] < 0.065] or [min(axes, key=lambda i: extents[i])]
        best_yaw, best_turn = current, np.inf
        for i in candidates:
            direction = rotation[:2, i]
            if np.linalg.norm(direction) < 1e-6:
                continue
            turn = abs(wrap_half_turn(finger_yaw_for(direction) - current))
            if turn < best_turn:
                best_turn = turn
                best_yaw = current + wrap_half_turn(finger_yaw_for(direction) - current)
        self.grasp_offset = np.zeros(3)
        self.grasp_yaw = best_yaw

    def _rim_grasp(self, scene: Scene, extents: np.ndarray, current: float) -> tuple[np.ndarray, float]:
        """A point on a bowl's or mug's rim with the fingers across the wall, away from other objects."""
        radius = max(extents[0], extents[1]) - 0.012
        center = scene.center(self.obj)
        grasp_z = scene.top(self.obj) - 0.018
        best, best_score = None, -np.inf
        for angle in np.linspace(-np.pi, np.pi, 16, endpoint=False):
            direction = np.array([np.cos(angle), np.sin(angle)])
            point = center[:2] + radius * direction
            yaw = current + wrap_half_turn(finger_yaw_for(direction) - current)
            outer_finger = point + 0.045 * direction
            clearance = min(scene.clearance(point, grasp_z, self.obj), scene.clearance(outer_finger, grasp_z, self.obj))
            reach = np.linalg.norm(point - scene.robot_base[:2]) - np.linalg.norm(center[:2] - scene.robot_base[:2])
            score = min(clearance, 0.04) - 0.3 * reach - 0.01 * abs(yaw - current)
            score -= sum(0.05 for failed in self.failed_directions if float(failed @ direction) > 0.7)
            if score > best_score:
                best_score, best = score, (np.append(radius * direction, 0.0), yaw)
        assert best is not None
        return best

    def _grasp_point(self, scene: Scene) -> np.ndarray:
        center = scene.center(self.obj)
        bottom, top = scene.bottom(self.obj), scene.top(self.obj)
        depth = 0.018 if _has_rim(self.obj) else 0.03
        z = max(top - depth, bottom + 0.01)
        return np.array([center[0] + self.grasp_offset[0], center[1] + self.grasp_offset[1], z])

    def _place_xy(self, scene: Scene) -> np.ndarray:
        """Where the object's centre goes: the target's centre, or for a container region the
        free spot (centre or up to 3 cm off it) farthest from what is already inside."""
        if self.target not in scene.sites:
            return scene.objects[self.target][:2]
        center = scene.sites[self.target][:2]
        if not self.inside:
            return center
        half = scene.site_half_size(self.target)[:2]
        others = [
            pose[:2]
            for name, pose in scene.objects.items()
            if name != self.obj and np.all(np.abs(pose[:2] - center) < half) and not self.target.startswith(name)
        ]
        if not others:
            return center
        spots = [center + np.array([dx, dy]) for dx in (-0.03, 0.0, 0.03) for dy in (-0.03, 0.0, 0.03)]
        return max(spots, key=lambda spot: min(float(np.linalg.norm(spot - o)) for o in others))

    def _surface(self, scene: Scene) -> float:
        """Height the object's bottom should come down to."""
        if self.target in scene.sites:
            height = scene.site_half_size(self.target)[2]
            z = scene.sites[self.target][2]
            return float(z - height) if self.inside else float(z + height)
        return scene.top(self.target) - 0.01

    def _clear_height(self, scene: Scene) -> float:
        """Height the carried object's bottom must clear on the way."""
        tops = [scene.top(self.target)] if self.target in scene.bboxes else []
        tops += [box[5] for name, box in scene.bboxes.items() if self.target.startswith(name)]
        return max(tops + [self._surface(scene)]) + 0.04

    # ---- act ----
    def act(self, scene: Scene) -> tuple[np.ndarray, float, float, bool]:
        """(ee target position, target yaw, gripper command, done)."""
        self.phase_steps += 1
        if self.grasp_offset is None:
            self._plan_grasp(scene)
        ee = scene.ee_pos
        grasp = self._grasp_point(scene)
        if self.phase == "approach":
            hover = grasp + np.array([0.0, 0.0, 0.06])
            hover[2] = max(hover[2], min(ee[2], grasp[2] + 0.2))
            xy_error = np.linalg.norm(hover[:2] - ee[:2])
            yaw_error = abs(wrap_full_turn(self.grasp_yaw - gripper_yaw(scene.ee_rotation)))
            if xy_error < 0.01 and yaw_error < 0.08 and scene.gripper_opening > 0.06:
                return self._next("descend", hover, OPEN)
            if xy_error > 0.03:  # travel high until above the grasp point
                hover[2] = max(hover[2], ee[2])
            return hover, self.grasp_yaw, OPEN, False
        if self.phase == "descend":
            if np.linalg.norm(grasp - ee) < 0.006 or self._stalled(ee, 4) or self.phase_steps > 60:
                return self._next("close", grasp, CLOSE)
            return grasp, self.grasp_yaw, OPEN, False
        if self.phase == "close":
            if self.phase_steps >= 12:
                self.hold_offset = ee[2] - scene.bottom(self.obj)
                self.carry_bottom = self._clear_height(scene)
                return self._next("lift", ee, CLOSE)
            return grasp, self.grasp_yaw, CLOSE, False
        if self.phase == "lift":
            target = ee.copy()
            lift_bottom = max(self.carry_bottom, self._support_under(scene) + 0.03)
            target[2] = lift_bottom + self.hold_offset
            if not self._holding(scene):
                return self._retry(scene)
            if target[2] - ee[2] < 0.02:
                return self._next("carry", target, CLOSE)
            return target, self.grasp_yaw, CLOSE, False
        if self.phase == "carry":
            if not self._holding(scene):
                return self._retry(scene)
            offset = self._place_xy(scene) - scene.objects[self.obj][:2]
            bottom = max(self.carry_bottom, self._support_under(scene) + 0.03)
            target = np.array([ee[0] + offset[0], ee[1] + offset[1], bottom + self.hold_offset])
            if np.linalg.norm(offset) < 0.012 or (self.phase_steps > 20 and self._stalled_xy(ee, 8)):
                return self._next("lower", target, CLOSE)
            return target, self.grasp_yaw, CLOSE, False
        if self.phase == "lower":
            offset = self._place_xy(scene) - scene.objects[self.obj][:2]
            gap = scene.bottom(self.obj) - self._surface(scene)
            target = np.array([ee[0] + offset[0], ee[1] + offset[1], ee[2] - gap])
            if gap < 0.015 or self._stalled(ee, 4) or self.phase_steps > 60:
                return self._next("release", ee, OPEN)
            return target, self.grasp_yaw, CLOSE, False
        if self.phase == "release":
            if self.phase_steps >= 8:
                return self._next("retreat", ee, OPEN)
            return ee, self.grasp_yaw, OPEN, False
        if self.phase == "retreat":
            target = ee.copy()
            target[2] = self.carry_bottom + self.hold_offset + 0.05
            return target, self.grasp_yaw, OPEN, self.phase_steps >= 15
        raise AssertionError(self.phase)

    def _support_under(self, scene: Scene) -> float:
        """Highest top of the objects under the held object's footprint (tables and floors aside)."""
        held = scene.bboxes[self.obj]
        tops = [-np.inf]
        for name, box in scene.bboxes.items():
            if name == self.obj or box[3] - box[0] > 1.0 or box[4] - box[1] > 1.0:
                continue
            if box[0] < held[3] + 0.01 and held[0] - 0.01 < box[3] and box[1] < held[4] + 0.01 and held[1] - 0.01 < box[4]:
                tops.append(float(box[5]))
        return max(tops)

    def _holding(self, scene: Scene) -> bool:
        held = scene.ee_pos[2] - scene.bottom(self.obj) < self.hold_offset + 0.03
        return held and scene.gripper_opening > 0.002

    def _retry(self, scene: Scene) -> tuple[np.ndarray, float, float, bool]:
        self.attempts += 1
        if self.grasp_offset is not None and np.linalg.norm(self.grasp_offset[:2]) > 0:
            self.failed_directions.append(self.grasp_offset[:2] / np.linalg.norm(self.grasp_offset[:2]))
        self.grasp_offset = None
        target = scene.ee_pos + np.array([0.0, 0.0, 0.05])
        return self._next("approach", target, OPEN)

    def _next(self, phase: str, target: np.ndarray, gripper: float) -> tuple[np.ndarray, float, float, bool]:
        self.phase = phase
        self.phase_steps = 0
        self.z_history.clear()
        self.xy_history.clear()
        return target, self.grasp_yaw, gripper, False

    def _stalled_xy(self, ee: np.ndarray, window: int) -> bool:
        self.xy_history.append(ee[:2].copy())
        if len(self.xy_history) <= window:
            return False
        return float(np.linalg.norm(self.xy_history[-1] - self.xy_history[-1 - window])) < 0.003

    def _stalled(self, ee: np.ndarray, window: int) -> bool:
        self.z_history.append(float(ee[2]))
        if len(self.z_history) <= window:
            return False
        return abs(self.z_history[-1] - self.z_history[-1 - window]) < 0.002


@dataclass
class Slide(Skill):
    """Open or close a drawer. Opening grasps the handle bar from the front, the gripper level and
    its fingers above and below the bar, then pulls; closing pushes the handle with the closed
    gripper pointing down."""

    region: str
    opening: bool
    phase: str = "approach"
    phase_steps: int = 0
    yaw: float | None = None
    front_pose: np.ndarray | None = None
    history: list[np.ndarray] = field(default_factory=list)

    def _state(self, scene: Scene) -> tuple[float, float, np.ndarray, np.ndarray]:
        """(joint position, open position, unit horizontal pull direction, handle centre)."""
        key = scene.joint_key(self.region)
        frame = scene.joint_frames[key]
        category = _category(key.split("/")[0] if "/" in key else self.region)
        if category not in OPEN_POSITIONS:
            raise VitabenchError(f"scripted policy cannot open or close {category!r}; accepted: {', '.join(OPEN_POSITIONS)}")
        open_at = OPEN_POSITIONS[category]
        pull = frame[1:4] * np.sign(open_at)
        pull = np.array([pull[0], pull[1], 0.0]) / max(float(np.linalg.norm(pull[:2])), 1e-6)
        boxes = scene.joint_geoms[key]
        centers = (boxes[:, :3] + boxes[:, 3:]) / 2.0
        handle = centers[int(np.argmax(centers @ pull))]
        return float(frame[0]), open_at, pull, handle

    def _done(self, position: float, open_at: float) -> bool:
        if self.opening:
            return abs(position) >= abs(open_at) + 0.003
        return abs(position) <= 0.003

    def _front(self, scene: Scene, pull: np.ndarray) -> np.ndarray:
        """Level gripper pointing at the handle (along -pull), fingers vertical: of the two such
        poses, the one nearer the current orientation."""
        if self.front_pose is None:
            poses = []
            for up in (1.0, -1.0):
                y_axis, z_axis = np.array([0.0, 0.0, up]), -pull
                poses.append(np.column_stack([np.cross(y_axis, z_axis), y_axis, z_axis]))
            self.front_pose = min(poses, key=lambda pose: np.linalg.norm(matrix_to_rotation_vector(pose @ scene.ee_rotation.T)))
        return self.front_pose

    def act(self, scene: Scene) -> Command:
        self.phase_steps += 1
        position, open_at, pull, handle = self._state(scene)
        ee = scene.ee_pos
        if self.yaw is None:
            current = gripper_yaw(scene.ee_rotation)
            self.yaw = current + wrap_half_turn(finger_yaw_for(pull[:2]) - current)
        if self.phase == "approach" and self._done(position, open_at):
            return self._next("retreat", ee, OPEN)
        return self._open(scene, position, open_at, pull, handle) if self.opening else self._close(scene, position, pull, handle)

    def _open(self, scene: Scene, position: float, open_at: float, pull: np.ndarray, handle: np.ndarray) -> Command:
        ee = scene.ee_pos
        front = self._front(scene, pull)
        if self.phase == "approach":
            before = handle + 0.10 * pull
            if ee[2] < handle[2] + 0.03 and np.linalg.norm((ee - before)[:2]) > 0.03:
                before[2] = handle[2] + 0.05  # come in from slightly above, not through the drawer
            turned = np.linalg.norm(matrix_to_rotation_vector(front @ scene.ee_rotation.T)) < 0.15
            if np.linalg.norm(before - ee) < 0.015 and turned:
                return self._next("insert", before, OPEN, front)
            return before, front, OPEN, False
        if self.phase == "insert":
            grip = handle - 0.005 * pull
            if np.linalg.norm(grip - ee) < 0.006 or self._stalled(ee) or self.phase_steps > 40:
                return self._next("close", grip, CLOSE, front)
            return grip, front, OPEN, False
        if self.phase == "close":
            if self.phase_steps >= 12:
                return self._next("move", ee, CLOSE, front)
            return ee, front, CLOSE, False
        if self.phase == "move":
            if self._done(position, open_at) or self.phase_steps > 80:
                return self._next("release", ee, OPEN, front)
            target = ee + pull * min(abs(open_at) - abs(position) + 0.02, 0.05)
            target[2] = handle[2]
            return target, front, CLOSE, False
        if self.phase == "release":
            if self.phase_steps >= 8:
                return self._next("retreat", ee, OPEN, front)
            return ee, front, OPEN, False
        if self.phase == "retreat":
            return ee + 0.04 * pull + np.array([0.0, 0.0, 0.02]), front, OPEN, self.phase_steps >= 10
        raise AssertionError(self.phase)

    def _close(self, scene: Scene, position: float, pull: np.ndarray, handle: np.ndarray) -> Command:
        ee = scene.ee_pos
        push_from = handle + 0.03 * pull
        if self.phase == "approach":
            hover = push_from + np.array([0.0, 0.0, 0.06])
            if np.linalg.norm(hover[:2] - ee[:2]) > 0.03:
                hover[2] = max(hover[2], ee[2])
            if np.linalg.norm(hover - ee) < 0.015:
                return self._next("descend", hover, CLOSE)
            return hover, self.yaw, CLOSE, False
        if self.phase == "descend":
            if np.linalg.norm(push_from - ee) < 0.008 or self._stalled(ee) or self.phase_steps > 40:
                return self._next("move", push_from, CLOSE)
            return push_from, self.yaw, CLOSE, False
        if self.phase == "move":
            if abs(position) <= 0.003 or self.phase_steps > 80:
                return self._next("retreat", ee, CLOSE)
            target = ee - pull * min(abs(position) + 0.02, 0.05)
            target[2] = handle[2]
            return target, self.yaw, CLOSE, False
        if self.phase == "retreat":
            return ee + 0.03 * pull + np.array([0.0, 0.0, 0.03]), self.yaw, OPEN, self.phase_steps >= 10
        raise AssertionError(self.phase)

    def _stalled(self, ee: np.ndarray) -> bool:
        self.history.append(ee.copy())
        return len(self.history) > 5 and float(np.linalg.norm(self.history[-1] - self.history[-6])) < 0.002

    def _next(self, phase: str, target: np.ndarray, gripper: float, pose: np.ndarray | None = None) -> Command:
        self.phase, self.phase_steps = phase, 0
        self.history.clear()
        return target, float(self.yaw) if pose is None else pose, gripper, False


@dataclass
class TurnOn(Skill):
    """Turn a knob about its vertical axis: grasp it from above and twist the wrist."""

    obj: str
    phase: str = "approach"
    phase_steps: int = 0
    start_yaw: float | None = None

    def act(self, scene: Scene) -> Command:
        self.phase_steps += 1
        key = scene.joint_key(self.obj)
        frame = scene.joint_frames[key]
        category = _category(self.obj)
        if category not in TURNED_ON_POSITIONS:
            raise VitabenchError(f"scripted policy cannot turn on {category!r}; accepted: {', '.join(TURNED_ON_POSITIONS)}")
        boxes = scene.joint_geoms[key]
        knob = np.array([frame[4], frame[5], float(boxes[:, 5].max()) - 0.012])
        position, axis_up = float(frame[0]), float(np.sign(frame[3]) or 1.0)
        ee = scene.ee_pos
        yaw = gripper_yaw(scene.ee_rotation)
        if self.phase == "approach":
            if position >= TURNED_ON_POSITIONS[category] + 0.1:
                return self._next("retreat", ee, OPEN, yaw)
            hover = knob + np.array([0.0, 0.0, 0.06])
            if np.linalg.norm(hover[:2] - ee[:2]) > 0.03:
                hover[2] = max(hover[2], ee[2])
            if np.linalg.norm(hover - ee) < 0.012:
                return self._next("descend", hover, OPEN, yaw)
            return hover, yaw if self.start_yaw is None else self.start_yaw, OPEN, False
        if self.start_yaw is None:
            self.start_yaw = yaw
        if self.phase == "descend":
            if np.linalg.norm(knob - ee) < 0.006 or self.phase_steps > 40:
                return self._next("close", knob, CLOSE, self.start_yaw)
            return knob, self.start_yaw, OPEN, False
        if self.phase == "close":
            if self.phase_steps >= 10:
                return self._next("twist", knob, CLOSE, self.start_yaw)
            return knob, self.start_yaw, CLOSE, False
        if self.phase == "twist":
            if position >= TURNED_ON_POSITIONS[category] + 0.15 or self.phase_steps > 40:
                return self._next("release", knob, OPEN, yaw)
            return knob, self.start_yaw + axis_up * 1.0, CLOSE, False
        if self.phase == "release":
            if self.phase_steps >= 8:
                return self._next("retreat", ee, OPEN, yaw)
            return ee, yaw, OPEN, False
        if self.phase == "retreat":
            return ee + np.array([0.0, 0.0, 0.04]), yaw, OPEN, self.phase_steps >= 8
        raise AssertionError(self.phase)

    def _next(self, phase: str, target: np.ndarray, gripper: float, yaw: float) -> Command:
        self.phase, self.phase_steps = phase, 0
        return target, yaw, gripper, False


def make_skills(goals: Sequence[Goal]) -> list[Skill]:
    """Skills achieving a conjunction of goal predicates, in a workable order: drawers opened
    first (also those a goal puts something *in*), then pick-and-place, then closing and turning
    on. A predicate the expert cannot achieve raises naming it."""
    opened: list[Skill] = []
    placed: list[Skill] = []
    finished: list[Skill] = []
    for goal in goals:
        if goal.predicate in ("in", "on") and len(goal.args) == 2:
            obj, target = goal.args
            if goal.predicate == "in" and _category(target) in OPEN_POSITIONS:
                opened.append(Slide(target, opening=True))
            placed.append(PickPlace(obj=obj, target=target, inside=goal.predicate == "in"))
        elif goal.predicate == "open" and len(goal.args) == 1:
            opened.append(Slide(goal.args[0], opening=True))
        elif goal.predicate == "close" and len(goal.args) == 1 and _category(goal.args[0]) in OPEN_POSITIONS:
            finished.append(Slide(goal.args[0], opening=False))
        elif goal.predicate == "turnon" and len(goal.args) == 1:
            finished.append(TurnOn(goal.args[0]))
        else:
            raise VitabenchError(
                f"scripted policy cannot achieve goal ({goal.predicate} {' '.join(goal.args)}); "
                f"accepted: {', '.join(SUPPORTED_GOALS)}"
            )
    return opened + placed + finished

