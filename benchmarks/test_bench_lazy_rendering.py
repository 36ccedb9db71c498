"""Lazy rendering: chunked policies run at physics speed between their queries (ratios within one run).

``vitabench run`` with one worker, the ``standard`` protocol's two 256 px cameras and an
open-loop policy (``random`` actions, declaring both cameras) returning chunks of 1, 5 or 8
actions, which plays the same action sequence whatever the chunk size (every run must end
with the same ``state_digest``s). Per-episode wall time, episodes that run to the step limit:

* chunk 1 / chunk 8 >= 4x, chunk 1 / chunk 5 >= 3x (lazy rendering);
* chunk 1 with lazy rendering / chunk 1 without it (every step a full observation, as before
  lazy rendering) <= 1.02x.

All configurations run on the same environment instances (``same_instance.py``): a LIBERO env
instance's physics speed varies by 1.36-1.6x from one fresh instance to the next
(``env_instance_speed.py``), and physics is half of a chunk-8 episode here, so configurations
measured on instances of their own would compare instances as much as chunk sizes. Every
configuration asks for the same environment (same cameras, resolution and state keys), so one
env worker process, kept from run to run, serves them all with one env. On each of ``INSTANCES``
instances (fresh worker processes): one build run (not measured), then ``ROUNDS`` rounds of one
block of ``EPISODES`` episodes per configuration, in forward order in even rounds and reverse
order in odd ones; the first episode of each block is left out (its timing has no previous
episode end to start from). Per instance, the ratios of median episodes; reported, their median
over instances (every instance's figures are in ``extra_info``). Episodes per hour per worker
(one core) follow from the median episode over all instances. The camera-free targets (<= 1.1x
asked every step, <= 1.05x in chunks of 8, against LIBERO's own no-render loop on the same
instance) are in ``test_bench_runner.py``.

``test_step_profile`` prints where a step's time goes (:func:`vitabench.doctor.profile_steps`).

Run: ``pytest benchmarks/test_bench_lazy_rendering.py --benchmark-enable -s``.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from same_instance import SUITE, Block, SharedWorker, harness, later

from vitabench.api import PolicySpec
from vitabench.api.protocol import load_protocol
from vitabench.policies.baselines import RandomPolicy
from vitabench.plugins import POLICIES
from vitabench.runner.store import RunStore

STEPS = 100
INSTANCES = 2
ROUNDS = 2
EPISODES = 2
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


def ratios_of(wall: dict[str, float], cpu: dict[str, float]) -> dict[str, float]:
    return {
        "chunk8_speedup": wall["chunk1"] / wall["chunk8"],
        "chunk5_speedup": wall["chunk1"] / wall["chunk5"],
        "chunk1_lazy_vs_eager": wall["chunk1"] / wall["chunk1_eager"],
        "chunk1_lazy_vs_eager_cpu": cpu["chunk1"] / cpu["chunk1_eager"],
        "chunk8_speedup_cpu": cpu["chunk1"] / cpu["chunk8"],  # CPU seconds: other load disturbs them far less
        "chunk5_speedup_cpu": cpu["chunk1"] / cpu["chunk5"],
    }


def queries(chunk: int) -> int:
    """Observations rendered in a lazy episode of ``STEPS`` steps in chunks of ``chunk``: the
    reset's and one per chunk but the last (the episode ends after it, unobserved)."""
    return math.ceil(STEPS / chunk)


def linear_model(wall: dict[str, float]) -> dict[str, float]:
    """An episode as ``queries(chunk) * per_query_s + rest_s`` fitted to chunks 1 and 8 (per_query:
    one observation's frames, its message and the policy's act; rest: the physics of every step,
    the reset and the record), and chunk 5 as that model predicts it. Chunk 8 is 4x faster than
    chunk 1 exactly when ``rest_in_queries <= rest_in_queries_for_4x`` (16 with ``STEPS = 100``)."""
    per_query = (wall["chunk1"] - wall["chunk8"]) / (queries(1) - queries(8))
    rest = wall["chunk8"] - queries(8) * per_query
    return {
        "per_query_s": per_query,
        "rest_s": rest,
        "rest_in_queries": rest / per_query,
        "rest_in_queries_for_4x": (queries(1) - 4 * queries(8)) / 3,
        "chunk5_predicted_s": queries(5) * per_query + rest,
        "chunk5_measured_s": wall["chunk5"],
    }


def test_chunked_episodes_vs_chunk_1(benchmark: Any, tmp_path: Path) -> None:
    blocks: list[dict[str, list[Block]]] = []  # per instance: label -> its blocks
    digests: dict[str, set[tuple[str, ...]]] = {label: set() for label, _, _ in CONFIGS}

    def rounds() -> None:
        for index in range(INSTANCES):
            worker = SharedWorker()
            mine: dict[str, list[Block]] = {label: [] for label, _, _ in CONFIGS}
            blocks.append(mine)
            try:
                harness(tmp_path / f"i{index}_build", worker, "bench_two_camera_random", STEPS, {"chunk": 8}, episodes=1, build=True)
                for round_ in range(ROUNDS):
                    for label, chunk, lazy in CONFIGS if round_ % 2 == 0 else CONFIGS[::-1]:
                        out = tmp_path / f"i{index}_{label}_{round_}"
                        mine[label].append(harness(out, worker, "bench_two_camera_random", STEPS, {"chunk": chunk}, lazy=lazy, episodes=EPISODES))
                        records = RunStore(out).records()
                        assert all(r.steps == STEPS for r in records)  # random actions: no episode ends early
                        digests[label].add(mine[label][-1].digests)
            finally:
                worker.shutdown()

    benchmark.pedantic(rounds, rounds=1, iterations=1)

    assert len({d for found in digests.values() for d in found}) == 1, digests  # one trajectory per episode, every config

    per_instance = []
    for mine in blocks:
        wall = {label: statistics.median(later(b, "wall_s")) for label, b in mine.items()}
        cpu = {label: statistics.median(later(b, "cpu_s")) for label, b in mine.items()}
        per_instance.append({"ratios": ratios_of(wall, cpu), "median_wall_s": wall, "median_cpu_s": cpu, "linear_model": linear_model(wall)})
    ratios = {key: statistics.median(i["ratios"][key] for i in per_instance) for key in per_instance[0]["ratios"]}
    pooled = {label: statistics.median(t for mine in blocks for t in later(mine[label], "wall_s")) for label, _, _ in CONFIGS}
    per_hour = {label: 3600.0 / seconds for label, seconds in pooled.items()}
    benchmark.extra_info.update(
        {
            "ratios": {k: round(v, 4) for k, v in ratios.items()},
            "targets": TARGETS,
            "instances": [
                {part: {k: round(v, 4) for k, v in values.items()} for part, values in i.items()} for i in per_instance
            ],
            "episodes_per_hour_per_core": {k: round(v, 1) for k, v in per_hour.items()},
            "episode_wall_s": [{label: [round(t, 3) for t in later(b, "wall_s")] for label, b in mine.items()} for mine in blocks],
            "episode_cpu_s": [{label: [round(t, 3) for t in later(b, "cpu_s")] for label, b in mine.items()} for mine in blocks],
            "steps_per_episode": STEPS + load_protocol("standard").settle_steps,
        }
    )
    chunk8 = ", ".join(f"{i['ratios']['chunk8_speedup']:.2f}" for i in per_instance)
    print(
        f"\nlazy rendering, {SUITE}, 2 x 256 px, {STEPS} steps, median of {INSTANCES} env instances: chunk 8 "
        f"{ratios['chunk8_speedup']:.2f}x (target >= 4; per instance {chunk8}), chunk 5 {ratios['chunk5_speedup']:.2f}x (>= 3) "
        f"faster than chunk 1; chunk 1 lazy / eager {ratios['chunk1_lazy_vs_eager']:.3f}x wall, "
        f"{ratios['chunk1_lazy_vs_eager_cpu']:.3f}x CPU (<= 1.02); episodes per hour per core: "
        + ", ".join(f"{k} {v:.0f}" for k, v in per_hour.items())
        + "; per instance, physics + reset + record = "
        + ", ".join(f"{i['linear_model']['rest_in_queries']:.1f}" for i in per_instance)
        + f" observed steps' extra cost (4x needs <= {per_instance[0]['linear_model']['rest_in_queries_for_4x']:.0f})"
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
