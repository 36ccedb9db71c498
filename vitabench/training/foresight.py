"""Training windows for Seer's image-prediction (foresight) loss: every real frame of a batch
with the images of its demo ``steps`` steps later, augmented exactly as the batch's frames are."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vitabench.models.common import FrameBatch
from vitabench.training.loop import Windows, _shift


@dataclass
class ForesightBatch(FrameBatch):
    """A :class:`FrameBatch` whose real frames (row-major) carry the future images the model
    predicts: ``future_images[camera]`` uint8 ``[N, H, W, 3]`` and ``future_mask [N]`` (False
    where the demo ends before the future step; the image there is blank)."""

    future_images: dict[str, Any] = dataclasses.field(default_factory=dict)
    future_mask: Any = None


class ForesightWindows(Windows):
    """:class:`Windows` whose batches are :class:`ForesightBatch` es, with the future ``steps``
    steps after each real frame."""

    def __init__(self, paths: Sequence[str | Path], cameras: Sequence[str], history: int, chunk: int,
                 state_rotation: str = "euler", *, steps: int) -> None:
        super().__init__(paths, cameras, history, chunk, state_rotation)
        self.steps = steps

    def batch(self, rows: np.ndarray, rng: np.random.Generator, shift: int = 0) -> tuple[Any, Any, Any]:
        import torch

        replay = copy.deepcopy(rng)  # the random shifts the frames get, drawn again for their futures
        batch, targets, mask = super().batch(rows, rng, shift)
        frames = [(int(demo), int(t) - offset) for demo, t in self.index[rows]
                  for offset in reversed(range(min(int(t) + 1, self.history)))]
        valid = np.array([step + self.steps < len(self.actions[demo]) for demo, step in frames], dtype=bool)
        future = {camera: np.zeros((len(frames), *self.images[camera][0].shape[1:]), dtype=np.uint8) for camera in self.cameras}
        for camera in self.cameras:
            for n, (demo, step) in enumerate(frames):
                if valid[n]:
                    future[camera][n] = self.images[camera][demo][step + self.steps]
        if shift:
            self._shift_like_the_batch(future, frames, replay, shift)
        fields = {f.name: getattr(batch, f.name) for f in dataclasses.fields(FrameBatch)}
        foresight = ForesightBatch(
            **fields,
            future_images={camera: torch.from_numpy(images) for camera, images in future.items()},
            future_mask=torch.from_numpy(valid),
        )
        return foresight, targets, mask

    def _shift_like_the_batch(self, future: dict[str, np.ndarray], frames: list[tuple[int, int]],
                              replay: np.random.Generator, shift: int) -> None:
        """Give each demo's future images the random shift its frames got: :meth:`Windows.batch`
        draws one shift per demo (in sorted demo order) and camera from the generator it is
        handed (``loop._shift``); ``replay`` is that generator before the draws."""
        frame_demos = np.array([demo for demo, _ in frames])
        for demo in np.unique(frame_demos):
            chosen = frame_demos == demo
            for camera in self.cameras:
                future[camera][chosen] = _shift(future[camera][chosen], replay, shift)
