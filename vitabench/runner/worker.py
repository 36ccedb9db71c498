"""Environment worker processes: each owns one environment, built lazily and rebuilt only when
the environment it must run changes (another task, other cameras).

The main process talks to a worker over a pipe with plain tuples:

    ("reset", EnvConfig, seed, init_state_id[, episode]) -> ("reset", obs, info, build_s, digest)
    ("step", action[7])                            -> ("step", obs, reward, terminated, truncated, info, digest)
    ("chunk", actions[k, 7], observe, cameras)     -> ("chunk", obs, steps, terminated, truncated, info, frames, digest)
    ("close",)                                     -> the worker exits
    any command that raises                        -> ("error", "ExcType: message", traceback)

``reset`` passes ``seed`` and ``options={"init_state": ..., "episode": ...}`` to the env's reset
(``episode``: the episode's index within its task, 0 when absent; LIBERO's fixture placement
depends on it).

``step`` is one Gymnasium step with its full observation. ``chunk`` runs up to ``k`` actions
back to back (an action chunk the policy will not look inside) and stops early when the episode
ends; it replies once, with the observation after the last action when ``observe`` is true and
the episode goes on (``None`` otherwise), the steps taken, the flags and ``info`` of the last
step (``extra.*`` keys of earlier steps kept), and in ``frames`` the images of ``cameras`` (a
video's; ``()`` for none) after every step taken. ``digest`` fingerprints every state of the
episode so far, observed or not (see :class:`EnvHost`).

Steps whose observation nobody looks at are run with the environment's optional
``step_unobserved(action, cameras) -> (seen, reward, terminated, truncated, info)``: the
physics, reward, flags and info of ``step``, but ``seen`` holds only ``state`` and, under
``images``, the frames of ``cameras``, so the environment renders nothing else
(:class:`~vitabench.envs.libero_env.LiberoEnv` has it). An environment without it still works:
its full ``step`` is used and the rest of the observation dropped.

A worker whose environment raised drops that environment (its state is unknown) and builds a
new one on the next reset. Workers ignore SIGINT: the main process decides how a run stops.
"""

from __future__ import annotations

import hashlib
import importlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
import traceback
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


#: Most characters of a traceback an errored episode's record keeps (its innermost frames).
TRACEBACK_CHARS = 4000


def traceback_text(exc: BaseException) -> str:
    """``exc``'s formatted traceback, cut to its last :data:`TRACEBACK_CHARS` characters, for
    an errored episode's record (``extra["traceback"]``): where the failure came from."""
    text = "".join(traceback.format_exception(exc)).rstrip()
    return text if len(text) <= TRACEBACK_CHARS else "..." + text[-TRACEBACK_CHARS:]


def _new_digest() -> Any:
    return hashlib.blake2b(digest_size=8)


class EnvHost:
    """Answers worker commands with one environment, built lazily and rebuilt only when the
    wanted :class:`EnvConfig` changes; an environment that raised is dropped (its state is
    unknown). Shared by the local worker process and the Ray actor.

    The ``digest`` of every reply hashes the ``state`` of each observation of the episode (after
    the reset and after every step, observed or not; keys in sorted order, their raw bytes), so
    equal digests mean identical trajectories whichever steps the runner looked at."""

    def __init__(self) -> None:
        if sys.platform.startswith("linux"):
            os.environ.setdefault("MUJOCO_GL", "egl")
        self.env: Any = None
        self.config: EnvConfig | None = None
        self._digest = _new_digest()

    def handle(self, message: tuple) -> tuple:
        """The reply to a ``reset`` or ``step`` command; ``("error", ...)`` when it raised."""
        kind = message[0]
        try:
            if kind == "reset":
                wanted, seed, init_state_id, *episode = message[1:]  # the episode's index in its task (default 0)
                build_s = 0.0
                if self.env is None or wanted != self.config:
                    self.close()
                    start = time.perf_counter()
                    self.env, self.config = wanted.build(), wanted
                    build_s = time.perf_counter() - start
                obs, info = self.env.reset(seed=seed, options={"init_state": init_state_id, "episode": episode[0] if episode else 0})
                self._digest = _new_digest()
                return ("reset", obs, _plain_info(info), build_s, self._fingerprint(obs))
            if kind == "step":
                obs, reward, terminated, truncated, info = self.env.step(message[1])
                digest = self._fingerprint(obs)
                return ("step", obs, float(reward), bool(terminated), bool(truncated), _plain_info(info), digest)
            if kind == "chunk":
                return self._chunk(*message[1:])
            raise ValueError(f"unknown worker command {kind!r}")
        except Exception as exc:  # noqa: BLE001 - every env failure becomes an episode error
            try:
                self.close()
            except Exception:  # noqa: BLE001 - the env is being dropped anyway
                pass
            return ("error", f"{type(exc).__name__}: {exc}", traceback_text(exc))

    def _chunk(self, actions: np.ndarray, observe: bool, cameras: tuple[str, ...]) -> tuple:
        """Run ``actions`` until the episode ends; observe only after the last one (see the module doc)."""
        frames: list[dict[str, np.ndarray]] = []
        info: dict[str, Any] = {}
        obs = None
        for taken, action in enumerate(actions, start=1):
            if observe and taken == len(actions):
                seen, _, terminated, truncated, step_info = self.env.step(action)
                obs = seen
            else:
                seen, _, terminated, truncated, step_info = self._step_unobserved(action, cameras)
            digest = self._fingerprint(seen)
            info.update(_plain_info(step_info))
            if cameras:
                frames.append({camera: seen["images"][camera] for camera in cameras})
            if terminated or truncated:
                obs = None
                break
        return ("chunk", obs, taken, bool(terminated), bool(truncated), info, frames, digest)

    def _step_unobserved(self, action: np.ndarray, cameras: tuple[str, ...]) -> tuple:
        step_unobserved = getattr(self.env, "step_unobserved", None)
        if step_unobserved is not None:
            return step_unobserved(action, cameras)
        obs, reward, terminated, truncated, info = self.env.step(action)
        images = obs.get("images", {})
        return {"state": obs.get("state", {}), "images": {c: images[c] for c in cameras}}, reward, terminated, truncated, info

    def _fingerprint(self, obs: dict[str, Any]) -> str:
        """Add ``obs``'s state to the episode's digest; the digest so far."""
        state = obs.get("state", {})
        for key in sorted(state):
            self._digest.update(np.ascontiguousarray(state[key]).tobytes())
        return self._digest.hexdigest()

    def close(self) -> None:
        env, self.env, self.config = self.env, None, None
        if env is not None:
            env.close()


def worker_main(conn: multiprocessing.connection.Connection, host_type: type[EnvHost] = EnvHost) -> None:
    """The loop of one worker process (the target of :class:`WorkerProcess`), answering with a
    ``host_type`` (an :class:`EnvHost`, or a subclass that answers more commands)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    host = host_type()
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

    #: What the process answers with (:func:`worker_main`'s ``host_type``).
    host_type: type[EnvHost] = EnvHost

    def _start(self) -> None:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=worker_main, args=(child, self.host_type), name=f"vitabench-env-{self.slot}", daemon=True
        )
        process.start()
        child.close()
        self._process, self.conn = process, parent

    def send(self, message: tuple) -> None:
        """Send a command, starting the process first if there is none."""
        if self._process is None:
            self._start()
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
        assert self.conn is not None and self._process is not None
        try:  # a live process made the pipe ready (a reply or EOF); a dead one may have left none
            if self._process.is_alive() or self.conn.poll():
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
