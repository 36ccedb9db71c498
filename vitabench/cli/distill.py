"""``vitabench distill``: VITA-VLA stage 1 (align) and stage 2 (finetune), and the ablation variants."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vitabench.cli.common import CliError
from vitabench.cli.train import settings_from


def distill(
    stage: str = typer.Option(..., "--stage", help="align (stage 1) | finetune (stage 2)."),
    data: list[Path] = typer.Option(..., "--data", help="LIBERO-format HDF5 file; repeatable."),
    out: Path = typer.Option(..., "--out", help="Checkpoint directory to write."),
    teacher: Optional[str] = typer.Option(None, "--teacher", help="Teacher checkpoint (align; finetune without --from: only-ft)."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="tiny | cpu (trainable on a CPU; with --train-vision) | small: an untrained VLM; or a local VLM directory."),
    from_dir: Optional[str] = typer.Option(None, "--from", help="Stage-1 checkpoint to fine-tune (two-stage), or a stage-2 one to continue."),
    freeze_vlm: bool = typer.Option(False, "--freeze-vlm", help="Stage 2 with the LLM frozen."),
    train_vision: bool = typer.Option(
        False, "--train-vision",
        help="Train the VLM's vision tower and projector in both stages (not the paper: for a random backbone such as cpu)."),
    no_state_encoder: bool = typer.Option(False, "--no-state-encoder", help="Ablation: no state token."),
    no_action_token: bool = typer.Option(False, "--no-action-token", help="Ablation: read the last prompt position, no action token."),
    steps: int = typer.Option(2000, "--steps", help="Optimiser steps."),
    batch_size: int = typer.Option(16, "--batch-size"),
    lr: float = typer.Option(1e-4, "--lr", help="AdamW peak learning rate."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay"),
    warmup: float = typer.Option(0.1, "--warmup", help="Fraction of steps of linear warm-up (then linear decay)."),
    seed: int = typer.Option(0, "--seed", help="Seeds initialisation and batch sampling (CPU runs repeat exactly)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA in bf16, else CPU in fp32) | cpu | cuda."),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Steps between resumable states."),
    shift: int = typer.Option(4, "--shift", help="Random-shift augmentation in pixels (0: none)."),
    windows_per_segment: int = typer.Option(1, "--windows-per-segment", help="Consecutive windows of one demo drawn together (shared frames are encoded once)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/train_state.pt."),
) -> None:
    """Distil a teacher into a VLM student: --stage align, then --stage finetune --from the result."""
    from vitabench.training.distill import StudentOptions, align, finetune

    options = StudentOptions(state_encoder=not no_state_encoder, action_token=not no_action_token, freeze_vlm=freeze_vlm,
                             train_vision=train_vision)
    settings = settings_from(steps, batch_size, lr, weight_decay, warmup, seed, device, checkpoint_every, shift, windows_per_segment)
    if stage == "align":
        if teacher is None or backbone is None or from_dir is not None:
            raise CliError("--stage align needs --teacher DIR and --backbone tiny|cpu|small|DIR (and no --from)")
        result = align(teacher, backbone, data, out, options=options, settings=settings, resume=resume)
    elif stage == "finetune":
        result = finetune(data, out, from_dir=from_dir, teacher_dir=teacher, backbone=backbone, options=options,
                          settings=settings, resume=resume)
    else:
        raise CliError(f"--stage {stage!r}; accepted: align, finetune")
    summary = result.summary()
    typer.echo(f"{stage}: loss {summary['first']:.4f} -> {summary['last']:.4f} in {result.wall_s:.0f} s; wrote {out}")
