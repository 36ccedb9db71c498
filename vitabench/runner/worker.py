"""Environment worker processes: each owns one environment, built lazily and rebuilt only when
the environment it must run changes (another task, other cameras).

The main process talks to a worker over a pipe with plain tuples:

    ("reset", EnvConfig, seed, init_state_id) -> ("reset", obs, info, build_s)
    ("step", action[7])                        -> ("step", obs, reward, terminated, truncated, info)
    ("close",)                                 -> the worker exits
    any command that raises                    -> ("error", "ExcType: message")

A worker whose environment raised drops that environment (its state is unknown) and builds a
new one on the next reset. Workers ignore SIGINT: the main process decides how a run stops.
"""

from __future__ import annotations

import importlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from vitabench.api.protocol import Protocol
from vitabench.api.suite import Task

#: Plain info values a worker passes back (anything else stays in the worker).
_INFO_TYPES = (bool, int, float, str, np.bool_, np.integer, np.floating)


@dataclass(frozen=True)
class EnvConfig:
    """Everything a worker needs to build the environment of one episode; equal configs share an env."""

    entry_point: str  # "module:Class" taking (task, protocol, **kwargs)
    task: Task
    protocol: Protocol
    cameras: tuple[str, ...]
    resolution: int
    state_keys: tuple[str, ...]
    privileged: bool
    max_steps: int
    env_kwargs: tuple[tuple[str, Any], ...] = ()  # extra constructor arguments, e.g. the robot of a real-robot suite

    def build(self) -> Any:
        module_name, _, attr = self.entry_point.partition(":")
        env_class = getattr(importlib.import_module(module_name), attr)
        return env_class(
            self.task,
            self.protocol,
            cameras=self.cameras,
            resolution=self.resolution,
            state_keys=self.state_keys,
            privileged=self.privileged,
            max_steps=self.max_steps,
            **dict(self.env_kwargs),
        )


def _plain_info(info: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in info.items() if isinstance(v, _INFO_TYPES)}


class EnvHost:
    """Answers worker commands with one environment, built lazily and rebuilt only when the
    wanted :class:`EnvConfig` changes; an environment that raised is dropped (its state is
    unknown). Shared by the local worker process and the Ray actor."""

    def __init__(self) -> None:
        if sys.platform.startswith("linux"):
            os.environ.setdefault("MUJOCO_GL", "egl")
        self.env: Any = None
        self.config: EnvConfig | None = None

    def handle(self, message: tuple) -> tuple:
        """The reply to a ``reset`` or ``step`` command; ``("error", ...)`` when it raised."""
        kind = message[0]
        try:
            if kind == "reset":
                wanted, seed, init_state_id = message[1:]
                build_s = 0.0
                if self.env is None or wanted != self.config:
                    self.close()
                    start = time.perf_counter()
                    self.env, self.config = wanted.build(), wanted
                    build_s = time.perf_counter() - start
                obs, info = self.env.reset(seed=seed, options={"init_state": init_state_id})
                return ("reset", obs, _plain_info(info), build_s)
            if kind == "step":
                obs, reward, terminated, truncated, info = self.env.step(message[1])
                return ("step", obs, float(reward), bool(terminated), bool(truncated), _plain_info(info))
            raise ValueError(f"unknown worker command {kind!r}")
        except Exception as exc:  # noqa: BLE001 - every env failure becomes an episode error
            try:
                self.close()
            except Exception:  # noqa: BLE001 - the env is being dropped anyway
                pass
            return ("error", f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        env, self.env, self.config = self.env, None, None
        if env is not None:
            env.close()


def worker_main(conn: multiprocessing.connection.Connection) -> None:
    """The loop of one worker process (the target of :class:`WorkerProcess`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    host = EnvHost()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break  # the main process is gone
        if message[0] == "close":
            break
        try:
            conn.send(host.handle(message))
        except (BrokenPipeError, ConnectionResetError):
            break  # the main process is gone
    host.close()


class WorkerDied(Exception):
    """The worker process ended or stopped answering."""


class WorkerProcess:
    """Main-process handle of one worker slot; the process starts on first use and after a death."""

    def __init__(self, slot: int, context: multiprocessing.context.BaseContext | None = None) -> None:
        self.slot = slot
        self._context = context or multiprocessing.get_context("spawn")
        self._process: multiprocessing.process.BaseProcess | None = None
        self.conn: multiprocessing.connection.Connection | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def send(self, message: tuple) -> None:
        """Send a command, starting the process first if there is none."""
        if self._process is None:
            parent, child = self._context.Pipe(duplex=True)
            process = self._context.Process(
                target=worker_main, args=(child,), name=f"vitabench-env-{self.slot}", daemon=True
            )
            process.start()
            child.close()
            self._process, self.conn = process, parent
        assert self.conn is not None
        try:
            self.conn.send(message)
        except (BrokenPipeError, ConnectionResetError, OSError) as exc:
            raise WorkerDied(self.death_cause()) from exc

    def waitables(self) -> list[Any]:
        assert self._process is not None and self.conn is not None
        return [self.conn, self._process.sentinel]

    def receive(self) -> tuple:
        """The reply to the last command (call when :meth:`waitables` is ready)."""
        assert self.conn is not None
        try:
            if self.conn.poll():
                return self.conn.recv()
        except (EOFError, ConnectionResetError, OSError):
            pass
        raise WorkerDied(self.death_cause())

    def death_cause(self) -> str:
        """Why the process is gone, e.g. ``worker pid 123 died (signal SIGKILL)``."""
        if self._process is None:
            return "worker was never started"
        self._process.join(timeout=5)
        code = self._process.exitcode
        if code is None:
            return f"worker pid {self._process.pid} stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            return f"worker pid {self._process.pid} died (signal {name})"
        return f"worker pid {self._process.pid} exited with code {code}"

    def kill(self) -> None:
        """Kill the process (if any); the next :meth:`send` starts a fresh one."""
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(timeout=5)
        self._discard()

    def close(self, timeout: float = 10.0) -> None:
        """Ask the worker to exit; kill it if it does not within ``timeout`` seconds."""
        if self._process is None:
            return
        try:
            if self.conn is not None:
                self.conn.send(("close",))
        except OSError:
            pass
        self._process.join(timeout=timeout)
        self.kill()

    def _discard(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self._process, self.conn = None, None
