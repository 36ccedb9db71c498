"""What every training stage shares: demo windows as model batches, the optimiser schedule, the
seeded loop with progress bar, periodic resumable state and loss history.

A training example is a window of up to ``history`` consecutive frames of one demo ending at step
``t`` (real frames first, then padding, as :class:`FrameBatch` wants); every real frame ``f`` is
supervised with the actions ``f .. f + chunk - 1`` that exist in the demo. Batch ``i`` is drawn
from a generator seeded with ``(seed, i)``, so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.training.data import DatasetInfo, iter_demos, read_info

STATE_FILE = "train_state.pt"


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser and loop settings of one stage (AdamW, ``warmup`` fraction of linear warm-up,
    then linear decay to 0). ``shift`` is the random-shift augmentation in pixels (0: none);
    ``windows_per_segment`` consecutive windows of one demo are drawn together (they share
    frames, so a batch encodes fewer images; 1 draws every window independently)."""

    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup: float = 0.1
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 500
    shift: int = 4
    windows_per_segment: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.steps < 1:
            problems.append(f"steps={self.steps}; accepted: >= 1")
        if self.batch_size < 1:
            problems.append(f"batch_size={self.batch_size}; accepted: >= 1")
        if not self.lr > 0:
            problems.append(f"lr={self.lr}; accepted: > 0")
        if not 0 <= self.warmup < 1:
            problems.append(f"warmup={self.warmup}; accepted: 0 <= warmup < 1")
        if self.shift < 0:
            problems.append(f"shift={self.shift}; accepted: >= 0")
        if not 1 <= self.windows_per_segment <= self.batch_size:
            problems.append(f"windows_per_segment={self.windows_per_segment}; accepted: 1 to batch_size")
        if problems:
            raise VitabenchError("training settings: " + "; ".join(problems))


class Windows:
    """All demos of some files in memory, cut into training windows; states as the model reads
    them (orientation as ``state_rotation``)."""

    def __init__(
        self, paths: Sequence[str | Path], cameras: Sequence[str], history: int, chunk: int, state_rotation: str = "euler"
    ) -> None:
        self.infos: list[DatasetInfo] = [read_info(path) for path in paths]
        if not self.infos:
            raise VitabenchError("no --data file given; accepted: one or more LIBERO-format HDF5 files")
        resolutions = sorted({info.resolution for info in self.infos})
        if len(resolutions) != 1:
            raise VitabenchError(f"the --data files have images of {resolutions} px; accepted: files of one image size")
        for info in self.infos:
            missing = [camera for camera in cameras if camera not in info.cameras]
            if missing:
                raise VitabenchError(
                    f"data file {info.path} lacks camera(s) {', '.join(missing)} the model reads; it has: {', '.join(info.cameras)}"
                )
        protocols = sorted({f"{info.protocol['name'].split('+', 1)[0]}@{info.protocol['version']}" for info in self.infos if info.protocol})
        if len(protocols) > 1:
            raise VitabenchError(f"the --data files were collected under {', '.join(protocols)}; accepted: files of one protocol")
        self.resolution = resolutions[0]
        self.cameras = tuple(cameras)
        self.history = history
        self.chunk = chunk
        self.images: dict[str, list[np.ndarray]] = {camera: [] for camera in cameras}
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.instructions: list[str] = []
        for info in self.infos:
            for demo in iter_demos(info.path, cameras):
                for camera in cameras:
                    self.images[camera].append(demo.images[camera])
                self.states.append(demo.model_state(state_rotation))
                self.actions.append(demo.actions)
                self.instructions.append(demo.instruction)
        self.index = np.array([(d, t) for d, actions in enumerate(self.actions) for t in range(len(actions))], dtype=np.int64)

    @property
    def protocol(self) -> dict[str, Any] | None:
        """The protocol the first file was collected under (``None`` for files that record none)."""
        return self.infos[0].protocol

    def __len__(self) -> int:
        return len(self.index)

    def statistics(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(state mean, state std, arm action scale)`` over every step: the std floored at
        1e-3, the scale the 99th percentile of each arm dimension's magnitude, floored at 0.05."""
        states = np.concatenate(self.states)
        arm = np.abs(np.concatenate(self.actions)[:, :6])
        scale = np.maximum(np.percentile(arm, 99, axis=0), 0.05)
        return states.mean(0), np.maximum(states.std(0), 1e-3), scale.astype(np.float32)

    def sample(self, rng: np.random.Generator, batch_size: int, windows_per_segment: int = 1) -> np.ndarray:
        """Index rows of ``batch_size`` windows: random ends, each followed by the windows ending
        at the ``windows_per_segment - 1`` steps before it in the same demo (they share frames,
        which a batch encodes once)."""
        ends = rng.integers(0, len(self), size=-(-batch_size // windows_per_segment))
        rows = [end - offset for end in ends for offset in range(windows_per_segment) if self.index[end, 1] >= offset]
        return np.array(rows[:batch_size], dtype=np.int64)

    def batch(self, rows: np.ndarray, rng: np.random.Generator, shift: int = 0) -> tuple[Any, Any, Any]:
        """``(FrameBatch, targets [B, T, chunk, 7], target mask [B, T, chunk])`` for index ``rows``.

        The batch holds each distinct frame once (``FrameBatch.frame_index`` maps the windows'
        frames to them); random-shift augmentation moves all frames of one demo alike.
        """
        import torch

        from vitabench.models.common import FrameBatch

        n, frames, chunk = len(rows), self.history, self.chunk
        state = np.zeros((n, frames, self.states[0].shape[1]), dtype=np.float32)
        frame_mask = np.zeros((n, frames), dtype=bool)
        targets = np.zeros((n, frames, chunk, 7), dtype=np.float32)
        target_mask = np.zeros((n, frames, chunk), dtype=bool)
        instructions = []
        distinct: dict[tuple[int, int], int] = {}
        frame_index = []
        for row, (demo, t) in enumerate(self.index[rows]):
            start = max(0, t - frames + 1)
            length = t - start + 1
            actions = self.actions[demo]
            state[row, :length] = self.states[demo][start : t + 1]
            frame_mask[row, :length] = True
            for offset in range(length):
                step = start + offset
                frame_index.append(distinct.setdefault((int(demo), int(step)), len(distinct)))
                available = min(chunk, len(actions) - step)
                targets[row, offset, :available] = actions[step : step + available]
                target_mask[row, offset, :available] = True
            instructions.append(self.instructions[demo])
        keys = list(distinct)
        images = {camera: np.stack([self.images[camera][d][t] for d, t in keys]) for camera in self.cameras}
        if shift:
            demos = np.array([d for d, _ in keys])
            for demo in np.unique(demos):
                chosen = demos == demo
                for camera in self.cameras:
                    images[camera][chosen] = _shift(images[camera][chosen], rng, shift)
        batch = FrameBatch(
            images={camera: torch.from_numpy(value) for camera, value in images.items()},
            state=torch.from_numpy(state),
            frame_mask=torch.from_numpy(frame_mask),
            instructions=instructions,
            frame_index=torch.tensor(frame_index, dtype=torch.long),
        )
        return batch, torch.from_numpy(targets), torch.from_numpy(target_mask)


def _shift(frames: np.ndarray, rng: np.random.Generator, pad: int) -> np.ndarray:
    """Random-shift augmentation: edge-pad by ``pad`` and crop back, the same shift for every frame given."""
    height, width = frames.shape[1:3]
    dy, dx = rng.integers(0, 2 * pad + 1, size=2)
    padded = np.pad(frames, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    return padded[:, dy : dy + height, dx : dx + width]


def to_device(batch: Any, device: Any) -> Any:
    """A :class:`FrameBatch` with its tensors on ``device``."""
    return dataclasses.replace(
        batch,
        images={camera: frames.to(device) for camera, frames in batch.images.items()},
        state=batch.state.to(device),
        frame_mask=batch.frame_mask.to(device),
        frame_index=None if batch.frame_index is None else batch.frame_index.to(device),
    )


@dataclass(frozen=True)
class TrainResult:
    """Loss per step, wall time (this process) and where the run stopped."""

    losses: list[float]
    wall_s: float
    steps: int

    def summary(self) -> dict[str, float]:
        """Mean loss over the first and the last tenth of the steps."""
        tenth = max(1, len(self.losses) // 10)
        return {"first": float(np.mean(self.losses[:tenth])), "last": float(np.mean(self.losses[-tenth:]))}


def schedule(step: int, settings: TrainSettings) -> float:
    """Learning-rate factor: linear warm-up over ``warmup × steps``, then linear decay to 0."""
    warmup = math.ceil(settings.warmup * settings.steps)
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (settings.steps - step) / max(1, settings.steps - warmup))


def train(
    model: Any,
    loss_fn: Callable[[Any, Any, Any], Any],
    windows: Windows,
    settings: TrainSettings,
    out: Path,
    *,
    resume: bool,
    label: str,
    quiet: bool = False,
) -> TrainResult:
    """Train the parameters of ``model`` that require grad on ``loss_fn(batch, targets, mask)``.

    Every ``checkpoint_every`` steps the model, optimiser and loss history go to
    ``out/train_state.pt``; ``resume`` continues from it (with the same settings only).
    """
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from vitabench.models.common import resolve_device

    device, dtype = resolve_device(settings.device)
    model.to(device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise VitabenchError(f"{label}: no parameter is trainable")
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step, settings))
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    losses: list[float] = []
    start_step = 0
    settings_json = json.dumps(dataclasses.asdict(settings), sort_keys=True)
    if resume and state_path.exists():
        saved = torch.load(state_path, map_location=device, weights_only=False)
        if saved["settings"] != settings_json or saved["label"] != label:
            raise VitabenchError(
                f"--resume: {state_path} was written by {saved['label']} with settings {saved['settings']}, not {label} with {settings_json}"
            )
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        losses, start_step = list(saved["losses"]), int(saved["step"])
    elif state_path.exists():
        raise VitabenchError(f"{state_path} exists: pass --resume to continue that run, or another --out")

    def save_state(step: int) -> None:
        temporary = state_path.with_suffix(".tmp")
        torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "losses": losses, "step": step, "settings": settings_json, "label": label},
            temporary,
        )
        temporary.replace(state_path)

    model.train()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dtype == torch.bfloat16 else contextlib.nullcontext()
    started = time.monotonic()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    console = Console(stderr=True)
    log_lines = not quiet and not console.is_terminal  # a log file gets a line every 50 steps instead of a bar
    with Progress(*columns, console=console, disable=quiet or log_lines, transient=False) as progress:
        bar = progress.add_task(label, total=settings.steps, completed=start_step, loss="-")
        for step in range(start_step, settings.steps):
            rng = np.random.default_rng([settings.seed, step])
            rows = windows.sample(rng, settings.batch_size, settings.windows_per_segment)
            batch, targets, mask = windows.batch(rows, rng, settings.shift)
            with autocast:
                loss = loss_fn(to_device(batch, device), targets.to(device), mask.to(device))
            if not torch.isfinite(loss):
                raise VitabenchError(f"{label}: the loss became {loss.item()} at step {step}; lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.item()))
            progress.update(bar, advance=1, loss=f"{np.mean(losses[-20:]):.4f}")
            if log_lines and ((step + 1) % 50 == 0 or step + 1 == settings.steps):
                console.print(f"{label}: step {step + 1}/{settings.steps} loss {np.mean(losses[-50:]):.4f} "
                              f"({time.monotonic() - started:.0f} s)")
            if (step + 1) % settings.checkpoint_every == 0 and step + 1 < settings.steps:
                save_state(step + 1)
    save_state(settings.steps)
    model.eval()
    return TrainResult(losses, time.monotonic() - started, settings.steps)
