"""``vitabench train teacher``: train the Seer-style teacher on demonstrations."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True, help="Train models on demonstrations.")


def settings_from(steps: int, batch_size: int, lr: float, weight_decay: float, warmup: float, seed: int, device: str,
                  checkpoint_every: int, shift: int, windows_per_segment: int = 1) -> object:
    """The loop settings of a command's options."""
    from vitabench.training.loop import TrainSettings

    return TrainSettings(steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup, seed=seed,
                         device=device, checkpoint_every=checkpoint_every, shift=shift,
                         windows_per_segment=windows_per_segment)


@app.command("teacher")
def teacher(
    data: list[Path] = typer.Option(..., "--data", help="LIBERO-format HDF5 file; repeatable."),
    preset: str = typer.Option("tiny", "--preset", help="tiny | paper | cpu | seer | seer_tiny."),
    out: Path = typer.Option(..., "--out", help="Checkpoint directory to write."),
    history: Optional[int] = typer.Option(None, "--history", help="Frames of history (default: the preset's)."),
    state_rotation: Optional[str] = typer.Option(None, "--state-rotation", help="euler | rot6d (default: the preset's)."),
    normalize: Optional[bool] = typer.Option(None, "--normalize/--no-normalize", help="Normalise states and arm actions with the data's statistics (default: the preset's)."),
    text_encoder: Optional[str] = typer.Option(None, "--text-encoder", help="Local CLIP text model directory."),
    image_encoder: Optional[str] = typer.Option(None, "--image-encoder", help="Local ViT / MAE directory (seer presets: frozen, as Seer does)."),
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
    init: Optional[str] = typer.Option(None, "--init", help="Continue this trained teacher (directory or shipped name): its config, weights and statistics."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/train_state.pt."),
) -> None:
    """Train a teacher of PRESET on the demonstrations in DATA; write a checkpoint to OUT."""
    from vitabench.training.teacher import train_teacher

    settings = settings_from(steps, batch_size, lr, weight_decay, warmup, seed, device, checkpoint_every, shift, windows_per_segment)
    overrides = {name: value for name, value in (("history", history), ("state_rotation", state_rotation), ("normalize", normalize))
                 if value is not None}
    result = train_teacher(data, out, preset=preset, settings=settings, text_encoder=text_encoder, image_encoder=image_encoder, overrides=overrides, init_from=init, resume=resume)
    summary = result.summary()
    typer.echo(f"teacher: loss {summary['first']:.4f} -> {summary['last']:.4f} in {result.wall_s:.0f} s; wrote {out}")
