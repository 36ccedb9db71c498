"""Lazy rendering: chunked policies run at physics speed between their queries (ratios within one run).

``vitabench run`` with one worker, the ``standard`` protocol's two 256 px cameras and an
open-loop policy (``random`` actions, declaring both cameras) returning chunks of 1, 5 or 8
actions, which plays the same action sequence whatever the chunk size (every run must end
with the same ``state_digest``s). Per-episode wall time, episodes that run to the step limit:

* chunk 1 / chunk 8 >= 4x, chunk 1 / chunk 5 >= 3x (lazy rendering);
* chunk 1 with lazy rendering / chunk 1 without it (every step a full observation, as before
  lazy rendering) <= 1.02x.

Configurations alternate ``ROUNDS`` times; the first episode of each block is left out (it
pays for the worker's start and the environment's construction). Episodes per hour per worker
(one core) follow from the median episode. The camera-free targets (<= 1.1x asked every step,
<= 1.05x in chunks of 8, against the raw no-render loop) are in ``test_bench_runner.py``.

``test_step_profile`` prints where a step's time goes (:func:`vitabench.doctor.profile_steps`).

Run: ``pytest benchmarks/test_bench_lazy_rendering.py --benchmark-enable -s``.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest
from test_bench_runner import SUITE, Block, harness

from vitabench.api import PolicySpec
from vitabench.api.protocol import load_protocol
from vitabench.policies.baselines import RandomPolicy
from vitabench.plugins import POLICIES
from vitabench.runner.store import RunStore

STEPS = 100
EPISODES = 2
ROUNDS = 2
#: (label, chunk, lazy rendering)
CONFIGS: tuple[tuple[str, int, bool], ...] = (("chunk1_eager", 1, False), ("chunk1", 1, True), ("chunk5", 5, True), ("chunk8", 8, True))
TARGETS = {"chunk8_speedup": 4.0, "chunk5_speedup": 3.0, "chunk1_lazy_vs_eager": 1.02}


class TwoCameraRandomPolicy(RandomPolicy):
    """``random`` in chunks of ``chunk``, declaring the standard protocol's two cameras at 256 px."""

    def __init__(self, chunk: int = 1) -> None:
        super().__init__(chunk)
        protocol = load_protocol("standard")
        self.spec = PolicySpec(cameras=protocol.cameras, resolution=protocol.resolution, state_keys=(), chunk=chunk)


POLICIES.register("bench_two_camera_random", f"{__name__}:TwoCameraRandomPolicy")


def test_chunked_episodes_vs_chunk_1(benchmark: Any, tmp_path: Path) -> None:
    blocks: dict[str, list[Block]] = {label: [] for label, _, _ in CONFIGS}
    digests: dict[str, set[tuple[str, ...]]] = {label: set() for label, _, _ in CONFIGS}

    def rounds() -> None:
        for round_ in range(ROUNDS):
            for label, chunk, lazy in CONFIGS:
                out = tmp_path / f"{label}_{round_}"
                blocks[label].append(harness(out, "bench_two_camera_random", STEPS, {"chunk": chunk}, lazy=lazy, episodes=EPISODES))
                records = sorted(RunStore(out).records(), key=lambda r: r.episode_id)
                assert all(r.steps == STEPS for r in records)  # random actions: no episode ends early
                digests[label].add(tuple(r.extra["state_digest"] for r in records))

    benchmark.pedantic(rounds, rounds=1, iterations=1)

    assert len({d for found in digests.values() for d in found}) == 1, digests  # one trajectory per episode, every config

    def later(label: str, field: str) -> list[float]:
        return [t for block in blocks[label] for t in getattr(block, field)[1:]]

    wall = {label: statistics.median(later(label, "wall_s")) for label in blocks}
    cpu = {label: statistics.median(later(label, "cpu_s")) for label in blocks}
    ratios = {
        "chunk8_speedup": wall["chunk1"] / wall["chunk8"],
        "chunk5_speedup": wall["chunk1"] / wall["chunk5"],
        "chunk1_lazy_vs_eager": wall["chunk1"] / wall["chunk1_eager"],
        "chunk1_lazy_vs_eager_cpu": cpu["chunk1"] / cpu["chunk1_eager"],
    }
    per_hour = {label: 3600.0 / seconds for label, seconds in wall.items()}
    benchmark.extra_info.update(
        {
            "ratios": {k: round(v, 4) for k, v in ratios.items()},
            "targets": TARGETS,
            "episodes_per_hour_per_core": {k: round(v, 1) for k, v in per_hour.items()},
            "episode_wall_s": {label: [round(t, 3) for t in later(label, "wall_s")] for label in blocks},
            "episode_cpu_s": {label: [round(t, 3) for t in later(label, "cpu_s")] for label in blocks},
            "steps_per_episode": STEPS + load_protocol("standard").settle_steps,
        }
    )
    print(
        f"\nlazy rendering, {SUITE}, 2 x 256 px, {STEPS} steps: chunk 8 {ratios['chunk8_speedup']:.2f}x (target >= 4), "
        f"chunk 5 {ratios['chunk5_speedup']:.2f}x (>= 3) faster than chunk 1; chunk 1 lazy / eager "
        f"{ratios['chunk1_lazy_vs_eager']:.3f}x wall, {ratios['chunk1_lazy_vs_eager_cpu']:.3f}x CPU (<= 1.02); "
        "episodes per hour per core: " + ", ".join(f"{k} {v:.0f}" for k, v in per_hour.items())
    )
    # gross regressions only (a shared machine): the targets are in extra_info
    assert ratios["chunk8_speedup"] > 2.0 and ratios["chunk5_speedup"] > 1.5 and ratios["chunk1_lazy_vs_eager"] < 1.3


def test_step_profile(benchmark: Any) -> None:
    from vitabench.doctor import profile_steps

    profile = benchmark.pedantic(lambda: profile_steps(load_protocol("standard")), rounds=1, iterations=1)
    lines = profile.lines()
    print("\n" + "\n".join(lines))
    benchmark.extra_info["profile"] = lines
    cameras = load_protocol("standard").cameras
    assert set(profile.render_ms) == {(camera, res) for camera in cameras for res in (128, 256)}
    assert set(profile.messaging_ms) == {"state", "2 x 128 px", "2 x 256 px"}
    assert min(profile.render_ms.values()) > 0 and min(profile.messaging_ms.values()) > 0 and profile.physics_ms > 0
