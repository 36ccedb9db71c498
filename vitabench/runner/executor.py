"""Executors: where episodes run. They schedule, step and report; they never decide outcomes.

An :class:`Executor` takes the episodes still to run (the manifest decides which init state
and seed each one has) and calls ``sink`` with one :class:`EpisodeResult` per episode, the
moment it ends. The policy stays in the calling process; :class:`LocalExecutor` steps the
environments in worker processes and batches every slot that needs an action at the same
moment into one ``policy.act`` call.

Lazy rendering (the default): a worker renders an observation only when it is used: after the
reset (the settle steps render nothing), after the last action of a chunk, and, for episodes
that record a video, the video's cameras at every step. A chunk goes to its worker as one
``chunk`` command, run there back to back at physics speed. ``lazy_rendering=False`` steps one
action at a time with a full observation each (``step``), as Gymnasium users do; physics,
outcomes and ``state_digest`` are identical either way.
"""

from __future__ import annotations

import multiprocessing.connection
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol as TypingProtocol, Sequence

import numpy as np

from vitabench.api.episode import Episode
from vitabench.api.policy import ACTION_DIM, Policy, PolicySpec, check_actions
from vitabench.api.protocol import Protocol
from vitabench.api.suite import Suite
from vitabench.runner.video import VideoMode, VideoWriter
from vitabench.runner.worker import EnvConfig, WorkerDied, WorkerProcess, traceback_text

#: Extra seconds a reset may take beyond the step timeout (it may build the environment).
BUILD_GRACE_S = 300.0
#: State every environment reports (cheap, no rendering) so a record's ``state_digest`` fingerprints
#: the trajectory whatever the policy asked for and whichever steps were observed; keys the policy
#: did not ask for are not shown to it.
DIGEST_STATE_KEYS: tuple[str, ...] = ("ee_pos", "gripper_qpos")


#: Seconds a worker may take per step (or per chunk step) before it is replaced.
DEFAULT_STEP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RunPlan:
    """What every episode of a run needs, fixed before the first one starts."""

    suite: Suite
    protocol: Protocol
    spec: PolicySpec
    step_timeout: float = DEFAULT_STEP_TIMEOUT_S
    video: VideoMode = VideoMode("none")
    env_kwargs: tuple[tuple[str, Any], ...] = ()

    def step_limit(self, episode: Episode) -> int:
        """The step limit of ``episode`` (:meth:`Suite.step_limit`)."""
        return self.suite.step_limit(self.protocol, episode.task_id)

    def env_config(self, episode: Episode) -> EnvConfig:
        """The environment of ``episode``: the policy's cameras, or the protocol's for a video only;
        the protocol with the episode's domain alone in a domain-set run (a new domain builds a new env)."""
        cameras = self.spec.cameras
        if not cameras and self.video.wanted(episode):
            cameras = self.protocol.cameras
        return EnvConfig(
            entry_point=self.suite.env_entry_point,
            task=self.suite.task(episode.task_id),
            protocol=self.protocol.in_domain(episode.domain),
            cameras=tuple(cameras),
            resolution=self.spec.resolution or self.protocol.resolution,
            state_keys=tuple(dict.fromkeys((*self.spec.state_keys, *DIGEST_STATE_KEYS))),
            privileged=self.spec.privileged,
            max_steps=self.step_limit(episode),
            env_kwargs=self.env_kwargs,
        )


@dataclass(frozen=True)
class EpisodeResult:
    """What an executor reports for one episode; the runner turns it into a record.

    ``extra`` holds ``state_digest`` (``ok`` episodes: a hash of the state after the reset and
    after every step, observed or not, equal digests meaning identical trajectories) and
    ``env_build_s`` (when the episode had to build its environment, which its ``wall_s`` then
    includes), plus every ``extra.KEY`` entry of the ``info`` of the episode's steps, as ``KEY``
    (real-robot envs put the operator's label and its source, e-stops, safety clips and
    control-loop timing there).
    """

    episode: Episode
    status: Literal["ok", "error"]
    success: bool | None
    steps: int
    wall_s: float
    error: str | None
    worker: dict[str, Any]
    video: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Sink = Callable[[EpisodeResult], None]


class Executor(TypingProtocol):
    """Runs ``episodes`` with ``policy`` under ``plan``; calls ``sink`` once per episode as it ends."""

    def run(self, plan: RunPlan, policy: Policy, episodes: Sequence[Episode], sink: Sink, video: VideoWriter | None) -> None:
        ...


@dataclass
class _Running:
    """An episode in progress in one slot."""

    episode: Episode
    started: float
    deadline: float
    step_limit: int
    awaiting: str | None = None  # "reset" | "step" while a reply is due
    limit: float = 0.0  # seconds the due reply may take
    obs: Any = None
    actions: deque = field(default_factory=deque)
    steps: int = 0
    digest: str | None = None  # the worker's state digest of the episode so far
    pid: int | None = None
    done: bool = False
    video: bool = False
    video_cameras: tuple[str, ...] = ()  # rendered at every step of a video episode
    strip_images: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class WorkerHandle(TypingProtocol):
    """The main-process side of one environment worker, as :class:`LockstepLoop` drives it
    (:class:`~vitabench.runner.worker.WorkerProcess` for local processes; another backend
    provides its own). ``send`` starts the worker if needed and raises ``WorkerDied``."""

    slot: int

    @property
    def pid(self) -> int | None: ...

    def send(self, message: tuple) -> None: ...

    def waitables(self) -> list[Any]: ...

    def receive(self) -> tuple: ...

    def kill(self) -> None: ...

    def close(self, timeout: float = 10.0) -> None: ...


class LocalExecutor:
    """``workers`` environment processes on this host, stepped in lockstep; ``lazy_rendering``:
    see the module doc."""

    def __init__(self, workers: int = 1, *, lazy_rendering: bool = True) -> None:
        if workers < 1:
            raise ValueError(f"workers={workers}: must be >= 1")
        self.workers = workers
        self.lazy_rendering = lazy_rendering

    def run(self, plan: RunPlan, policy: Policy, episodes: Sequence[Episode], sink: Sink, video: VideoWriter | None) -> None:
        workers = [WorkerProcess(i) for i in range(min(self.workers, len(episodes)))]
        LockstepLoop(plan, policy, sink, video, workers, lazy_rendering=self.lazy_rendering).run(deque(episodes))


class LockstepLoop:
    """The stepping loop over worker slots, one episode per slot at a time, episodes taken in
    manifest order; every slot that needs an action at the same moment is served by one
    ``policy.act``, and every action of a returned chunk is executed before asking again
    (as one ``chunk`` command with ``lazy_rendering``, else one ``step`` command per action)."""

    def __init__(
        self,
        plan: RunPlan,
        policy: Policy,
        sink: Sink,
        video: VideoWriter | None,
        workers: Sequence[WorkerHandle],
        *,
        lazy_rendering: bool = True,
    ) -> None:
        self.plan, self.policy, self.sink, self.video, self.workers = plan, policy, sink, video, workers
        self.lazy_rendering = lazy_rendering
        self.running: dict[int, _Running] = {}

    def run(self, pending: deque[Episode]) -> None:
        finished = False
        try:
            for slot in range(len(self.workers)):
                self._start_next(slot, pending)
            while self.running:
                self._collect()
                self._refill(pending)
                self._act()
                for slot, run in list(self.running.items()):
                    if run.awaiting is None and run.actions:
                        self._send_actions(slot, run)
                self._refill(pending)
            finished = True
        finally:
            for run in self.running.values():
                if self.video is not None and run.video:
                    self.video.discard(run.episode.episode_id)
            for worker in self.workers:
                if finished:
                    worker.close()
                else:
                    worker.kill()

    def _refill(self, pending: deque[Episode]) -> None:
        """Start the next episode in every slot whose episode has ended."""
        for slot in [s for s, r in self.running.items() if r.done]:
            self._start_next(slot, pending)

    # -- episode lifecycle -------------------------------------------------------------------
    def _start_next(self, slot: int, pending: deque[Episode]) -> None:
        """Give ``slot`` the next pending episode (none left: the slot goes idle)."""
        self.running.pop(slot, None)
        while pending:
            episode = pending.popleft()
            now = time.monotonic()
            run = _Running(episode, started=now, deadline=now, step_limit=self.plan.step_limit(episode))
            run.video = self.video is not None and self.plan.video.wanted(episode)
            run.strip_images = not self.plan.spec.cameras
            self.running[slot] = run
            try:
                self.policy.reset(self.plan.suite.task(episode.task_id), slot=slot, seed=episode.seed)
            except Exception as exc:  # noqa: BLE001 - a policy failure is an episode error
                self._finish(slot, error=f"policy reset failed: {type(exc).__name__}: {exc}", traceback=traceback_text(exc))
                continue
            config = self.plan.env_config(episode)
            run.video_cameras = config.cameras if run.video else ()
            if self._send(slot, ("reset", config, episode.seed, episode.init_state_id, episode.index), "reset", self.plan.step_timeout + BUILD_GRACE_S):
                return

    def _send_actions(self, slot: int, run: _Running) -> None:
        """Send the slot's next queued action (eager), or all of them within the step limit as one
        chunk, observed after its last action unless that action ends the episode (lazy)."""
        run.obs = None  # the observation the queued actions came from is used up
        if not self.lazy_rendering:
            self._send(slot, ("step", run.actions.popleft()), "step", self.plan.step_timeout)
            return
        count = min(len(run.actions), run.step_limit - run.steps)
        actions = np.stack([run.actions.popleft() for _ in range(count)])
        run.actions.clear()
        observe = run.steps + count < run.step_limit
        self._send(slot, ("chunk", actions, observe, run.video_cameras), "step", self.plan.step_timeout * count)

    def _send(self, slot: int, message: tuple, awaiting: str, timeout: float) -> bool:
        run = self.running[slot]
        try:
            self.workers[slot].send(message)
        except WorkerDied as exc:
            self.workers[slot].kill()
            self._finish(slot, error=str(exc))
            return False
        run.awaiting, run.limit, run.deadline = awaiting, timeout, time.monotonic() + timeout
        run.pid = self.workers[slot].pid
        return True

    def _finish(self, slot: int, *, success: bool | None = None, error: str | None = None, traceback: str | None = None) -> None:
        """Record the slot's episode: a success or failure, or an ``error`` (with the
        ``traceback`` of the exception behind it, where there was one, in ``extra``)."""
        run = self.running[slot]
        run.obs, run.awaiting, run.done = None, None, True
        run.actions.clear()
        outcome = "error" if error else ("success" if success else "failure")
        path = None
        if self.video is not None and run.video:
            path = self.video.finish(run.episode.episode_id, outcome)
            run.video = False
        extra = dict(run.extra)
        if error is None:
            extra["state_digest"] = run.digest
        elif traceback is not None:
            extra["traceback"] = traceback
        self.sink(
            EpisodeResult(
                episode=run.episode,
                status="error" if error else "ok",
                success=None if error else bool(success),
                steps=run.steps,
                wall_s=round(time.monotonic() - run.started, 4),
                error=error,
                worker={"pid": run.pid, "slot": slot},
                video=path,
                extra=extra,
            )
        )

    # -- replies ------------------------------------------------------------------------------
    def _collect(self) -> None:
        """Take replies: every due step reply and at least one reply; when only resets are due
        (the start of a run), all of them, so the first ``act`` serves every slot at once."""
        progressed = False
        only_resets = all(r.awaiting != "step" for r in self.running.values())
        while True:
            due = {s: r for s, r in self.running.items() if r.awaiting is not None}
            if not due or (progressed and not only_resets and all(r.awaiting == "reset" for r in due.values())):
                return
            waitables = {w: s for s in due for w in self.workers[s].waitables()}
            timeout = max(0.0, min(r.deadline for r in due.values()) - time.monotonic())
            for slot in sorted({waitables[w] for w in multiprocessing.connection.wait(list(waitables), timeout)}):
                if self.running[slot].awaiting is not None:
                    self._receive(slot)
                    progressed = True
            now = time.monotonic()
            for slot, run in list(self.running.items()):
                if run.awaiting is not None and now >= run.deadline:
                    self.workers[slot].kill()
                    self._finish(slot, error=f"worker pid {run.pid}: no {run.awaiting} reply within {run.limit:g} s (step timeout)")
                    progressed = True

    def _receive(self, slot: int) -> None:
        run = self.running[slot]
        worker = self.workers[slot]
        try:
            reply = worker.receive()
        except WorkerDied as exc:
            worker.kill()
            self._finish(slot, error=str(exc))
            return
        run.awaiting = None
        kind = reply[0]
        if kind == "error":
            self._finish(slot, error=f"environment {reply[1]}", traceback=reply[2])
            return
        if kind == "reset":
            _, obs, info, build_s, run.digest = reply
            if build_s:
                run.extra["env_build_s"] = round(build_s, 3)
            self._record_frames(run, [obs.get("images", {})])
            self._observe(run, obs)
            return
        if kind == "step":
            _, obs, _reward, terminated, truncated, info, run.digest = reply
            steps, frames = 1, [obs.get("images", {})]
        else:  # "chunk"
            _, obs, steps, terminated, truncated, info, frames, run.digest = reply
        run.steps += steps
        self._record_frames(run, frames)
        run.extra.update({k.removeprefix("extra."): v for k, v in info.items() if k.startswith("extra.")})
        if terminated or truncated or run.steps >= run.step_limit:
            self._finish(slot, success=bool(info.get("success", False)))
        elif obs is not None:
            self._observe(run, obs)

    def _record_frames(self, run: _Running, frames: Sequence[dict[str, np.ndarray]]) -> None:
        if run.video and self.video is not None:
            for images in frames:
                self.video.frame(run.episode.episode_id, images)

    def _observe(self, run: _Running, obs: dict[str, Any]) -> None:
        """Keep ``obs`` for the next ``act``, without what the policy did not ask for."""
        state = obs.get("state", {})
        wanted = self.plan.spec.state_keys
        if len(state) != len(wanted):
            obs = {**obs, "state": {k: state[k] for k in wanted if k in state}}
        if run.strip_images and obs.get("images"):
            obs = {**obs, "images": {}}
        run.obs = obs

    # -- actions ------------------------------------------------------------------------------
    def _act(self) -> None:
        """One ``policy.act`` for every slot that has an observation and no queued action."""
        slots = [s for s, r in sorted(self.running.items()) if r.awaiting is None and r.obs is not None and not r.actions]
        if not slots:
            return
        try:
            actions = self.policy.act([self.running[s].obs for s in slots], slots)
            array = np.asarray(actions, dtype=np.float32)
            array = array[:, None, :] if array.ndim == 2 else array
            if array.ndim != 3 or array.shape[0] != len(slots) or array.shape[1] < 1 or array.shape[2] != ACTION_DIM:
                check_actions(actions, len(slots))  # raises, naming the shape
        except Exception as exc:  # noqa: BLE001 - a policy failure is an episode error
            for slot in slots:
                self._finish(slot, error=f"policy act failed: {type(exc).__name__}: {exc}", traceback=traceback_text(exc))
            return
        for row, slot in enumerate(slots):
            try:  # one slot's non-finite action does not end the others' episodes
                self.running[slot].actions.extend(check_actions(array[row : row + 1], 1)[0])
            except ValueError as exc:
                self._finish(slot, error=f"policy act failed: {exc}")
