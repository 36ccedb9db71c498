"""Per-step latency of the teacher and the VITA-VLA student as policies, batch 1 against batch 8.

Run: ``pytest benchmarks/test_bench_models.py --benchmark-enable -s``. Each case fills every
slot's history (7 frames, as on LIBERO) with 128 px two-camera observations, then times
``act`` (the raw 3-step chunk, no ensembling) for one slot and for eight slots in interleaved
rounds; the medians and the amortisation ratio (8 × batch-1 time / batch-8 time) are printed
and stored in ``extra_info``; the benchmark table itself times batch-1 steps. Cases: the tiny presets and a ~200M-parameter student (``small``:
CLIP-style ViT 22M at 98 px → 49 tokens per image + a 16-layer Qwen2 LM, H=768). CPU runs use
one thread in fp32; on CUDA the models run in bf16. The ``small`` case takes about 2-3 minutes
on one CPU thread (one ~15 s batch-1 step, one ~2 min batch-8 step, history 7 ≈ 820 LM tokens).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

from vitabench.api.policy import check_actions
from vitabench.api.suite import Task

CAMERAS = ("agentview", "robot0_eye_in_hand")
RESOLUTION = 128
BATCH = 8
TASK = Task("libero_goal", 0, "bench", "open the middle drawer of the cabinet", 50)
#: (policy, preset, interleaved rounds, the lowest amortisation ratio accepted)
CASES = [("teacher", "tiny", 10, 1.5), ("vita_vla", "tiny", 10, 1.5), ("vita_vla", "small", 1, 0.8)]


def observations(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "images": {c: rng.integers(0, 256, (RESOLUTION, RESOLUTION, 3), dtype=np.uint8) for c in CAMERAS},
            "state": {
                "ee_pos": rng.normal(size=3).astype(np.float32),
                "ee_quat": np.array([0.0, 0.0, 0.0, 1.0], dtype=np.float32),
                "gripper_qpos": rng.uniform(-0.04, 0.04, size=2).astype(np.float32),
            },
            "instruction": TASK.instruction,
        }
        for _ in range(n)
    ]


@pytest.mark.parametrize(("name", "preset", "rounds", "min_ratio"), CASES, ids=[f"{n}-{p}" for n, p, _, _ in CASES])
def test_step_latency_batch_1_vs_8(benchmark, name, preset, rounds, min_ratio):
    import torch

    from vitabench.models.common import count_parameters
    from vitabench.plugins import make_policy

    torch.set_num_threads(1)
    policy = make_policy(name, preset=preset, **({"ensemble": "none"} if name == "vita_vla" else {}))
    slots = list(range(BATCH))
    for slot in slots:
        policy.reset(TASK, slot=slot)
    for step in range(policy.spec.history - 1):
        policy.observe(observations(BATCH, seed=step), slots)
    single, batch = observations(1, seed=100), observations(BATCH, seed=101)

    def act_one() -> np.ndarray:
        return policy.act(single, [0])

    def act_batch() -> np.ndarray:
        return policy.act(batch, slots)

    one_s, batch_s = [], []
    for _ in range(rounds):  # interleaved, so load from other processes hits both alike
        start = time.perf_counter()
        check_actions(act_one(), 1)
        one_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        check_actions(act_batch(), BATCH)
        batch_s.append(time.perf_counter() - start)
    one_ms, batch_ms = 1e3 * statistics.median(one_s), 1e3 * statistics.median(batch_s)
    ratio = BATCH * one_ms / batch_ms
    params_m = count_parameters(policy.model) / 1e6
    benchmark.extra_info.update(
        device=str(policy.device), params_m=round(params_m, 1), batch1_ms=round(one_ms, 2),
        batch8_ms=round(batch_ms, 2), batch8_per_slot_ms=round(batch_ms / BATCH, 2), amortisation=round(ratio, 2),
    )
    print(f"\n{name}-{preset} ({params_m:.1f}M params, {policy.device}, history {policy.spec.history}): "
          f"batch 1 {one_ms:.1f} ms/step, batch 8 {batch_ms:.1f} ms/step ({batch_ms / BATCH:.1f} ms per slot), "
          f"amortisation {ratio:.2f}x")
    assert ratio > min_ratio
    benchmark.pedantic(act_one, rounds=rounds, warmup_rounds=0)
