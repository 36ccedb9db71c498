"""One batched ``act`` over W environment slots against W single calls, for small neural policies.

Run: ``pytest benchmarks/test_bench_batching.py --benchmark-enable -s``. The ratio (W single
calls / one batched call, medians of interleaved rounds measured in this run) is printed and
stored in the benchmark's ``extra_info``. Two policies bracket the range: a state MLP, whose
cost is per-call overhead (batching wins), and a two-camera CNN at 128 px, whose cost is
convolution compute that grows with the batch (on one CPU thread batching gains little; on
an accelerator it is where batching pays). The device is CUDA when available, else CPU with
one thread.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

from vitabench.api.policy import BasePolicy, PolicySpec, check_actions

W = 8
ROUNDS = 15
CAMERAS = ("agentview", "robot0_eye_in_hand")
RESOLUTION = 128


class SmallNeuralPolicy(BasePolicy):
    """Untrained: optional two-camera CNN features + state, an MLP head predicting a chunk of actions."""

    def __init__(self, use_cameras: bool, chunk: int = 4) -> None:
        import torch
        from torch import nn

        torch.manual_seed(0)
        self.torch = torch
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.spec = PolicySpec(cameras=CAMERAS if use_cameras else (), resolution=RESOLUTION, chunk=chunk)
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 16, 5, stride=2), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ).to(self.device).eval()
        features = 64 * len(self.spec.cameras) + 8
        self.head = nn.Sequential(
            nn.Linear(features, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, chunk * 7), nn.Tanh()
        ).to(self.device).eval()

    def act(self, observations, slots=None):
        torch = self.torch
        with torch.inference_mode():
            state = np.stack([np.concatenate([o["state"][k] for k in self.spec.state_keys]) for o in observations])
            inputs = [torch.from_numpy(state).to(self.device)]
            if self.spec.cameras:
                images = np.stack([[o["images"][c] for c in self.spec.cameras] for o in observations])  # [B, C, H, W, 3]
                pixels = torch.from_numpy(images).to(self.device).permute(0, 1, 4, 2, 3).float().div_(255.0)
                inputs.insert(0, self.encoder(pixels.flatten(0, 1)).view(len(observations), -1))
            actions = self.head(torch.cat(inputs, dim=1))
        return actions.view(len(observations), self.spec.chunk, 7).cpu().numpy()


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def policy(request) -> SmallNeuralPolicy:
    import torch

    torch.set_num_threads(1)
    return SmallNeuralPolicy(use_cameras=request.param == "cnn")


@pytest.fixture(scope="module")
def observations() -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {
            "images": {c: rng.integers(0, 256, (RESOLUTION, RESOLUTION, 3), dtype=np.uint8) for c in CAMERAS},
            "state": {
                "ee_pos": rng.normal(size=3).astype(np.float32),
                "ee_axis_angle": rng.normal(size=3).astype(np.float32),
                "gripper_qpos": rng.normal(size=2).astype(np.float32),
            },
            "instruction": "pick up the bowl",
        }
        for _ in range(W)
    ]


def test_batched_act_vs_single_calls(benchmark, policy, observations):
    slots = list(range(W))

    def batched() -> np.ndarray:
        return policy.act(observations, slots)

    def singles() -> np.ndarray:
        return np.concatenate([policy.act([obs], [slot]) for obs, slot in zip(observations, slots)])

    # the same actions either way: batching changes the cost, never the result
    np.testing.assert_allclose(check_actions(batched(), W), check_actions(singles(), W), atol=1e-5)

    batched_s, singles_s = [], []
    for _ in range(ROUNDS):  # interleaved, so load from other processes hits both alike
        start = time.perf_counter()
        batched()
        batched_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        singles()
        singles_s.append(time.perf_counter() - start)
    ratio = statistics.median(singles_s) / statistics.median(batched_s)
    benchmark.extra_info.update(
        W=W,
        batched_ms=round(1e3 * statistics.median(batched_s), 3),
        singles_ms=round(1e3 * statistics.median(singles_s), 3),
        ratio=round(ratio, 2),
    )
    print(f"\n{'cnn' if policy.spec.cameras else 'mlp'} on {policy.device}, W={W}: one batched act {1e3 * statistics.median(batched_s):.2f} ms, "
          f"{W} single calls {1e3 * statistics.median(singles_s):.2f} ms, ratio {ratio:.2f}x")
    benchmark.pedantic(batched, rounds=ROUNDS, warmup_rounds=1)
