"""LIBERO-format HDF5 demonstrations: one reader (also for official LIBERO datasets) and one writer.

Layout (the one LIBERO's ``create_dataset.py`` writes)::

    data/                       attrs: problem_info (JSON, language_instruction), env_args (JSON),
                                       total, and vitabench's: protocol (JSON), resolution, cameras
      demo_<i>/                 attrs: num_samples (+ language_instruction, task_id, init_state)
        actions                 float [T, 7] (the labels training reads)
        executed_actions        float [T, 7] (optional: what ran, where it differs: DART noise, DAgger)
        states                  float [T, S] (MuJoCo states, optional)
        rewards, dones          [T]
        obs/agentview_rgb       uint8 [T, H, W, 3]
        obs/eye_in_hand_rgb     uint8 [T, H, W, 3]
        obs/ee_pos              [T, 3]
        obs/ee_ori              [T, 3] (axis-angle, as LIBERO stores it)
        obs/gripper_states      [T, 2]
        obs/joint_states        [T, 7]

Images are stored as the simulator produced them under the recorded protocol (LIBERO's own
datasets store raw, upside-down renders: the ``raw`` orientation).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import ACTION_DIM

#: Simulator camera name -> dataset key under ``obs/``.
CAMERA_KEYS: dict[str, str] = {"agentview": "agentview_rgb", "robot0_eye_in_hand": "eye_in_hand_rgb"}
STATE_KEYS: tuple[str, ...] = ("ee_pos", "ee_ori", "gripper_states", "joint_states")


class DatasetError(VitabenchError):
    """A demonstration file that cannot be read or used as asked."""


@dataclass
class Demo:
    """One demonstration: per-step observations and the action taken after each."""

    actions: np.ndarray  # float32 [T, 7]
    images: dict[str, np.ndarray]  # simulator camera name -> uint8 [T, H, W, 3]
    ee_pos: np.ndarray  # [T, 3]
    ee_ori: np.ndarray  # [T, 3] axis-angle
    gripper_states: np.ndarray  # [T, 2]
    joint_states: np.ndarray  # [T, 7]
    instruction: str
    states: np.ndarray | None = None
    executed_actions: np.ndarray | None = None  # [T, 7] what ran, where it differs from the label (DART, DAgger)
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def model_state(self, rotation: str = "euler") -> np.ndarray:
        """``[T, state_dim]`` as the models read it: eef xyz, orientation as ``rotation`` (from
        the stored axis-angle, LIBERO's convention), two finger positions."""
        from vitabench.geometry import axis_angle_to_quat
        from vitabench.models.common import model_state

        return model_state(self.ee_pos, axis_angle_to_quat(self.ee_ori), self.gripper_states, rotation)


@dataclass(frozen=True)
class DatasetInfo:
    """What a demonstration file says about itself."""

    path: Path
    sha256: str
    n_demos: int
    n_steps: int
    instructions: tuple[str, ...]
    cameras: tuple[str, ...]
    resolution: int
    protocol: Mapping[str, Any] | None
    env_args: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "n_demos": self.n_demos,
            "n_steps": self.n_steps,
            "instructions": list(self.instructions),
            "cameras": list(self.cameras),
            "resolution": self.resolution,
            "protocol": None if self.protocol is None else f"{self.protocol['name']}@{self.protocol['version']}",
        }


def file_sha256(path: Path) -> str:
    """Short sha256 (16 hex digits) of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _open(path: Path) -> Any:
    import h5py

    if not path.is_file():
        raise DatasetError(f"data file {str(path)!r}: no such file; accepted: a LIBERO-format HDF5 file")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"data file {path} cannot be read as HDF5: {exc}") from None
    if "data" not in handle:
        handle.close()
        raise DatasetError(f"data file {path} has no 'data' group; accepted: LIBERO-format HDF5 (data/demo_N/...)")
    return handle


def _demo_keys(group: Any) -> list[str]:
    return sorted((k for k in group if k.startswith("demo_")), key=lambda k: int(k.split("_")[-1]))


def _json_attr(attrs: Any, name: str) -> dict[str, Any] | None:
    value = attrs.get(name)
    if value is None:
        return None
    try:
        data = json.loads(value)
    except (TypeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def file_instruction(attrs: Any) -> str | None:
    """The file-level task instruction (LIBERO's ``problem_info`` JSON), if any."""
    info = _json_attr(attrs, "problem_info") or {}
    instruction = info.get("language_instruction")
    return " ".join(instruction) if isinstance(instruction, list) else instruction


def load_demo_actions(path: Path, demo: int) -> tuple[np.ndarray, str | None]:
    """The actions ``[T, 7]`` of ``data/demo_<demo>`` and the demo's instruction (``None`` if absent)."""
    with _open(path) as handle:
        data = handle["data"]
        key = f"demo_{demo}"
        if key not in data or "actions" not in data[key]:
            shown = ", ".join(d.removeprefix("demo_") for d in _demo_keys(data)[:20]) or "none"
            raise DatasetError(f"demo={demo} is not in {path}; accepted: {shown}")
        actions = np.asarray(data[key]["actions"], dtype=np.float32)
        instruction = data[key].attrs.get("language_instruction") or file_instruction(data.attrs)
    _check_actions(actions, path, key)
    return actions, instruction


def _check_actions(actions: np.ndarray, path: Path, key: str) -> None:
    if actions.ndim != 2 or actions.shape[1] != ACTION_DIM or len(actions) == 0:
        raise DatasetError(f"{path} {key}/actions has shape {actions.shape}; accepted: (T, {ACTION_DIM}), T >= 1")
    if not np.isfinite(actions).all():
        raise DatasetError(f"{path} {key}/actions holds NaN or inf values")


def read_info(path: str | Path) -> DatasetInfo:
    """Metadata of a demonstration file, checked for what training needs (without loading images)."""
    path = Path(path)
    with _open(path) as handle:
        data = handle["data"]
        keys = _demo_keys(data)
        if not keys:
            raise DatasetError(f"data file {path} holds no demo_N groups under 'data'")
        first = data[keys[0]]
        if "obs" not in first:
            raise DatasetError(f"{path} {keys[0]} has no 'obs' group; accepted: LIBERO-format HDF5")
        cameras = tuple(camera for camera, key in CAMERA_KEYS.items() if key in first["obs"])
        if not cameras:
            raise DatasetError(f"{path} {keys[0]}/obs holds no camera images; accepted: {', '.join(CAMERA_KEYS.values())}")
        shapes = {first["obs"][CAMERA_KEYS[c]].shape[1:] for c in cameras}
        if len(shapes) != 1 or next(iter(shapes))[0] != next(iter(shapes))[1]:
            raise DatasetError(f"{path} camera images have shapes {sorted(shapes)}; accepted: square images of one size")
        resolution = int(next(iter(shapes))[0])
        default_instruction = file_instruction(data.attrs)
        instructions, n_steps = set(), 0
        for key in keys:
            action_shape = data[key]["actions"].shape
            if len(action_shape) != 2 or action_shape[1] != ACTION_DIM:
                raise DatasetError(f"{path} {key}/actions has shape {action_shape}; accepted: (T, {ACTION_DIM})")
            n_steps += action_shape[0]
            instruction = data[key].attrs.get("language_instruction") or default_instruction
            if not instruction:
                raise DatasetError(f"{path} {key} has no instruction (no problem_info language_instruction)")
            instructions.add(str(instruction))
        protocol = _json_attr(data.attrs, "protocol")
        env_args = _json_attr(data.attrs, "env_args") or {}
    return DatasetInfo(path, file_sha256(path), len(keys), n_steps, tuple(sorted(instructions)), cameras, resolution, protocol, env_args)


def iter_demos(path: str | Path, cameras: Sequence[str] | None = None) -> Iterator[Demo]:
    """Every demo of a file, in index order, with the images of ``cameras`` (default: all)."""
    path = Path(path)
    with _open(path) as handle:
        data = handle["data"]
        default_instruction = file_instruction(data.attrs)
        for key in _demo_keys(data):
            group = data[key]
            obs = group["obs"]
            wanted = tuple(cameras) if cameras is not None else tuple(c for c, k in CAMERA_KEYS.items() if k in obs)
            missing = [c for c in wanted if CAMERA_KEYS.get(c) not in obs]
            if missing:
                raise DatasetError(
                    f"{path} {key} lacks camera(s) {', '.join(missing)}; it has: "
                    f"{', '.join(c for c, k in CAMERA_KEYS.items() if k in obs) or 'none'}"
                )
            absent = [k for k in STATE_KEYS[:3] if k not in obs]
            if absent:
                raise DatasetError(f"{path} {key}/obs lacks {', '.join(absent)}; accepted: LIBERO-format obs ({', '.join(STATE_KEYS)})")
            actions = np.asarray(group["actions"], dtype=np.float32)
            _check_actions(actions, path, key)
            steps = len(actions)
            joints = np.asarray(obs["joint_states"], dtype=np.float32) if "joint_states" in obs else np.zeros((steps, 7), np.float32)
            yield Demo(
                actions=actions,
                images={c: np.asarray(obs[CAMERA_KEYS[c]], dtype=np.uint8) for c in wanted},
                ee_pos=np.asarray(obs["ee_pos"], dtype=np.float32),
                ee_ori=np.asarray(obs["ee_ori"], dtype=np.float32),
                gripper_states=np.asarray(obs["gripper_states"], dtype=np.float32),
                joint_states=joints,
                instruction=str(group.attrs.get("language_instruction") or default_instruction),
                states=np.asarray(group["states"]) if "states" in group else None,
                executed_actions=np.asarray(group["executed_actions"], dtype=np.float32) if "executed_actions" in group else None,
                attrs=dict(group.attrs),
            )


class DemoWriter:
    """Appends demos to a new LIBERO-format file; each demo is flushed when written."""

    def __init__(self, path: str | Path, *, attrs: Mapping[str, Any]) -> None:
        import h5py

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._handle = h5py.File(self.path, "w")
        except OSError as exc:
            raise DatasetError(f"data file {self.path} cannot be written: {exc}") from None
        self._data = self._handle.create_group("data")
        for name, value in attrs.items():
            self._data.attrs[name] = json.dumps(value) if isinstance(value, (dict, list)) else value
        self.count = 0
        self.steps = 0

    def append(self, demo: Demo) -> None:
        group = self._data.create_group(f"demo_{self.count}")
        group.create_dataset("actions", data=demo.actions.astype(np.float64))
        if demo.states is not None:
            group.create_dataset("states", data=demo.states)
        if demo.executed_actions is not None:
            group.create_dataset("executed_actions", data=demo.executed_actions.astype(np.float64))
        rewards = np.zeros(len(demo), dtype=np.uint8)
        rewards[-1] = 1
        group.create_dataset("rewards", data=rewards)
        group.create_dataset("dones", data=rewards.copy())
        obs = group.create_group("obs")
        for camera, frames in demo.images.items():
            obs.create_dataset(CAMERA_KEYS[camera], data=frames, compression="gzip", compression_opts=4, chunks=(1, *frames.shape[1:]))
        for key in STATE_KEYS:
            obs.create_dataset(key, data=getattr(demo, key).astype(np.float64))
        group.attrs["num_samples"] = len(demo)
        group.attrs["language_instruction"] = demo.instruction
        for name, value in demo.attrs.items():
            group.attrs[name] = value
        self.count += 1
        self.steps += len(demo)
        self._data.attrs["total"] = self.steps
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> DemoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
