"""Health checks: rendering, simulator versions, and that every init state loads into a settled scene."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from typing import Callable, Iterable

import numpy as np

from vitabench.api.protocol import Protocol

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
        "from vitabench.registry import get_suite\n"
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


def installed_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed distribution versions (None when absent)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


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
    from vitabench.registry import get_suite

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
