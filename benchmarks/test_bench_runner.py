"""The runner's overhead against LIBERO's own loop, as ratios measured within one run, on the
same environment instances.

1. With cameras: ``vitabench run`` (a policy that asks for agentview + wrist at 128 px) against
   LIBERO's own loop rendering the same cameras and stepping the same actions (seeded uniform
   random). Target: at most 1.03x per episode.
2. Without cameras: the same comparison against LIBERO's no-render loop (the env built without
   a renderer), for ``random`` asked at every step (target: at most 1.1x) and in chunks of 8,
   whose unobserved steps run in the worker without a message each (target: at most 1.05x).

Method (see ``same_instance.py``). A LIBERO env instance's speed varies by 1.36-1.6x from one
fresh instance to the next (``env_instance_speed.py``), so the raw loop and the harness run on
the same instance: one env worker process, kept across runs, holds the harness's ``LiberoEnv``;
the raw loop is LIBERO's own API on the ``ControlEnv`` inside it, run in that process.

* ``INSTANCES`` env instances, each in a fresh worker process. On each: one harness episode
  that builds the env (not measured), then ``ROUNDS`` rounds of one raw block and one harness
  block of ``EPISODES`` episodes each, in alternating order (raw first in even rounds, harness
  first in odd ones), so slow drift and background load fall on both sides alike.
* The harness block is the real runner path: ``run_evaluation`` with one worker (the runner's
  ``LockstepLoop``, its pipe messages, the worker loop, ``EnvHost``, ``LiberoEnv``), the policy
  in the main process; no env is rebuilt (checked), and every harness block gives the same
  state digests (checked: the raw loop in between leaves no trace on the harness's episodes).
* The raw block is the loop a user writes: ``env.seed``, ``env.reset``, ``env.set_init_state``,
  the protocol's settle steps, ``env.step`` (``standard``'s seed, init states 0, 1, ...).
* The first episode of each block is left out (its timing has no previous episode end to start
  from). Per instance: the ratio of the harness's median episode to the raw loop's, by wall
  time and by CPU seconds (raw: the worker process; harness: main + worker process), and of
  the fastest episodes by wall time. The reported ratio is the median over instances of these
  per-instance ratios; every instance's ratios and medians are in ``extra_info`` (the raw
  medians show how far the instances differ, which the pairing cancels).

Run: ``pytest benchmarks/test_bench_runner.py --benchmark-enable -s``.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest
from same_instance import Block, SharedWorker, harness, later

from vitabench.api import PolicySpec
from vitabench.api.protocol import load_protocol
from vitabench.policies.baselines import RandomPolicy
from vitabench.plugins import POLICIES

INSTANCES = 3
ROUNDS = 2
EPISODES = 3
CAMERAS = ("agentview", "robot0_eye_in_hand")
RESOLUTION = 128


class CameraRandomPolicy(RandomPolicy):
    """The ``random`` policy, declaring two 128 px cameras so the environment renders them."""

    def __init__(self) -> None:
        super().__init__()
        self.spec = PolicySpec(cameras=CAMERAS, resolution=RESOLUTION, state_keys=())


POLICIES.register("bench_camera_random", f"{__name__}:CameraRandomPolicy")


def instance(tmp: Path, policy: str, steps: int, cameras: tuple[str, ...], args: dict[str, Any] | None) -> dict[str, Any]:
    """One env instance (a fresh worker process): the build run, then ``ROUNDS`` alternating
    raw and harness blocks on it; its per-episode times, ratios and harness digests."""
    worker = SharedWorker()
    raw: list[Block] = []
    ours: list[Block] = []
    try:
        build = harness(tmp / "build", worker, policy, steps, args, episodes=1, build=True)
        for round_ in range(ROUNDS):
            sides = ("raw", "harness") if round_ % 2 == 0 else ("harness", "raw")
            for side in sides:
                if side == "raw":
                    raw.append(worker.raw(steps, cameras, EPISODES))
                else:
                    ours.append(harness(tmp / f"run{round_}", worker, policy, steps, args, episodes=EPISODES))
    finally:
        worker.shutdown()
    digests = {block.digests for block in ours}
    assert len(digests) == 1, digests  # the raw blocks in between leave the harness's episodes as they were
    wall_raw, wall_ours = later(raw, "wall_s"), later(ours, "wall_s")
    cpu_raw, cpu_ours = later(raw, "cpu_s"), later(ours, "cpu_s")
    return {
        "ratio_wall_median": statistics.median(wall_ours) / statistics.median(wall_raw),
        "ratio_wall_fastest": min(wall_ours) / min(wall_raw),
        "ratio_cpu_median": statistics.median(cpu_ours) / statistics.median(cpu_raw),
        "raw_median_wall_s": statistics.median(wall_raw),
        "harness_median_wall_s": statistics.median(wall_ours),
        "raw_episode_wall_s": [round(t, 4) for t in wall_raw],
        "harness_episode_wall_s": [round(t, 4) for t in wall_ours],
        "raw_episode_cpu_s": [round(t, 4) for t in cpu_raw],
        "harness_episode_cpu_s": [round(t, 4) for t in cpu_ours],
        "build_s": round(build.build_s, 3),
        "digests": next(iter(digests)),
    }


def measure(
    benchmark: Any, name: str, tmp_path: Path, policy: str, steps: int, cameras: tuple[str, ...], target: float, args: dict[str, Any] | None = None
) -> float:
    """``INSTANCES`` paired comparisons (see the module doc); the median over instances of the
    per-instance ratio of median episodes by wall time (returned), and of the other ratios."""
    instances: list[dict[str, Any]] = []

    def rounds() -> None:
        for index in range(INSTANCES):
            instances.append(instance(tmp_path / f"instance{index}", policy, steps, cameras, args))

    benchmark.pedantic(rounds, rounds=1, iterations=1)

    assert len({i["digests"] for i in instances}) == 1  # every instance runs the same episodes
    ratios = {
        key: statistics.median(i[key] for i in instances) for key in ("ratio_wall_median", "ratio_wall_fastest", "ratio_cpu_median")
    }
    raw_medians = [i["raw_median_wall_s"] for i in instances]
    benchmark.extra_info.update(
        {
            **{key: round(value, 4) for key, value in ratios.items()},
            "target": target,
            "instances": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in i.items() if k != "digests"} for i in instances],
            "raw_median_spread_between_instances": round(max(raw_medians) / min(raw_medians), 4),
            "steps_per_episode": steps + load_protocol("standard").settle_steps,
            "episodes_compared_per_side_and_instance": ROUNDS * (EPISODES - 1),
        }
    )
    per_instance = ", ".join(f"{i['ratio_wall_median']:.3f}" for i in instances)
    print(
        f"\n{name} (target <= {target}x), same env instance, median of {INSTANCES} instances: wall median "
        f"{ratios['ratio_wall_median']:.3f}x (per instance {per_instance}), wall fastest {ratios['ratio_wall_fastest']:.3f}x, "
        f"CPU median {ratios['ratio_cpu_median']:.3f}x; raw median {statistics.median(raw_medians):.3f} s/episode, "
        f"slowest / fastest instance {max(raw_medians) / min(raw_medians):.2f}x"
    )
    return ratios["ratio_wall_median"]


@pytest.mark.parametrize("steps", [20])
def test_harness_vs_plain_loop_with_cameras(benchmark: Any, tmp_path: Path, steps: int) -> None:
    ratio = measure(benchmark, "cameras", tmp_path, "bench_camera_random", steps, CAMERAS, 1.03)
    assert ratio < 1.5  # a gross regression (e.g. an encode or a copy per step on the stepping path)


@pytest.mark.parametrize(("chunk", "target"), [(1, 1.1), (8, 1.05)])
def test_camera_free_step_vs_no_render_step(benchmark: Any, tmp_path: Path, chunk: int, target: float) -> None:
    ratio = measure(benchmark, f"camera_free_chunk{chunk}", tmp_path, "random", 200, (), target, {"chunk": chunk})
    assert ratio < 1.5
