"""The runner's real path and LIBERO's own loop, timed on one environment instance.

Fresh LIBERO env instances of one task do not run at one speed: the raw camera-free loop's
median episode differs by 1.36-1.6x from one instance to the next, far more than within one
(``env_instance_speed.py`` shows it). A harness-vs-raw ratio taken between the harness's worker
env and a separately built raw env therefore measures which instance was faster as much as it
measures the harness. Here both sides run on the same instance:

* :class:`SharedWorker` is one env worker process that serves several ``vitabench run``s in a
  row (the runner's ``close`` at the end of a run leaves it, as ``tests/runner/test_lazy_rendering.py``'s
  kept worker) and is only replaced if a run kills it. It runs the runner's worker loop
  (:func:`vitabench.runner.worker.worker_main`, unchanged) with :class:`RawLoopHost` as its host:
  the runner's :class:`~vitabench.runner.worker.EnvHost`, which answers one more command,
  ``("raw", steps, cameras, episodes)``. Every other command goes to ``EnvHost.handle`` as is.
* The harness side (:func:`harness`) is ``run_evaluation`` (plan, manifest, record store, the
  runner's :class:`~vitabench.runner.executor.LockstepLoop`, the policy in this process, pipe
  messages, the worker loop, ``EnvHost``, ``LiberoEnv``) with an executor that is
  :class:`~vitabench.runner.LocalExecutor`'s ``run`` on that worker. Since every run asks for the
  same :class:`~vitabench.runner.worker.EnvConfig`, ``EnvHost`` keeps its env from run to run;
  :func:`harness` checks that none was rebuilt.
* The raw side (:func:`raw_episodes`) is the loop a user writes with LIBERO's own API, run inside
  that worker process on the LIBERO ``ControlEnv`` the harness's ``LiberoEnv`` wraps
  (``env.seed``, ``env.reset``, ``env.set_init_state``, the settle steps, ``env.step`` of seeded
  uniform actions; no vitabench code in the loop). The ``ControlEnv`` is built with the
  arguments a user's loop would give (``LiberoEnv._make_sim``: those of :func:`plain_loop`).
  LiberoEnv switches off the robosuite observables its observations do not read (LIBERO's
  per-object poses, ...); the raw block switches every one back on while it runs, as a user's
  ``ControlEnv`` computes them all, and off again after. With cameras, each
  camera's robosuite sensor is wrapped by ``LiberoEnv`` in a one-line check (render if wanted);
  outside LiberoEnv's calls every camera is wanted, so the raw loop renders every camera at
  every step as robosuite does, through one extra Python call per camera and step (about a
  microsecond against tens of milliseconds per frame: in the raw loop's disfavour, if anything).

What stays different between the sides is what the comparison is about: the harness's episode
also contains the policy's ``reset`` and ``act`` (``random``: microseconds), its messages, its
bookkeeping (``LiberoEnv``'s fixture-draw reset rule, state digest) and the record written at
the end of the previous episode. Wall and CPU seconds of the raw side are measured in the worker
process; the harness's between the ends of consecutive episodes, CPU summed over the main and
the worker process.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vitabench.api.protocol import load_protocol
from vitabench.plugins import get_suite
from vitabench.runner import LocalExecutor, run_evaluation
from vitabench.runner.executor import LockstepLoop
from vitabench.runner.store import RunStore
from vitabench.runner.worker import EnvHost, WorkerProcess

os.environ.setdefault("MUJOCO_GL", "egl")

SUITE, TASK = "libero_object", 0


@dataclass
class Block:
    """One side's block of episodes: env build time, then per-episode wall and CPU seconds
    (CPU: every process involved, so the harness counts its main process and its worker)."""

    build_s: float
    wall_s: list[float]
    cpu_s: list[float]
    digests: tuple[str, ...] = field(default=())


def later(blocks: list[Block], field: str) -> list[float]:
    """Every episode but the first of each block."""
    return [t for block in blocks for t in getattr(block, field)[1:]]


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_episodes(env: Any, steps: int, cameras: tuple[str, ...], episodes: int) -> Block:
    """LIBERO's own loop (OpenVLA / openpi style) on a LIBERO ``ControlEnv``: per episode, seed,
    reset, init state ``episode``, the ``standard`` protocol's settle steps, then ``steps`` seeded
    uniform actions (those ``random`` plays with the protocol's seed, as float32), each camera's
    image rotated as a policy would be given it. Wall and CPU seconds of this process per episode."""
    protocol = load_protocol("standard")
    from vitabench.envs.libero_env import load_init_states

    init_states = load_init_states(get_suite(SUITE).task(TASK))
    settle = np.asarray(protocol.settle_action, dtype=np.float64)
    block = Block(0.0, [], [])
    for episode in range(episodes):
        wall, cpu = time.perf_counter(), time.process_time()
        rng = np.random.default_rng(protocol.seed)
        env.seed(protocol.seed)
        env.reset()
        env.set_init_state(init_states[episode])
        for _ in range(protocol.settle_steps):
            env.step(settle)
        for _ in range(steps):
            obs, _, done, _ = env.step(rng.uniform(-1.0, 1.0, size=7).astype(np.float32))
            for camera in cameras:  # what a policy would be given: the rotated image
                np.ascontiguousarray(obs[f"{camera}_image"][::-1, ::-1])
            if done:
                break
        block.wall_s.append(time.perf_counter() - wall)
        block.cpu_s.append(time.process_time() - cpu)
    return block


def plain_loop(steps: int, cameras: tuple[str, ...], episodes: int = 3, resolution: int = 128) -> Block:
    """:func:`raw_episodes` on a ``ControlEnv`` of its own, built here as a user's loop builds it."""
    from libero.libero.envs.env_wrapper import ControlEnv

    protocol = load_protocol("standard")
    task = get_suite(SUITE).task(TASK)
    start = time.perf_counter()
    env = ControlEnv(
        bddl_file_name=task.source["bddl_file"],
        use_camera_obs=bool(cameras),
        has_offscreen_renderer=bool(cameras),
        camera_names=list(cameras),
        camera_heights=resolution,
        camera_widths=resolution,
        control_freq=protocol.control_freq,
        horizon=steps + protocol.settle_steps + 1,
        ignore_done=True,
        hard_reset=False,
    )
    build_s = time.perf_counter() - start
    try:
        block = raw_episodes(env, steps, cameras, episodes)
    finally:
        env.close()
    block.build_s = build_s
    return block


class RawLoopHost(EnvHost):
    """The runner's ``EnvHost``, answering also ``("raw", steps, cameras, episodes)`` with
    ``("raw", wall_s, cpu_s)``: :func:`raw_episodes` on the ``ControlEnv`` of its current env."""

    def handle(self, message: tuple) -> tuple:
        if message[0] != "raw":
            return super().handle(message)
        if self.env is None:
            return ("error", "RuntimeError: no env yet: run the harness once first (it builds the env)")
        steps, cameras, episodes = message[1:]
        observables = self.env.sim_env.env._observables.values()
        harness_on = [observable.is_enabled() for observable in observables]
        for observable in observables:  # a user's ControlEnv computes every observable
            observable.set_enabled(True)
        try:
            block = raw_episodes(self.env.sim_env, steps, tuple(cameras), episodes)
        finally:
            for observable, on in zip(observables, harness_on):
                observable.set_enabled(on)
        return ("raw", block.wall_s, block.cpu_s)


class SharedWorker(WorkerProcess):
    """An env worker process answering with :class:`RawLoopHost` that outlives runs: the runner's
    ``close`` at the end of a run leaves it and its env for the next run or raw block; ``kill``
    (a failed run) still replaces it. :meth:`shutdown` ends it."""

    host_type = RawLoopHost

    def __init__(self, slot: int = 0) -> None:
        super().__init__(slot)
        self.starts = 0

    def _start(self) -> None:
        super()._start()
        self.starts += 1

    def close(self, timeout: float = 10.0) -> None:
        pass

    def shutdown(self) -> None:
        super().close()

    def raw(self, steps: int, cameras: tuple[str, ...], episodes: int) -> Block:
        """A raw-loop block on this worker's env (the harness must have built it)."""
        self.send(("raw", steps, tuple(cameras), episodes))
        reply = self.receive()
        if reply[0] != "raw":
            raise RuntimeError(f"raw loop failed in the worker: {reply}")
        return Block(0.0, list(reply[1]), list(reply[2]))


class SharedWorkerExecutor(LocalExecutor):
    """``LocalExecutor.run`` on a :class:`SharedWorker`, noting wall and CPU time (main process
    and worker) at every episode end."""

    def __init__(self, worker: SharedWorker, *, lazy_rendering: bool = True) -> None:
        super().__init__(1, lazy_rendering=lazy_rendering)
        self.worker = worker
        self.marks: list[tuple[float, float]] = []

    def run(self, plan: Any, policy: Any, episodes: Any, sink: Any, video: Any) -> None:
        def measured(result: Any) -> None:
            cpu = time.process_time() + process_cpu(result.worker["pid"])
            self.marks.append((time.perf_counter(), cpu))
            sink(result)

        LockstepLoop(plan, policy, measured, video, [self.worker], lazy_rendering=self.lazy_rendering).run(deque(episodes))


def harness(
    out: Path,
    worker: SharedWorker,
    policy: str,
    steps: int,
    args: dict[str, Any] | None = None,
    *,
    lazy: bool = True,
    episodes: int = 3,
    build: bool = False,
) -> Block:
    """``vitabench run`` (its Python API) on ``worker``. An episode's time runs from the end of
    the previous one (so it includes recording it); the first episode has its record's wall time
    (``nan`` CPU). ``build``: this run may build the worker's env (the first on a worker); any
    other run must find it built."""
    executor = SharedWorkerExecutor(worker, lazy_rendering=lazy)
    run_dir = run_evaluation(
        policy, args or {}, SUITE, tasks=[TASK], episodes_per_task=episodes, max_steps=steps, out=out, executor=executor
    ).run_dir
    records = sorted(RunStore(run_dir).records(), key=lambda r: r.episode_id)
    assert [r.status for r in records] == ["ok"] * episodes, [r.error for r in records]
    built = [r.episode_id for r in records if "env_build_s" in r.extra]
    assert worker.starts == 1 and (build or not built), f"the env was rebuilt (episodes {built}, {worker.starts} worker starts)"
    marks = executor.marks
    return Block(
        float(records[0].extra.get("env_build_s", 0.0)),
        [records[0].wall_s] + [b[0] - a[0] for a, b in zip(marks, marks[1:])],
        [float("nan")] + [b[1] - a[1] for a, b in zip(marks, marks[1:])],
        tuple(r.extra["state_digest"] for r in records),
    )
