"""Teacher training: the Seer-style model on demonstrations, smooth-L1 arm + 0.01 × BCE gripper
on every frame's 3-step chunk (with a ``normalize`` preset, on arm actions scaled by the data's
statistics, which the checkpoint keeps); a ``foresight`` config (the seer architecture) adds Seer's
image-prediction loss × 0.1."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.training.loop import TrainResult, TrainSettings, Windows, train


def checkpoint_protocol(windows: Windows) -> Any:
    """The protocol the data was collected under (a checkpoint is trained under it), if recorded."""
    from vitabench.api.protocol import Protocol

    return None if windows.protocol is None else Protocol.from_dict(windows.protocol, source=str(windows.infos[0].path))


def model_spec(config: Any, resolution: int) -> Any:
    """The observation spec a model trained on ``resolution`` px images is evaluated with."""
    from vitabench.api.policy import PolicySpec
    from vitabench.models.runtime import MODEL_STATE_KEYS

    return PolicySpec(cameras=tuple(config.cameras), resolution=resolution, state_keys=MODEL_STATE_KEYS,
                      history=config.history, chunk=config.chunk)


def train_teacher(
    data: Sequence[str | Path],
    out: Path,
    *,
    preset: str = "tiny",
    settings: TrainSettings = TrainSettings(),
    text_encoder: str | None = None,
    image_encoder: str | None = None,
    overrides: dict[str, Any] | None = None,
    init_from: str | Path | None = None,
    resume: bool = False,
    quiet: bool = False,
) -> TrainResult:
    """Train a teacher of ``preset`` (with config ``overrides``, e.g. ``history``, ``state_rotation``,
    ``normalize``) on ``data`` and save it (with its lineage) to ``out``.

    ``init_from`` continues a trained teacher (a directory or shipped name) instead: its config,
    weights and normalisation statistics, on new data (e.g. DAgger-aggregated), its lineage
    extended by this stage.
    """
    import torch

    from vitabench.models.checkpoint import load_model, read_lineage, resolve_checkpoint, save_checkpoint
    from vitabench.models.common import action_loss
    from vitabench.models.teacher import TEACHER_PRESETS, TeacherConfig, TeacherModel
    from vitabench.training.lineage import stage_record, write_lineage

    earlier: list[dict[str, Any]] = []
    if init_from is not None:
        if overrides:
            raise VitabenchError(f"--init {init_from} keeps that checkpoint's config; drop {', '.join(sorted(overrides))}")
        saved = resolve_checkpoint(init_from, "teacher")
        model = load_model(saved, TeacherConfig, TeacherModel.from_saved)
        config = model.config
        earlier = list(read_lineage(saved.directory)["stages"]) if (saved.directory / "lineage.json").is_file() else []
        windows = _windows(data, config)
        _check_same_protocol(saved.protocol, windows)
        torch.manual_seed(settings.seed)
    else:
        if preset not in TEACHER_PRESETS:
            raise VitabenchError(f"--preset {preset!r}; accepted: {', '.join(TEACHER_PRESETS)}")
        config = dataclasses.replace(TEACHER_PRESETS[preset], **(overrides or {}))
        windows = _windows(data, config)
        torch.manual_seed(settings.seed)
        model = TeacherModel.build(config, text_encoder, image_encoder)
        if config.normalize:
            model.set_normalization(*(torch.as_tensor(value, dtype=torch.float32) for value in windows.statistics()))

    def loss_fn(batch: Any, targets: Any, mask: Any) -> Any:
        if not config.foresight:
            return action_loss(model(batch).actions, targets, mask)
        from vitabench.models.seer import FORESIGHT_LOSS_WEIGHT

        prediction = model.predict(batch, foresight=True)
        device = batch.frame_mask.device
        future = {camera: images.to(device) for camera, images in batch.future_images.items()}
        image_loss = model.foresight_loss(prediction.images, future, batch.future_mask.to(device))
        return action_loss(prediction.output.actions, targets, mask) + FORESIGHT_LOSS_WEIGHT * image_loss

    label = f"teacher ({preset})" if init_from is None else f"teacher (continuing {init_from})"
    result = train(model, loss_fn, windows, settings, out, resume=resume, label=label, quiet=quiet)
    weights = save_checkpoint(model.float().cpu(), out, model_spec(config, windows.resolution), checkpoint_protocol(windows))
    options = {"preset": preset, "history": config.history, **(overrides or {})}
    if init_from is not None:
        options = {"init_from": str(init_from), "init_weights_hash": saved.weights_hash}
    stage = stage_record("teacher", data=windows.infos, settings=settings, options=options, result=result, weights_hash=weights)
    write_lineage(out, kind="teacher", variant="teacher", stages=[*earlier, stage])
    return result


def _windows(data: Sequence[str | Path], config: Any) -> Windows:
    """The training windows of ``config``; with ``foresight``, each frame also carries the images
    ``foresight_steps`` later (Seer's image-prediction target)."""
    if config.foresight:
        from vitabench.training.foresight import ForesightWindows

        return ForesightWindows(data, config.cameras, config.history, config.chunk, config.state_rotation,
                                steps=config.foresight_steps)
    return Windows(data, config.cameras, config.history, config.chunk, config.state_rotation)


def _check_same_protocol(trained: Any, windows: Windows) -> None:
    """Data for continuing a checkpoint must come from the protocol it was trained under."""
    collected = windows.protocol
    base = (collected["name"].split("+", 1)[0], collected["version"]) if collected else None
    if trained and base and (trained.get("name", "").split("+", 1)[0], trained.get("version")) != base:
        raise VitabenchError(
            f"the --data was collected under {collected['name']}@{collected['version']}, but the --init checkpoint "
            f"was trained under {trained.get('ref')}; accepted: data of the checkpoint's protocol"
        )


@dataclass(frozen=True)
class OpenLoopError:
    """How far a model's first predicted action is from the demo's label at every step, given the
    demo's own history: mean absolute arm error (action units) and the share of gripper commands
    right, next to the mean label magnitude for scale."""

    arm_mae: float
    gripper_accuracy: float
    label_magnitude: float
    steps: int


def open_loop_error(model: Any, windows: Windows, batch_size: int = 32) -> OpenLoopError:
    """:class:`OpenLoopError` of ``model`` over every step of ``windows`` (no noise, no shift)."""
    import torch

    errors, right, magnitudes = [], [], []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            rows = np.arange(start, min(start + batch_size, len(windows)))
            batch, targets, _ = windows.batch(rows, np.random.default_rng(0))
            predicted = model(batch).newest_actions(batch)[:, 0]  # [B, 7]
            label = targets[torch.arange(len(rows)), batch.newest, 0]
            errors.append((predicted[:, :6] - label[:, :6]).abs().mean(dim=1))
            right.append(torch.sign(predicted[:, 6]) == torch.sign(label[:, 6]))
            magnitudes.append(label[:, :6].abs().mean(dim=1))
    return OpenLoopError(
        arm_mae=float(torch.cat(errors).mean()), gripper_accuracy=float(torch.cat(right).float().mean()),
        label_magnitude=float(torch.cat(magnitudes).mean()), steps=len(windows),
    )
