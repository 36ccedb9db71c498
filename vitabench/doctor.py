"""Health checks: rendering, simulator versions, and that every init state loads into a settled
scene; and :func:`profile_steps`, where a step's time goes on this machine."""

from __future__ import annotations

import math
import multiprocessing as mp
import multiprocessing.connection
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from vitabench.api.protocol import Protocol
from vitabench.api.suite import step_limit
from vitabench.provenance import installed_versions

#: LIBERO init states hold objects a few cm above their supports; they drop during the settle
#: steps. A scene is settled when, after them, no object slid sideways more than this ...
LATERAL_TOLERANCE_M = 0.03
#: ... every object is at rest (linear speed below this) ...
REST_SPEED_MS = 0.05
#: ... and no object fell through the floor (root bodies of floor-standing objects sit a few mm below 0).
FLOOR_Z_M = -0.05


@dataclass(frozen=True)
class CheckResult:
    """One named check: passed or not, and what it found."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class InitStateReport:
    """How one task's init states behaved during the settle steps."""

    suite: str
    task_id: int
    n_states: int
    unsettled: tuple[int, ...]
    findings: tuple[str, ...]  # what made each unsettled state unsettled
    errors: tuple[str, ...]
    worst_displacement_m: float  # largest sideways move of any object over the settle steps
    worst_object: str
    wall_s: float
    displacements: tuple[float, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return not self.unsettled and not self.errors


def check_rendering(timeout_s: float = 120.0) -> CheckResult:
    """Render one LIBERO frame in a fresh process (so a hanging GL driver cannot hang us)."""
    from vitabench.envs.rendering import ensure_gl_backend

    backend = ensure_gl_backend()
    code = (
        "from vitabench.plugins import get_suite\n"
        "from vitabench.api.protocol import load_protocol\n"
        "from vitabench.envs.libero_env import LiberoEnv\n"
        "env = LiberoEnv(get_suite('libero_object').task(0), load_protocol('standard'),"
        " cameras=('agentview',), resolution=64)\n"
        "obs, _ = env.reset(options={'init_state': 0})\n"
        "img = obs['images']['agentview']\n"
        "print(img.shape, float(img.std()))\n"
        "env.close()\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s, env=dict(os.environ)
        )
    except subprocess.TimeoutExpired:
        return CheckResult(
            "rendering", False, f"rendering hung for {timeout_s:.0f} s with MUJOCO_GL={backend}; try MUJOCO_GL=egl or osmesa"
        )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return CheckResult("rendering", False, f"rendering failed with MUJOCO_GL={backend}: {last}")
    shape, std = proc.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    if float(std) < 1.0:
        return CheckResult("rendering", False, f"MUJOCO_GL={backend} rendered a blank {shape} image")
    return CheckResult("rendering", True, f"MUJOCO_GL={backend} rendered a {shape} image (pixel std {float(std):.1f})")


def check_versions(protocol: Protocol) -> CheckResult:
    """The simulator stack installed against the one the protocol was defined on."""
    installed = installed_versions(protocol.simulator)
    diffs = [f"{n} {installed[n]} (protocol: {v})" for n, v in protocol.simulator.items() if installed[n] != v]
    if diffs:
        return CheckResult("versions", False, f"{protocol.name}: " + "; ".join(diffs))
    return CheckResult("versions", True, ", ".join(f"{n} {v}" for n, v in protocol.simulator.items()))


def check_task_init_states(suite_name: str, task_id: int, protocol: Protocol, states: tuple[int, ...] | None = None) -> InitStateReport:
    """Load each init state, run the protocol's settle steps, and check the scene came to rest.

    Unsettled: an object slid sideways more than ``LATERAL_TOLERANCE_M``, still moves faster
    than ``REST_SPEED_MS``, or fell below the floor.
    """
    from vitabench.envs.libero_env import LiberoEnv
    from vitabench.plugins import get_suite

    started = time.perf_counter()
    task = get_suite(suite_name).task(task_id)
    env = LiberoEnv(task, protocol)
    sim_env = env.sim_env
    sim = sim_env.sim
    bodies = {
        name: sim.model.body_name2id(obj.root_body)
        for name, obj in sim_env.env.objects_dict.items()
    }
    ids = range(len(env.init_states)) if states is None else states
    unsettled, findings, errors, displacements = [], [], [], []
    worst, worst_object = 0.0, ""
    try:
        for index in ids:
            try:
                env.restore_init_state(index, seed=protocol.seed)
                start = {n: sim.data.body_xpos[b].copy() for n, b in bodies.items()}
                env.settle()
                moved = {n: float(np.linalg.norm(sim.data.body_xpos[b][:2] - start[n][:2])) for n, b in bodies.items()}
                speeds = {n: float(np.linalg.norm(sim.data.cvel[b][3:])) for n, b in bodies.items()}
                heights = {n: float(sim.data.body_xpos[b][2]) for n, b in bodies.items()}
            except Exception as exc:  # a state that cannot be loaded is a finding, not a crash
                errors.append(f"init state {index}: {type(exc).__name__}: {exc}")
                continue
            name, distance = max(moved.items(), key=lambda kv: kv[1], default=("", 0.0))
            displacements.append(distance)
            if distance > worst:
                worst, worst_object = distance, name
            problems = [f"{n} slid {d * 100:.1f} cm" for n, d in moved.items() if d > LATERAL_TOLERANCE_M]
            problems += [f"{n} still moving at {v:.2f} m/s" for n, v in speeds.items() if v > REST_SPEED_MS]
            problems += [f"{n} fell to z={z:.2f} m" for n, z in heights.items() if z < FLOOR_Z_M]
            if problems:
                unsettled.append(index)
                findings.append(f"init state {index}: " + ", ".join(problems))
    finally:
        env.close()
    return InitStateReport(
        suite=suite_name,
        task_id=task_id,
        n_states=len(ids),
        unsettled=tuple(unsettled),
        findings=tuple(findings),
        errors=tuple(errors),
        worst_displacement_m=worst,
        worst_object=worst_object,
        wall_s=time.perf_counter() - started,
        displacements=tuple(displacements),
    )


def check_init_states(
    jobs: list[tuple[str, int]],
    protocol: Protocol,
    workers: int = 1,
    states: tuple[int, ...] | None = None,
    on_result: Callable[[InitStateReport], None] | None = None,
) -> list[InitStateReport]:
    """Check many (suite, task) pairs, in ``workers`` spawned processes; results in job order."""
    results: dict[tuple[str, int], InitStateReport] = {}
    if workers <= 1:
        for suite_name, task_id in jobs:
            report = check_task_init_states(suite_name, task_id, protocol, states)
            results[(suite_name, task_id)] = report
            if on_result:
                on_result(report)
    else:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(check_task_init_states, s, t, protocol, states) for s, t in jobs]
            for future in futures:
                report = future.result()
                results[(report.suite, report.task_id)] = report
                if on_result:
                    on_result(report)
    return [results[job] for job in jobs]


# -- step profile -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepProfile:
    """Where the time of a LIBERO episode goes on this machine (medians, milliseconds).

    ``physics_ms``: one control step, nothing rendered; ``reset_ms``: a reset with its settle
    steps, less the rendering of its observation; ``render_ms[(camera, resolution)]``: one frame;
    ``messaging_ms[payload]``: one command and its reply between two processes (``state``: an
    observation without images; ``N x R px``: with N camera images of R x R); ``policy_ms``: one
    ``act`` on one observation (when a policy was profiled).
    """

    suite: str
    protocol: str
    max_steps: int
    gl: str
    physics_ms: float
    reset_ms: float
    render_ms: dict[tuple[str, int], float]
    messaging_ms: dict[str, float]
    policy: str | None = None
    policy_ms: float | None = None

    def frame_ms(self, cameras: tuple[str, ...], resolution: int) -> float:
        """Rendering one observation of ``cameras`` at ``resolution``."""
        return sum(self.render_ms[(camera, resolution)] for camera in cameras)

    def episode_s(self, chunk: int, cameras: tuple[str, ...], resolution: int) -> float:
        """Expected wall seconds of an episode that runs to the step limit, with lazy rendering:
        the reset, every step's physics, and per query (one per chunk) a rendered observation,
        its message and the policy's ``act``."""
        payload = f"{len(cameras)} x {resolution} px" if cameras else "state"
        per_query = self.frame_ms(cameras, resolution) + self.messaging_ms[payload] + (self.policy_ms or 0.0)
        queries = math.ceil(self.max_steps / chunk)
        return (self.reset_ms + self.max_steps * self.physics_ms + queries * per_query) / 1000.0

    def lines(self, chunks: tuple[int, ...] = (1, 5, 8)) -> list[str]:
        """The profile as text: the costs, then episodes per hour per environment worker (one core)."""
        out = [
            f"{self.suite} under {self.protocol} ({self.max_steps} steps), rendering: {self.gl}",
            f"physics            {self.physics_ms:8.2f} ms per step (nothing rendered)",
            f"reset              {self.reset_ms:8.2f} ms (settle steps; its observation not counted)",
        ]
        out += [f"render {cam} {res} px".ljust(19) + f"{ms:8.2f} ms per frame" for (cam, res), ms in self.render_ms.items()]
        out += [f"messaging {payload}".ljust(19) + f"{ms:8.2f} ms per round trip" for payload, ms in self.messaging_ms.items()]
        if self.policy_ms is not None:
            out.append(f"policy {self.policy}".ljust(19) + f"{self.policy_ms:8.2f} ms per act")
        cameras = tuple(dict.fromkeys(cam for cam, _ in self.render_ms))
        setups = [(cameras, res, f"{len(cameras)} x {res} px") for res in sorted({res for _, res in self.render_ms})]
        for setup_cameras, resolution, name in [*setups, ((), 0, "no camera")]:
            rates = ", ".join(f"chunk {k}: {3600 / self.episode_s(k, setup_cameras, resolution):.0f}" for k in chunks)
            out.append(f"episodes per hour per core, {name}: {rates}")
        return out


def _reply_worker(conn: multiprocessing.connection.Connection) -> None:
    """Answer every message with the payload received first; ``None`` ends the loop."""
    payload = conn.recv()
    while conn.recv() is not None:
        conn.send(payload)


def _messaging_ms(payloads: dict[str, Any], rounds: int) -> dict[str, float]:
    """Median round trip of a step command and a reply carrying each payload, through a spawned process."""
    context = mp.get_context("spawn")
    result = {}
    for name, payload in payloads.items():
        parent, child = context.Pipe(duplex=True)
        process = context.Process(target=_reply_worker, args=(child,), daemon=True)
        process.start()
        child.close()
        try:
            parent.send(payload)
            action = np.zeros(7, dtype=np.float32)
            times = []
            for _ in range(rounds + 1):
                start = time.perf_counter()
                parent.send(("step", action))
                parent.recv()
                times.append(time.perf_counter() - start)
            result[name] = statistics.median(times[1:]) * 1000.0
            parent.send(None)
        finally:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
            parent.close()
    return result


def _gl_renderer() -> str:
    """``MUJOCO_GL`` and, when a GL context is current, the GL renderer (llvmpipe = software)."""
    description = f"MUJOCO_GL={os.environ.get('MUJOCO_GL', '<unset>')}"
    if "MUJOCO_EGL_DEVICE_ID" in os.environ:
        description += f" MUJOCO_EGL_DEVICE_ID={os.environ['MUJOCO_EGL_DEVICE_ID']}"
    try:
        from OpenGL import GL

        renderer = GL.glGetString(GL.GL_RENDERER)
    except Exception:  # noqa: BLE001 - no current context or no PyOpenGL: the backend alone
        return description
    return f"{description} ({renderer.decode() if isinstance(renderer, bytes) else renderer})"


def profile_steps(
    protocol: Protocol,
    suite_name: str = "libero_object",
    task_id: int = 0,
    *,
    cameras: tuple[str, ...] | None = None,
    resolutions: tuple[int, ...] = (128, 256),
    steps: int = 30,
    frames: int = 5,
    rounds: int = 50,
    policy: str | None = None,
    policy_args: dict[str, Any] | None = None,
) -> StepProfile:
    """Measure a step's parts on this machine: physics (``steps`` random actions, nothing
    rendered), one frame per camera and resolution (``frames`` each), a reset, messages between
    processes (``rounds`` each) and, given a registered ``policy``, its ``act`` on a real
    observation. Cameras: ``cameras``, else the policy's, else the protocol's."""
    from vitabench.envs.libero_env import LiberoEnv
    from vitabench.envs.rendering import ensure_gl_backend
    from vitabench.plugins import get_suite, make_policy

    ensure_gl_backend()
    task = get_suite(suite_name).task(task_id)
    agent = make_policy(policy, **(policy_args or {})) if policy else None
    cameras = cameras or (agent.spec.cameras if agent is not None and agent.spec.cameras else protocol.cameras)
    env_resolution = (agent.spec.resolution if agent is not None else None) or max(resolutions)
    resolutions = tuple(sorted({*resolutions, env_resolution}))
    env = LiberoEnv(
        task,
        protocol,
        cameras=cameras,
        resolution=env_resolution,
        state_keys=agent.spec.state_keys if agent is not None else ("ee_pos", "gripper_qpos"),
        privileged=agent is not None and agent.spec.privileged,
    )
    try:
        reset_times = []
        for index in range(2):
            start = time.perf_counter()
            obs, _ = env.reset(seed=protocol.seed, options={"init_state": index})
            reset_times.append(time.perf_counter() - start)
        actions = np.random.default_rng(protocol.seed).uniform(-1.0, 1.0, (steps, 7))
        physics = []
        for action in actions:
            start = time.perf_counter()
            env.step_unobserved(action)
            physics.append(time.perf_counter() - start)
        sim = env.sim_env.sim
        render_ms = {}
        for camera in cameras:
            for resolution in resolutions:
                sim.render(camera_name=camera, width=resolution, height=resolution)  # sizes the buffer
                times = []
                for _ in range(frames):
                    start = time.perf_counter()
                    sim.render(camera_name=camera, width=resolution, height=resolution)
                    times.append(time.perf_counter() - start)
                render_ms[(camera, resolution)] = statistics.median(times) * 1000.0
        gl = _gl_renderer()
        policy_ms = None
        if agent is not None:
            agent.reset(task, slot=0, seed=protocol.seed)
            times = []
            for _ in range(frames):
                start = time.perf_counter()
                agent.act([obs], [0])
                times.append(time.perf_counter() - start)
            policy_ms = statistics.median(times) * 1000.0
    finally:
        env.close()
    state = {"state": {k: v.copy() for k, v in obs["state"].items()}, "instruction": task.instruction}
    payloads: dict[str, Any] = {"state": state}
    for resolution in resolutions:
        images = {camera: np.zeros((resolution, resolution, 3), np.uint8) for camera in cameras}
        payloads[f"{len(cameras)} x {resolution} px"] = {**state, "images": images}
    reset_frame_ms = sum(render_ms[(camera, env_resolution)] for camera in cameras)
    return StepProfile(
        suite=suite_name,
        protocol=protocol.name,
        max_steps=step_limit(protocol, task),
        gl=gl,
        physics_ms=statistics.median(physics) * 1000.0,
        reset_ms=min(reset_times) * 1000.0 - reset_frame_ms,
        render_ms=render_ms,
        messaging_ms=_messaging_ms(payloads, rounds),
        policy=policy,
        policy_ms=policy_ms,
    )
