"""Episode videos: which episodes get one, and a background thread that encodes them.

Frames are handed to the thread as they arrive (a queue put, never an encode on the stepping
path); the file is written under a temporary name and renamed to
``videos/<episode_id with / -> _>__<success|failure|error>.mp4`` when the outcome is known.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vitabench.api.episode import Episode
from vitabench.api.errors import VitabenchError

VIDEO_DIR = "videos"
_STOP = object()


@dataclass(frozen=True)
class VideoMode:
    """``none``, ``failures`` (kept only for failed or errored episodes), ``sample:K`` (the first K
    episodes of each task) or ``all``."""

    kind: str
    sample: int = 0

    @classmethod
    def parse(cls, text: str) -> VideoMode:
        if text in ("none", "failures", "all"):
            return cls(text)
        kind, _, count = text.partition(":")
        if kind == "sample" and count.isdigit() and int(count) > 0:
            return cls("sample", int(count))
        raise VitabenchError(f"--video {text!r}; accepted: none, failures, sample:K (K >= 1), all")

    def __str__(self) -> str:
        return f"sample:{self.sample}" if self.kind == "sample" else self.kind

    def wanted(self, episode: Episode) -> bool:
        """Whether frames of ``episode`` must be recorded (before its outcome is known)."""
        if self.kind == "sample":
            return episode.index < self.sample
        return self.kind in ("failures", "all")

    def keep(self, outcome: str) -> bool:
        return self.kind != "failures" or outcome != "success"


def video_name(episode_id: str, outcome: str) -> str:
    return f"{episode_id.replace('/', '_')}__{outcome}.mp4"


def tile(images: Mapping[str, np.ndarray]) -> np.ndarray:
    """The cameras side by side, in name order, as one ``uint8[H, sum W, 3]`` frame."""
    frames = [np.asarray(images[name]) for name in sorted(images)]
    height = max(f.shape[0] for f in frames)
    padded = [np.pad(f, ((0, height - f.shape[0]), (0, 0), (0, 0))) for f in frames]
    return np.ascontiguousarray(np.concatenate(padded, axis=1), dtype=np.uint8)


class VideoWriter:
    """One background thread encoding every episode video of a run."""

    def __init__(self, run_dir: Path, mode: VideoMode, fps: int) -> None:
        self.directory = run_dir / VIDEO_DIR
        self.mode = mode
        self.fps = fps
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=512)
        self._with_frames: set[str] = set()
        self._thread = threading.Thread(target=self._work, name="vitabench-video", daemon=True)
        self._thread.start()

    def frame(self, episode_id: str, images: Mapping[str, np.ndarray]) -> None:
        if images:
            self._with_frames.add(episode_id)
            self._queue.put(("frame", episode_id, tile(images)))

    def finish(self, episode_id: str, outcome: str) -> str | None:
        """Close the video of ``episode_id``; its path relative to the run dir, or None if not kept."""
        keep = self.mode.keep(outcome) and episode_id in self._with_frames
        self._with_frames.discard(episode_id)
        self._queue.put(("finish", episode_id, outcome if keep else None))
        return f"{VIDEO_DIR}/{video_name(episode_id, outcome)}" if keep else None

    def discard(self, episode_id: str) -> None:
        self._with_frames.discard(episode_id)
        self._queue.put(("finish", episode_id, None))

    def close(self) -> None:
        """Wait until every queued video is written."""
        self._queue.put(_STOP)
        self._thread.join()

    def _temporary(self, episode_id: str) -> Path:
        return self.directory / f".{episode_id.replace('/', '_')}.partial.mp4"

    def _work(self) -> None:
        import imageio.v2 as imageio

        writers: dict[str, Any] = {}
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            kind, episode_id, payload = item
            if kind == "frame":
                if episode_id not in writers:
                    self.directory.mkdir(parents=True, exist_ok=True)
                    writers[episode_id] = imageio.get_writer(
                        self._temporary(episode_id), fps=self.fps, macro_block_size=1, quality=7
                    )
                writers[episode_id].append_data(payload)
                continue
            writer = writers.pop(episode_id, None)
            temporary = self._temporary(episode_id)
            if writer is not None:
                writer.close()
            if payload is None or writer is None:
                temporary.unlink(missing_ok=True)
            else:
                temporary.replace(self.directory / video_name(episode_id, payload))
        for episode_id, writer in writers.items():
            writer.close()
            self._temporary(episode_id).unlink(missing_ok=True)
