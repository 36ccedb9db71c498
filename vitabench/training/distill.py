"""VITA-VLA distillation: stage 1 (align) and stage 2 (fine-tune), and the ablation variants.

Stage 1 (``align``): the VLM and the teacher are frozen; the action token, the state encoder and
the mapper train so that the mapper's output matches the teacher's action-query features on the
same frames. The loss is the released code's: the Euclidean distance between the two
``D``-vectors of every (real frame, chunk step), averaged (the paper's figure says MSE). With
``train_vision`` the VLM's vision tower and projector train too (the LM stays frozen): a
departure from the paper, whose pretrained VLM never trains its vision, needed here because the
backbone is random-initialised (a frozen random vision tower cannot see the objects).

Stage 2 (``finetune``): the LLM layers (unless ``freeze_vlm``), state encoder, action token,
mapper and the teacher's action decoder train on smooth-L1 (arm) + 0.01 × BCE (gripper); the
teacher is not used. ``train_vision`` adds the vision tower and projector (with ``freeze_vlm``:
the LM frozen, the vision tower and projector training). Started from a stage-1 checkpoint it is
the two-stage method; started from a teacher and a backbone (the student's decoder copied from
the teacher) it is only-ft.

Variants: two-stage, only-ft, freeze-vlm (stage 2 with the LLM frozen), no-state-encoder,
no-action-token (both ablations through both stages). ``train_vision`` is not a variant of the
paper's ablation axis: it is recorded in the checkpoint config and the lineage's stage options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from vitabench.api.errors import VitabenchError
from vitabench.training.loop import TrainResult, TrainSettings, Windows, train
from vitabench.training.teacher import checkpoint_protocol, model_spec


@dataclass(frozen=True)
class StudentOptions:
    """The ablation switches of a student, and ``train_vision`` (vision tower and projector
    train in both stages; for a random-initialised backbone, see the module docstring)."""

    state_encoder: bool = True
    action_token: bool = True
    freeze_vlm: bool = False
    train_vision: bool = False

    def variant(self, stage: str, two_stage: bool) -> str:
        """The variant name a checkpoint of ``stage`` with these options is recorded under."""
        if stage == "align":
            return "align"
        if not self.state_encoder:
            return "no-state-encoder"
        if not self.action_token:
            return "no-action-token"
        if self.freeze_vlm:
            return "freeze-vlm"
        return "two-stage" if two_stage else "only-ft"


def load_teacher(directory: str | Path) -> tuple[Any, Any]:
    """A trained teacher (a directory or a shipped name) and its checkpoint metadata."""
    from vitabench.models.checkpoint import load_model, resolve_checkpoint
    from vitabench.models.teacher import TeacherConfig, TeacherModel

    saved = resolve_checkpoint(directory, "teacher")
    return load_model(saved, TeacherConfig, TeacherModel.from_saved), saved


def build_student(teacher: Any, backbone: str, options: StudentOptions, seed: int) -> Any:
    """A new student around ``backbone`` (an untrained VLM preset: ``tiny``, ``cpu``, ``small``;
    or a local VLM directory) sized to the teacher, with the teacher's action decoder, state
    representation and normalisation statistics."""
    import torch

    from vitabench.models.checkpoint import UNTRAINED_BACKBONES
    from vitabench.models.student import StudentConfig, StudentModel

    config = StudentConfig(
        cameras=teacher.config.cameras,
        latent=teacher.config.hidden,
        history=teacher.config.history,
        chunk=teacher.config.chunk,
        state_encoder=options.state_encoder,
        action_token=options.action_token,
        freeze_vlm=options.freeze_vlm,
        train_vision=options.train_vision,
        state_rotation=teacher.config.state_rotation,
        normalize=teacher.config.normalize,
    )
    torch.manual_seed(seed)
    if backbone in UNTRAINED_BACKBONES:
        student = StudentModel.build(config, None, backbone)
    elif Path(backbone).is_dir():
        student = StudentModel.build(config, backbone)
    else:
        raise VitabenchError(
            f"--backbone {backbone!r}; accepted: {', '.join(UNTRAINED_BACKBONES)} (an untrained VLM) or a local transformers VLM directory")
    student.action_decoder.load_state_dict(teacher.action_decoder.state_dict())
    if config.normalize:
        student.state_mean.copy_(teacher.state_mean)
        student.state_std.copy_(teacher.state_std)
    return student


def _check_resolution(windows: Windows, saved: Any, what: str) -> None:
    trained = saved.spec.resolution
    if trained is not None and trained != windows.resolution:
        raise VitabenchError(
            f"the --data images are {windows.resolution} px but the {what} {saved.directory} was trained on {trained} px; "
            "accepted: data collected at the same resolution (vitabench collect --protocol)"
        )


def _lineage_of(directory: Path) -> dict[str, Any]:
    from vitabench.models.checkpoint import read_lineage

    return read_lineage(directory)


def _save(student: Any, out: Path, windows: Windows, stage: str, options: StudentOptions, settings: TrainSettings,
          result: TrainResult, previous: Sequence[dict[str, Any]], teacher: dict[str, Any], backbone: str) -> None:
    from vitabench.models.checkpoint import save_checkpoint
    from vitabench.training.lineage import stage_record, write_lineage

    weights = save_checkpoint(student.float().cpu(), out, model_spec(student.config, windows.resolution), checkpoint_protocol(windows))
    record = stage_record(stage, data=windows.infos, settings=settings, options=dataclasses.asdict(options), result=result,
                          weights_hash=weights)
    stages = [*previous, record]
    variant = options.variant(stage, two_stage=any(s["stage"] == "align" for s in stages))
    write_lineage(out, kind="vita_vla", variant=variant, stages=stages, teacher=teacher, backbone=backbone)


def align(
    teacher_dir: str | Path,
    backbone: str,
    data: Sequence[str | Path],
    out: Path,
    *,
    options: StudentOptions = StudentOptions(),
    settings: TrainSettings = TrainSettings(),
    resume: bool = False,
    quiet: bool = False,
) -> TrainResult:
    """Stage 1: train the action token, state encoder and mapper (and, with ``train_vision``,
    the vision tower and projector) to reproduce the teacher's action-query features; the LM,
    the teacher and the decoder stay frozen."""
    import torch

    from vitabench.models.common import resolve_device

    if options.freeze_vlm:
        raise VitabenchError("--freeze-vlm applies to --stage finetune (stage 1 always freezes the LM); "
                             "accepted in stage 1: --train-vision or neither")
    teacher, saved = load_teacher(teacher_dir)
    windows = Windows(data, teacher.config.cameras, teacher.config.history, teacher.config.chunk, teacher.config.state_rotation)
    _check_resolution(windows, saved, "teacher")
    student = build_student(teacher, backbone, options, settings.seed)
    student.freeze_for_alignment()
    teacher.requires_grad_(False).eval().to(resolve_device(settings.device)[0])

    def loss_fn(batch: Any, targets: Any, mask: Any) -> Any:
        del targets, mask
        with torch.no_grad():
            wanted = teacher(batch).action_features
        distance = (student(batch).action_features - wanted.to(torch.float32)).norm(dim=-1)  # [B, T, chunk]
        weights = batch.frame_mask[:, :, None].expand_as(distance).to(distance.dtype)
        return (distance * weights).sum() / weights.sum()

    result = train(student, loss_fn, windows, settings, out, resume=resume, label="stage 1 align", quiet=quiet)
    teacher_record = {"dir": str(teacher_dir), "weights_hash": saved.weights_hash, "lineage": _lineage_of(saved.directory)}
    _save(student, out, windows, "align", options, settings, result, [], teacher_record, backbone)
    return result


def finetune(
    data: Sequence[str | Path],
    out: Path,
    *,
    from_dir: str | Path | None = None,
    teacher_dir: str | Path | None = None,
    backbone: str | None = None,
    options: StudentOptions = StudentOptions(),
    settings: TrainSettings = TrainSettings(),
    resume: bool = False,
    quiet: bool = False,
) -> TrainResult:
    """Stage 2 on the action loss, from a stage-1 checkpoint (``from_dir``: two-stage) or from a
    teacher and a backbone (only-ft); ``from_dir`` a stage-2 checkpoint continues its stage 2 (the
    lineage gains a second finetune stage, the variant stays the same)."""
    from vitabench.models.checkpoint import config_from_json, load_weights, read_checkpoint
    from vitabench.models.common import action_loss
    from vitabench.models.student import StudentConfig, StudentModel

    if (from_dir is None) == (teacher_dir is None):
        raise VitabenchError("--stage finetune needs --from DIR (two-stage) or --teacher DIR --backbone B (only-ft), not both")
    if from_dir is not None:
        saved = read_checkpoint(from_dir, "vita_vla")
        config = config_from_json(StudentConfig, saved.config, str(saved.directory))
        for name in ("state_encoder", "action_token"):
            if getattr(config, name) != getattr(options, name):
                raise VitabenchError(
                    f"--from {from_dir} was trained with {name}={getattr(config, name)}; "
                    f"stage 2 must keep it (drop or add --no-{name.replace('_', '-')})"
                )
        config = dataclasses.replace(config, freeze_vlm=options.freeze_vlm, train_vision=options.train_vision)
        student = StudentModel.from_saved(config, saved.directory)
        load_weights(student, saved)
        parent = _lineage_of(Path(from_dir))
        previous, teacher_record, backbone_name = parent["stages"], parent.get("teacher"), parent.get("backbone")
    else:
        if backbone is None:
            raise VitabenchError("only-ft (--teacher DIR) also needs --backbone tiny|cpu|small|DIR")
        teacher, saved = load_teacher(teacher_dir)
        student = build_student(teacher, backbone, options, settings.seed)
        previous, backbone_name = [], backbone
        teacher_record = {"dir": str(teacher_dir), "weights_hash": saved.weights_hash, "lineage": _lineage_of(saved.directory)}
        del teacher
    config = student.config
    windows = Windows(data, config.cameras, config.history, config.chunk, config.state_rotation)
    _check_resolution(windows, saved, "checkpoint")

    def loss_fn(batch: Any, targets: Any, mask: Any) -> Any:
        return action_loss(student(batch).actions, targets, mask)

    result = train(student, loss_fn, windows, settings, out, resume=resume, label="stage 2 finetune", quiet=quiet)
    _save(student, out, windows, "finetune", options, settings, result, previous, teacher_record, str(backbone_name))
    return result
