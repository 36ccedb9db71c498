"""The operator in the loop, answering through lines of text (a terminal, or a script on stdin).

Before each episode the operator resets the scene as the task says and confirms; during the
episode one line stops the arm at once; after it the operator labels the outcome::

    before   Enter | y | yes          the scene is reset, start   (q | quit: abort the episode)
    during   e | stop | estop         e-stop: zero velocity, then hold; the episode ends
             d | done                 end the episode now (e.g. the task is visibly done)
    after    s | success              success
             f | failure              failure
             i REASON | invalid REASON   not a valid trial (recorded as an error, retried on --resume)

Prompts go to stderr, each starting with ``[operator]`` and a tag (``RESET``, ``RUNNING``,
``LABEL``) so a script can wait for them. Lines typed early are kept for the next prompt; e-stop
lines act the moment they are read, from a reader thread, whatever the control loop is doing.
"""

from __future__ import annotations

import os
import queue
import select
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Literal, TextIO

from vitabench.api.errors import VitabenchError

CONFIRM = {"", "y", "yes"}
ABORT = {"q", "quit"}
ESTOP = {"e", "stop", "estop"}
DONE = {"d", "done"}
SUCCESS = {"s", "success"}
FAILURE = {"f", "failure"}
INVALID = {"i", "invalid"}

Outcome = Literal["success", "failure", "invalid"]


class OperatorError(VitabenchError):
    """The operator's input ended or the operator aborted the episode."""


class EpisodeInvalid(VitabenchError):
    """The operator marked the episode invalid (not a trial): recorded as an error, retried on resume."""


@dataclass(frozen=True)
class Label:
    """The operator's verdict on one episode and where it came from."""

    outcome: Outcome
    reason: str | None
    source: str  # e.g. "operator:stdin"
    answer_s: float  # how long the operator took to answer


class _LineReader:
    """Reads lines from one file descriptor on a daemon thread; one reader per descriptor per process."""

    _readers: dict[int, "_LineReader"] = {}
    _lock = threading.Lock()

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.on_line: Callable[[str], bool] | None = None  # returns True when it consumed the line
        self._thread = threading.Thread(target=self._run, name=f"operator-fd{fd}", daemon=True)
        self._thread.start()

    @classmethod
    def for_fd(cls, fd: int) -> "_LineReader":
        with cls._lock:
            if fd not in cls._readers or not cls._readers[fd]._thread.is_alive():
                cls._readers[fd] = cls(fd)
            return cls._readers[fd]

    def _run(self) -> None:
        pending = b""
        while True:
            try:
                select.select([self.fd], [], [])
                chunk = os.read(self.fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                self.lines.put(None)  # end of input
                return
            pending += chunk
            while b"\n" in pending:
                raw, pending = pending.split(b"\n", 1)
                line = raw.decode(errors="replace").strip()
                handler = self.on_line
                if handler is None or not handler(line):
                    self.lines.put(line)


class Operator:
    """The operator's answers from a file descriptor (stdin by default)."""

    def __init__(self, fd: int = 0, *, source: str = "stdin", prompts: TextIO | None = None) -> None:
        self.source = f"operator:{source}"
        self._reader = _LineReader.for_fd(fd)
        self._prompts = prompts or sys.stderr
        self._on_estop: Callable[[], None] | None = None
        self.estopped = threading.Event()
        self.done = threading.Event()
        self.estop_at: float | None = None

    def say(self, tag: str, text: str) -> None:
        print(f"[operator] {tag}: {text}", file=self._prompts, flush=True)

    def _next_line(self, waiting_for: str) -> str:
        line = self._reader.lines.get()
        if line is None:
            self._reader.lines.put(None)  # stays at end of input for every later prompt
            raise OperatorError(f"operator input ({self.source}) ended while waiting for {waiting_for}")
        return line

    def confirm_reset(self, task: str, instructions: str) -> float:
        """Block until the operator confirms the scene is reset; returns the seconds it took."""
        start = time.monotonic()
        self.say("RESET", f"{task}: {instructions} -- press Enter (or y) when ready, q to abort")
        while True:
            line = self._next_line("the reset confirmation")
            word = line.lower()
            if word in CONFIRM:
                return time.monotonic() - start
            if word in ABORT:
                raise OperatorError(f"the operator aborted the episode before it started ({self.source})")
            self.say("RESET", f"answer {line!r} not understood; accepted: Enter, y, yes, q")

    def arm(self, on_estop: Callable[[], None]) -> None:
        """Start watching for e-stop and done lines; ``on_estop`` runs on the reader thread."""
        self.estopped.clear()
        self.done.clear()
        self.estop_at = None
        self._on_estop = on_estop
        self._reader.on_line = self._during_episode
        self.say("RUNNING", "e = e-stop, d = done")

    def disarm(self) -> None:
        self._reader.on_line = None
        self._on_estop = None

    def _during_episode(self, line: str) -> bool:
        word = line.lower()
        if word in ESTOP:
            if not self.estopped.is_set():
                self.estop_at = time.monotonic()
                if self._on_estop is not None:
                    self._on_estop()
                self.estopped.set()
            return True
        if word in DONE:
            self.done.set()
            return True
        return False

    def label(self, summary: str) -> Label:
        """Ask for the outcome until a valid answer arrives."""
        start = time.monotonic()
        self.say("LABEL", f"{summary} -- s = success, f = failure, i REASON = invalid")
        while True:
            line = self._next_line("the episode's label")
            word, _, rest = line.partition(" ")
            word = word.lower()
            if word in SUCCESS:
                return Label("success", None, self.source, time.monotonic() - start)
            if word in FAILURE:
                return Label("failure", None, self.source, time.monotonic() - start)
            if word in INVALID and rest.strip():
                return Label("invalid", rest.strip(), self.source, time.monotonic() - start)
            self.say("LABEL", f"answer {line!r} not understood; accepted: s, f, i REASON")
