"""A model as a batched policy: per-slot frame history, observation → tensors, no-grad inference."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import NO_PROVENANCE, BasePolicy, Observation, PolicySpec, Provenance, batch_slots, lineage_summary
from vitabench.api.suite import Task

logger = logging.getLogger("vitabench.policies")

#: What both models read: eef position, eef orientation (a quaternion, turned into the model's
#: ``state_rotation``), fingers.
MODEL_STATE_KEYS = ("ee_pos", "ee_quat", "gripper_qpos")


@dataclass
class Frame:
    """One observation as the models read it; ``tokens`` caches its encoded images once computed."""

    images: dict[str, np.ndarray]
    state: np.ndarray  # [state_dim]
    instruction: str
    tokens: Any = None


def frame_from_observation(observation: Observation, cameras: tuple[str, ...], rotation: str = "euler") -> Frame:
    """Pick the declared cameras and build the model state (orientation as ``rotation``); a
    missing camera or key is named."""
    from vitabench.models.common import model_state

    images = observation.get("images", {})
    missing = [camera for camera in cameras if camera not in images]
    if missing:
        raise VitabenchError(
            f"observation lacks camera(s) {', '.join(missing)}; it has: {', '.join(images) or 'none'}"
        )
    state = observation.get("state", {})
    absent = [key for key in MODEL_STATE_KEYS if key not in state]
    if absent:
        raise VitabenchError(f"observation lacks state key(s) {', '.join(absent)}; it has: {', '.join(state) or 'none'}")
    vector = model_state(
        np.asarray(state["ee_pos"]).reshape(3), np.asarray(state["ee_quat"]).reshape(4),
        np.asarray(state["gripper_qpos"]).reshape(2), rotation,
    )
    return Frame({camera: np.asarray(images[camera], dtype=np.uint8) for camera in cameras}, vector, str(observation.get("instruction", "")))


class ModelPolicy(BasePolicy):
    """Runs a teacher or student model as a policy: keeps the last ``history`` frames of every
    slot, batches all slots of a call into one forward pass, and returns each slot's raw chunk
    ``[B, chunk, 7]`` predicted at its newest frame."""

    def __init__(
        self,
        model: Any,
        *,
        device: str = "auto",
        resolution: int | None = None,
        provenance: Provenance = NO_PROVENANCE,
    ) -> None:
        from vitabench.models.common import resolve_device

        self.device, self.dtype = resolve_device(device)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        config = model.config
        self.spec = PolicySpec(
            cameras=tuple(config.cameras),
            resolution=resolution,
            state_keys=MODEL_STATE_KEYS,
            history=config.history,
            chunk=config.chunk,
        )
        self.provenance = provenance
        self.state_rotation: str = getattr(config, "state_rotation", "euler")
        self._frames: dict[int, deque[Frame]] = {}

    def reset(self, task: Task, slot: int = 0, seed: int | None = None) -> None:
        del task, seed
        self._frames[slot] = deque(maxlen=self.spec.history)

    def release(self, slot: int) -> None:
        self._frames.pop(slot, None)

    def observe(self, observations: Sequence[Observation], slots: Sequence[int] | None = None) -> list[list[Frame]]:
        """Append each observation to its slot's history without predicting; returns the histories."""
        histories = []
        for slot, observation in zip(batch_slots(observations, slots), observations):
            frames = self._frames.setdefault(slot, deque(maxlen=self.spec.history))
            frames.append(frame_from_observation(observation, self.spec.cameras, self.state_rotation))
            histories.append(list(frames))
        return histories

    def _encode_new_frames(self, frames: list[Frame]) -> None:
        """Encode the images of frames seen for the first time, in one batch; a frame's image
        tokens never change, so each frame is encoded once while it stays in a history."""
        import torch

        if not frames:
            return
        images = {
            camera: torch.from_numpy(np.stack([frame.images[camera] for frame in frames])).to(self.device)
            for camera in self.spec.cameras
        }
        for frame, tokens in zip(frames, self.model.encode_images(images)):
            frame.tokens = tokens

    def act(self, observations: Sequence[Observation], slots: Sequence[int] | None = None) -> np.ndarray:
        import torch

        from vitabench.models.common import FrameBatch

        histories = self.observe(observations, slots)
        with torch.inference_mode():
            self._encode_new_frames([frame for history in histories for frame in history if frame.tokens is None])
            n_frames = max(len(history) for history in histories)
            mask = np.zeros((len(histories), n_frames), dtype=bool)
            state = np.zeros((len(histories), n_frames, histories[0][0].state.shape[0]), dtype=np.float32)
            for row, history in enumerate(histories):
                mask[row, : len(history)] = True
                state[row, : len(history)] = [frame.state for frame in history]
            batch = FrameBatch(
                images={},
                state=torch.from_numpy(state).to(self.device),
                frame_mask=torch.from_numpy(mask).to(self.device),
                instructions=[history[-1].instruction for history in histories],
                image_tokens=torch.stack([frame.tokens for history in histories for frame in history]),
            )
            actions = self.model(batch).newest_actions(batch)
        return actions.float().cpu().numpy()


def parse_bool(value: Any, name: str) -> bool:
    """``true/false/1/0/yes/no`` (as the CLI passes them) or a bool."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise VitabenchError(f"{name}={value!r}; accepted: true or false")


def parse_int(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise VitabenchError(f"{name}={value!r}; accepted: a positive integer") from None
    if number < 1:
        raise VitabenchError(f"{name}={value!r}; accepted: a positive integer")
    return number


def parse_cameras(value: Any) -> tuple[str, ...]:
    """``"agentview,robot0_eye_in_hand"`` or a sequence of camera names."""
    names = value.split(",") if isinstance(value, str) else list(value)
    cameras = tuple(name.strip() for name in names if name.strip())
    if not cameras:
        raise VitabenchError(f"cameras={value!r}; accepted: a comma-separated list of camera names")
    return cameras


def with_ensembling(policy: ModelPolicy, ensemble: Any) -> Any:
    """``policy`` inside temporal ensembling with weight ``m = ensemble``; ``none`` leaves it raw."""
    if ensemble is None or str(ensemble).lower() == "none":
        return policy
    try:
        m = float(ensemble)
    except ValueError:
        raise VitabenchError(f"ensemble={ensemble!r}; accepted: a number (0.01 in VITA-VLA) or none") from None
    from vitabench.policy_wrappers import TemporalEnsemble

    return TemporalEnsemble(policy, m=m)


def make_model_policy(
    *,
    kind: str,
    config_class: type,
    presets: dict[str, Any],
    build: Any,
    from_saved: Any,
    checkpoint: str | None,
    preset: str | None,
    overrides: dict[str, Any],
    device: str,
    seed: Any,
    resolution: Any,
    protocol: str | None,
) -> ModelPolicy:
    """The shared factory: load ``checkpoint`` (a directory or a shipped checkpoint's name;
    ``overrides``, ``cameras`` and ``protocol`` are checked against what it was trained with) or
    build an untrained ``preset``."""
    import dataclasses

    import torch

    from vitabench.api.protocol import load_protocol
    from vitabench.models.checkpoint import CheckpointError, load_model, resolve_checkpoint, shipped_checkpoints

    resolution = None if resolution is None else parse_int(resolution, "resolution")
    if checkpoint is not None and preset is not None:
        raise VitabenchError(f"{kind}: give checkpoint=DIR or preset=NAME, not both")
    if checkpoint is not None:
        saved = resolve_checkpoint(checkpoint, kind)
        saved.check(
            cameras=overrides.get("cameras"),
            protocol=None if protocol is None else load_protocol(protocol),
        )
        for name, value in overrides.items():
            if name in saved.config and saved.config[name] != (list(value) if isinstance(value, tuple) else value):
                raise CheckpointError(f"checkpoint {saved.directory} was trained with {name}={saved.config[name]!r}, not {value!r}")
        model = load_model(saved, config_class, from_saved)
        from vitabench.models.checkpoint import LINEAGE_FILE, read_lineage

        has_lineage = (saved.directory / LINEAGE_FILE).is_file()
        provenance = Provenance(
            checkpoint_hash=saved.weights_hash,
            trained_protocol=saved.protocol,
            lineage=lineage_summary(read_lineage(saved.directory)) if has_lineage else None,
        )
        return ModelPolicy(model, device=device, resolution=resolution or saved.spec.resolution, provenance=provenance)
    if preset is None:
        shipped = ", ".join(shipped_checkpoints(kind)) or "none"
        raise VitabenchError(
            f"{kind} needs checkpoint=NAME|DIR or preset=NAME; shipped checkpoints: {shipped}; "
            f"untrained presets: {', '.join(presets)}"
        )
    if preset not in presets:
        raise VitabenchError(f"{kind} preset={preset!r}; accepted: {', '.join(presets)}")
    config = dataclasses.replace(presets[preset], **overrides)
    with torch.random.fork_rng():
        torch.manual_seed(int(seed))
        model = build(config, preset)
    logger.warning("%s preset=%s has no checkpoint: its weights are UNTRAINED (random, seed %s)", kind, preset, seed)
    return ModelPolicy(model, device=device, resolution=resolution)
