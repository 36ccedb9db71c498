"""Teacher training: the Seer-style model on demonstrations, smooth-L1 arm + 0.01 × BCE gripper
on every frame's 3-step chunk (with a ``normalize`` preset, on arm actions scaled by the data's
statistics, which the checkpoint keeps)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from vitabench.api.errors import VitabenchError
from vitabench.training.loop import TrainResult, TrainSettings, Windows, train


def checkpoint_protocol(windows: Windows) -> Any:
    """The protocol the data was collected under (a checkpoint is trained under it), if recorded."""
    from vitabench.api.protocol import Protocol

    return None if windows.protocol is None else Protocol.from_dict(windows.protocol, source=str(windows.infos[0].path))


def model_spec(config: Any, resolution: int) -> Any:
    """The observation spec a model trained on ``resolution`` px images is evaluated with."""
    from vitabench.api.policy import PolicySpec
    from vitabench.policies.models.runtime import MODEL_STATE_KEYS

    return PolicySpec(cameras=tuple(config.cameras), resolution=resolution, state_keys=MODEL_STATE_KEYS,
                      history=config.history, chunk=config.chunk)


def train_teacher(
    data: Sequence[str | Path],
    out: Path,
    *,
    preset: str = "tiny",
    settings: TrainSettings = TrainSettings(),
    text_encoder: str | None = None,
    overrides: dict[str, Any] | None = None,
    resume: bool = False,
    quiet: bool = False,
) -> TrainResult:
    """Train a teacher of ``preset`` (with config ``overrides``, e.g. ``history``, ``state_rotation``,
    ``normalize``) on ``data`` and save it (with its lineage) to ``out``."""
    import torch

    from vitabench.policies.models.checkpoint import save_checkpoint
    from vitabench.policies.models.common import action_loss
    from vitabench.policies.models.teacher import TEACHER_PRESETS, TeacherModel
    from vitabench.training.lineage import stage_record, write_lineage

    if preset not in TEACHER_PRESETS:
        raise VitabenchError(f"--preset {preset!r}; accepted: {', '.join(TEACHER_PRESETS)}")
    config = dataclasses.replace(TEACHER_PRESETS[preset], **(overrides or {}))
    windows = Windows(data, config.cameras, config.history, config.chunk, config.state_rotation)
    torch.manual_seed(settings.seed)
    model = TeacherModel.build(config, text_encoder)
    if config.normalize:
        model.set_normalization(*(torch.as_tensor(value, dtype=torch.float32) for value in windows.statistics()))

    def loss_fn(batch: Any, targets: Any, mask: Any) -> Any:
        return action_loss(model(batch).actions, targets, mask)

    result = train(model, loss_fn, windows, settings, out, resume=resume, label=f"teacher ({preset})", quiet=quiet)
    weights = save_checkpoint(model.float().cpu(), out, model_spec(config, windows.resolution), checkpoint_protocol(windows))
    stage = stage_record("teacher", data=windows.infos, settings=settings, options={"preset": preset, "history": config.history, **(overrides or {})},
                         result=result, weights_hash=weights)
    write_lineage(out, kind="teacher", variant="teacher", stages=[stage])
    return result
