"""Ray executor: the environments of a run in Ray actors, anywhere on a Ray cluster.

:class:`RayExecutor` is the distributed sibling of :class:`~vitabench.runner.executor.LocalExecutor`:
the same :class:`~vitabench.runner.executor.LockstepLoop` drives it, the policy stays in the
calling process (the driver) and serves every actor that needs an action at the same moment
with one batched ``policy.act``; only the environments move. Each actor holds one
:class:`~vitabench.runner.worker.EnvHost` (the code path of a local worker process: built
lazily, rebuilt when the task or cameras change, dropped after an exception) and answers the
same ``reset`` / ``step`` / ``chunk`` commands (lazy rendering included: a chunk is one actor
call, run in the actor at physics speed). The
manifest decides which init state and seed each episode has, so a deterministic policy gives
the same per-episode outcomes (success, steps, ``state_digest``) as with local workers.

An actor that dies (its process killed, its node lost, an exception outside the env) or gives
no reply within the step timeout ends its episode with ``status=error`` naming the cause; it
is killed and a fresh actor takes its slot on the next episode. ``MUJOCO_GL`` (this process's
value, default ``egl``) is set in every actor.

On one machine::

    vitabench run --executor ray --workers 4 --policy random --suite libero_object

starts a private Ray instance for the run and stops it at the end (if the run is killed with
SIGKILL, Ray's processes follow within a second: :mod:`vitabench.runner.ray_reaper`). On a
cluster (every node needs the same Python environment: vitabench, the suites' simulators and
assets, and any plugin modules that entry points name)::

    ray start --head --port 6379                      # on the head node
    ray start --address HEAD_IP:6379                  # on every other node
    vitabench run --executor ray --ray-address auto --workers 32 ...   # on the head node

``--ray-address HEAD_IP:6379`` joins from another machine of the cluster; ``--ray-worker-cpus``
sets the CPUs each actor reserves (default 1). Records, videos and the run directory stay on
the driver's machine.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import threading
from collections import deque
from typing import Any, Sequence

import ray
import ray.exceptions
import ray.util

from vitabench.api.episode import Episode
from vitabench.api.errors import VitabenchError
from vitabench.api.policy import Policy
from vitabench.runner.executor import LockstepLoop, RunPlan, Sink
from vitabench.runner.ray_reaper import Reaper, children
from vitabench.runner.video import VideoWriter
from vitabench.runner.worker import EnvHost, WorkerDied

#: Seconds to wait for a TCP answer from ``--ray-address HOST:PORT`` before calling it unreachable.
CONNECT_TIMEOUT_S = 5.0
#: Seconds an actor may take to close its environment at the end of a run.
CLOSE_TIMEOUT_S = 10.0


class EnvActor:
    """One environment in a Ray actor process (remote class: see :func:`_actor_class`)."""

    def __init__(self) -> None:
        self.host = EnvHost()

    def where(self) -> tuple[int, str]:
        """This actor's process id and node address."""
        return os.getpid(), ray.util.get_node_ip_address()

    def handle(self, message: tuple) -> tuple:
        return self.host.handle(message)

    def close(self) -> None:
        self.host.close()


_ACTOR_CLASS: Any = None


def _actor_class() -> Any:
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        _ACTOR_CLASS = ray.remote(EnvActor)
    return _ACTOR_CLASS


class RayWorker:
    """The driver side of one slot (a :class:`~vitabench.runner.executor.WorkerHandle`): an
    actor started on first use and after a death. A reply's arrival is signalled on a local
    socket so that the loop waits on Ray actors exactly as on local pipes."""

    def __init__(self, slot: int, options: dict[str, Any]) -> None:
        self.slot = slot
        self._options = options
        self._actor: Any = None
        self._pid: int | None = None
        self._node: str | None = None
        self._where_ref: Any = None
        self._reply: Any = None
        self._generation = 0
        self._ready, self._notify = socket.socketpair()
        self._ready.setblocking(False)
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The actor's process id, once the actor has reported it (never blocks)."""
        if self._where_ref is not None and ray.wait([self._where_ref], timeout=0)[0]:
            try:
                self._pid, self._node = ray.get(self._where_ref)
            except ray.exceptions.RayError:
                pass
            self._where_ref = None
        return self._pid

    def send(self, message: tuple) -> None:
        if self._actor is None:
            self._actor = _actor_class().options(**self._options).remote()
            self._where_ref = self._actor.where.remote()
        self._drain()
        with self._lock:
            generation = self._generation
        try:
            self._reply = self._actor.handle.remote(message)
        except ray.exceptions.RayError as exc:
            raise WorkerDied(self._death_cause(exc)) from exc
        self._reply.future().add_done_callback(lambda _future: self._signal(generation))

    def _signal(self, generation: int) -> None:
        with self._lock:  # a reply of a killed actor must not wake the next one's wait
            if generation == self._generation:
                self._notify.send(b"\0")

    def _drain(self) -> None:
        try:
            while self._ready.recv(4096):
                pass
        except BlockingIOError:
            pass

    def waitables(self) -> list[Any]:
        return [self._ready]

    def receive(self) -> tuple:
        """The reply to the last command (call when :meth:`waitables` is ready)."""
        self._drain()
        reply, self._reply = self._reply, None
        try:
            return ray.get(reply)
        except ray.exceptions.RayError as exc:
            raise WorkerDied(self._death_cause(exc)) from exc

    def _death_cause(self, exc: BaseException) -> str:
        """One line, e.g. ``ray actor pid 123 on 10.0.0.5 died (ActorDiedError: The actor died ...)``."""
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = f"{type(exc).__name__}: {lines[0] if lines else 'no details'}"
        who = f"pid {self.pid} on {self._node}" if self.pid is not None else f"of slot {self.slot}"
        return f"ray actor {who} died ({reason})"

    def kill(self) -> None:
        """Kill the actor (if any); the next :meth:`send` starts a fresh one."""
        with self._lock:
            self._generation += 1
        if self._actor is not None:
            try:
                ray.kill(self._actor, no_restart=True)
            except ray.exceptions.RayError:
                pass
        self._actor, self._pid, self._node, self._where_ref, self._reply = None, None, None, None, None

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Let the actor close its environment, then end it."""
        if self._actor is not None:
            try:
                ray.get(self._actor.close.remote(), timeout=timeout)
            except ray.exceptions.RayError:
                pass
        self.kill()
        self._ready.close()
        self._notify.close()


class RayExecutor:
    """``workers`` Ray actors, one environment each, stepped in lockstep by a driver-side policy.

    ``address``: ``None`` starts a Ray instance on this machine for the run; ``"auto"`` joins the
    cluster started on this machine with ``ray start``; ``HOST:PORT`` or ``ray://HOST:PORT``
    joins that cluster. ``worker_cpus``/``worker_gpus`` are the resources each actor reserves;
    ``lazy_rendering`` as for :class:`~vitabench.runner.executor.LocalExecutor`.
    Use as a context manager, or call :meth:`connect` first and :meth:`shutdown` at the end.
    """

    def __init__(
        self,
        workers: int = 1,
        address: str | None = None,
        *,
        worker_cpus: float = 1.0,
        worker_gpus: float = 0.0,
        lazy_rendering: bool = True,
    ) -> None:
        if workers < 1:
            raise VitabenchError(f"--workers {workers}: must be >= 1")
        if worker_cpus < 0 or worker_gpus < 0:
            raise VitabenchError(f"--ray-worker-cpus {worker_cpus} / worker_gpus {worker_gpus}: must be >= 0")
        self.workers, self.address = workers, address
        self.worker_cpus, self.worker_gpus = worker_cpus, worker_gpus
        self.lazy_rendering = lazy_rendering
        self._owns_ray = False
        self._reaper: Reaper | None = None

    def __enter__(self) -> RayExecutor:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def connect(self) -> None:
        """Start or join Ray; an unreachable address raises :class:`VitabenchError` in one line."""
        if ray.is_initialized():
            return
        if self.address is None:
            cpus = max(os.cpu_count() or 1, math.ceil(self.workers * self.worker_cpus))
            before = children(os.getpid())
            ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
            self._owns_ray = True
            self._reaper = Reaper.start(children(os.getpid()) - before)
            return
        _probe(self.address)
        try:
            ray.init(address=self.address, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise VitabenchError(f"--ray-address {self.address!r}: cannot join a Ray cluster ({first})") from None
        self._owns_ray = True
        needed, available = self.workers * self.worker_cpus, ray.cluster_resources().get("CPU", 0.0)
        if needed > available:
            print(
                f"warning: --workers {self.workers} x --ray-worker-cpus {self.worker_cpus:g} needs {needed:g} CPUs, "
                f"the cluster has {available:g}; the actors beyond it wait for resources",
                file=sys.stderr,
            )

    def shutdown(self) -> None:
        """Disconnect from Ray (stopping the instance :meth:`connect` started, if any)."""
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False
        if self._reaper is not None:
            self._reaper.stop()
            self._reaper = None

    def actor_options(self) -> dict[str, Any]:
        return {
            "num_cpus": self.worker_cpus,
            "num_gpus": self.worker_gpus,
            "max_restarts": 0,
            "max_task_retries": 0,
            "scheduling_strategy": "SPREAD",
            "runtime_env": {"env_vars": {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}},
        }

    def run(self, plan: RunPlan, policy: Policy, episodes: Sequence[Episode], sink: Sink, video: VideoWriter | None) -> None:
        self.connect()
        options = self.actor_options()
        slots = [RayWorker(slot, options) for slot in range(min(self.workers, len(episodes)))]
        LockstepLoop(plan, policy, sink, video, slots, lazy_rendering=self.lazy_rendering).run(deque(episodes))


def _probe(address: str) -> None:
    """Fail fast, in one line, when ``HOST:PORT`` does not accept a connection."""
    if address == "auto":
        return
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise VitabenchError(f"--ray-address {address!r}; accepted: auto, HOST:PORT, ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise VitabenchError(
            f"--ray-address {address!r}: no Ray cluster answers at {host}:{port} ({reason}); "
            "start one with `ray start --head`, or leave out --ray-address to run Ray on this machine"
        ) from None
