"""The runner's overhead, as ratios measured within one run.

1. With cameras: ``vitabench run`` (one worker process, a policy that asks for agentview + wrist
   at 128 px) against a plain LIBERO ``ControlEnv`` loop rendering the same cameras and stepping
   the same actions (seeded uniform random). Target: at most 1.03x per episode.
2. Without cameras: the same comparison against the simulator's no-render step (no renderer at
   all), for ``random`` asked at every step (target: at most 1.1x) and in chunks of 8, whose
   unobserved steps run in the worker without a message each (target: at most 1.05x).

Each side builds its environment once and runs ``EPISODES`` episodes (reset to the init state,
the protocol's settle steps, then the policy's steps); the two sides alternate ``ROUNDS`` times.
Episodes after the first of each block are compared (the first pays for environment
construction, and the harness's first also for its worker process start): by wall time (the
fastest episode, the one least disturbed by other load on a shared machine, and the median) and
by CPU seconds of all processes involved (the median), which other load disturbs far less. The
ratios and one-time costs are in the benchmark's ``extra_info``.

Run: ``pytest benchmarks/test_bench_runner.py --benchmark-enable -s``.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vitabench.api import PolicySpec
from vitabench.api.protocol import load_protocol
from vitabench.policies.baselines import RandomPolicy
from vitabench.plugins import POLICIES, get_suite
from vitabench.runner import LocalExecutor, run_evaluation
from vitabench.runner.store import RunStore

os.environ.setdefault("MUJOCO_GL", "egl")

SUITE, TASK = "libero_object", 0
EPISODES = 3
ROUNDS = 2
CAMERAS = ("agentview", "robot0_eye_in_hand")
RESOLUTION = 128


class CameraRandomPolicy(RandomPolicy):
    """The ``random`` policy, declaring two 128 px cameras so the environment renders them."""

    def __init__(self) -> None:
        super().__init__()
        self.spec = PolicySpec(cameras=CAMERAS, resolution=RESOLUTION, state_keys=())


POLICIES.register("bench_camera_random", f"{__name__}:CameraRandomPolicy")


@dataclass
class Block:
    """One side's block of ``EPISODES`` episodes: env build time, then per-episode wall and CPU
    seconds (CPU: every process involved, so the harness counts its main process and its worker)."""

    build_s: float
    wall_s: list[float]
    cpu_s: list[float]


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def plain_loop(steps: int, cameras: tuple[str, ...]) -> Block:
    """A bare LIBERO loop (OpenVLA style) with the protocol's reset, settle steps and limit."""
    from libero.libero.envs.env_wrapper import ControlEnv

    from vitabench.envs.libero_env import load_init_states

    protocol = load_protocol("standard")
    task = get_suite(SUITE).task(TASK)
    init_states = load_init_states(task)
    start = time.perf_counter()
    env = ControlEnv(
        bddl_file_name=task.source["bddl_file"],
        use_camera_obs=bool(cameras),
        has_offscreen_renderer=bool(cameras),
        camera_names=list(cameras),
        camera_heights=RESOLUTION,
        camera_widths=RESOLUTION,
        control_freq=protocol.control_freq,
        horizon=steps + protocol.settle_steps + 1,
        ignore_done=True,
        hard_reset=False,
    )
    block = Block(time.perf_counter() - start, [], [])
    settle = np.asarray(protocol.settle_action, dtype=np.float64)
    for episode in range(EPISODES):
        wall, cpu = time.perf_counter(), time.process_time()
        rng = np.random.default_rng(protocol.seed)
        env.seed(protocol.seed)
        env.reset()
        env.set_init_state(init_states[episode])
        for _ in range(protocol.settle_steps):
            env.step(settle)
        for _ in range(steps):
            obs, _, done, _ = env.step(rng.uniform(-1.0, 1.0, size=7))
            for camera in cameras:  # what a policy would be given: the rotated image
                np.ascontiguousarray(obs[f"{camera}_image"][::-1, ::-1])
            if done:
                break
        block.wall_s.append(time.perf_counter() - wall)
        block.cpu_s.append(time.process_time() - cpu)
    env.close()
    return block


class MeasuredExecutor:
    """The local executor (one worker), noting wall and CPU time at every episode end."""

    def __init__(self, lazy_rendering: bool = True) -> None:
        self.inner = LocalExecutor(1, lazy_rendering=lazy_rendering)
        self.marks: list[tuple[float, float]] = []

    def run(self, plan: Any, policy: Any, episodes: Any, sink: Any, video: Any) -> None:
        def measured(result: Any) -> None:
            cpu = time.process_time() + _process_cpu(result.worker["pid"])
            self.marks.append((time.perf_counter(), cpu))
            sink(result)

        self.inner.run(plan, policy, episodes, measured, video)


def harness(
    out: Path, policy: str, steps: int, args: dict[str, Any] | None = None, *, lazy: bool = True, episodes: int = EPISODES
) -> Block:
    """``vitabench run`` (its Python API) with one worker. An episode's time runs from the end
    of the previous one (so it includes recording it); the first episode gives the build time."""
    executor = MeasuredExecutor(lazy)
    run_dir = run_evaluation(
        policy, args or {}, SUITE, tasks=[TASK], episodes_per_task=episodes, max_steps=steps, out=out, executor=executor
    ).run_dir
    records = sorted(RunStore(run_dir).records(), key=lambda r: r.episode_id)
    assert [r.status for r in records] == ["ok"] * episodes
    marks = executor.marks
    return Block(
        float(records[0].extra.get("env_build_s", 0.0)),
        [records[0].wall_s] + [b[0] - a[0] for a, b in zip(marks, marks[1:])],
        [float("nan")] + [b[1] - a[1] for a, b in zip(marks, marks[1:])],
    )


def measure(
    benchmark: Any, name: str, tmp_path: Path, policy: str, steps: int, cameras: tuple[str, ...], target: float, args: dict[str, Any] | None = None
) -> float:
    """Alternate plain and harness blocks ``ROUNDS`` times (the machine is shared: alternation
    spreads background load over both sides); compare the fastest and the median episodes by wall
    time, and the median by CPU time (all processes), which other load disturbs far less."""
    plain: list[Block] = []
    ours: list[Block] = []

    def rounds() -> None:
        for round_ in range(ROUNDS):
            plain.append(plain_loop(steps, cameras))
            ours.append(harness(tmp_path / f"run{round_}", policy, steps, args))

    benchmark.pedantic(rounds, rounds=1, iterations=1)

    def later(blocks: list[Block], field: str) -> list[float]:
        return [t for block in blocks for t in getattr(block, field)[1:]]

    wall_fastest = min(later(ours, "wall_s")) / min(later(plain, "wall_s"))
    wall_median = statistics.median(later(ours, "wall_s")) / statistics.median(later(plain, "wall_s"))
    cpu_median = statistics.median(later(ours, "cpu_s")) / statistics.median(later(plain, "cpu_s"))
    benchmark.extra_info.update(
        {
            "ratio_wall_fastest_episode": round(wall_fastest, 4),
            "ratio_wall_median_episode": round(wall_median, 4),
            "ratio_cpu_median_episode": round(cpu_median, 4),
            "target": target,
            "plain_episode_wall_s": [round(t, 4) for t in later(plain, "wall_s")],
            "harness_episode_wall_s": [round(t, 4) for t in later(ours, "wall_s")],
            "plain_episode_cpu_s": [round(t, 4) for t in later(plain, "cpu_s")],
            "harness_episode_cpu_s": [round(t, 4) for t in later(ours, "cpu_s")],
            "plain_build_s": [round(b.build_s, 3) for b in plain],
            "harness_build_s": [round(b.build_s, 3) for b in ours],
            "harness_first_episode_s": [round(b.wall_s[0], 3) for b in ours],
            "steps_per_episode": steps + load_protocol("standard").settle_steps,
        }
    )
    print(
        f"\n{name} (target <= {target}x): wall fastest {wall_fastest:.3f}x, wall median {wall_median:.3f}x, "
        f"CPU median {cpu_median:.3f}x; plain median {statistics.median(later(plain, 'wall_s')):.3f} s/episode"
    )
    return wall_fastest


@pytest.mark.parametrize("steps", [20])
def test_harness_vs_plain_loop_with_cameras(benchmark: Any, tmp_path: Path, steps: int) -> None:
    ratio = measure(benchmark, "cameras", tmp_path, "bench_camera_random", steps, CAMERAS, 1.03)
    assert ratio < 1.5  # a gross regression (e.g. an encode or a copy per step on the stepping path)


@pytest.mark.parametrize(("chunk", "target"), [(1, 1.1), (8, 1.05)])
def test_camera_free_step_vs_no_render_step(benchmark: Any, tmp_path: Path, chunk: int, target: float) -> None:
    ratio = measure(benchmark, f"camera_free_chunk{chunk}", tmp_path, "random", 200, (), target, {"chunk": chunk})
    assert ratio < 1.5
