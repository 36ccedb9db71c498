"""What the serving tests serve, and how they start and stop server processes.

Every server is a real process on 127.0.0.1. It imports this module (by entry point, e.g.
``served_policies:EchoPolicy``, or to serve a probe), so the module stays light: numpy,
vitabench's api and serving, the standard library; no pytest, no torch, no test module. A
server of a test policy then starts in well under a second of CPU instead of re-importing the
test modules and everything they import."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from vitabench.api.policy import BasePolicy, PolicySpec, Provenance
from vitabench.api.suite import Task

SERVING_TESTS = Path(__file__).resolve().parent

# Runs the real CLI in a subprocess, with the test-only policies registered first.
BOOT_CLI = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); from vitabench.plugins import POLICIES; "
    "POLICIES.register('echo', 'served_policies:EchoPolicy'); POLICIES.register('dying', 'served_policies:DyingPolicy'); "
    "POLICIES.register('slots', 'served_policies:SlotsPolicy'); from vitabench.cli import main; main()"
)
BOOT_OPENPI = "import sys; sys.path.insert(0, sys.argv[1]); import served_policies; served_policies.run_openpi_like_server()"
BOOT_PROBE = "import sys; sys.path.insert(0, sys.argv[1]); import served_policies; served_policies.serve_probe(*sys.argv[2:])"


class EchoPolicy(BasePolicy):
    """A policy whose actions report what it saw: image means, state, calls since reset, seed."""

    def __init__(self, chunk: int = 2, delay: float = 0.0) -> None:
        self.spec = PolicySpec(cameras=("agentview", "robot0_eye_in_hand"), chunk=chunk)
        self.delay = delay
        self.calls: dict[int, int] = {}
        self.seeds: dict[int, int | None] = {}

    def reset(self, task: Task, slot: int = 0, seed: int | None = None) -> None:
        self.calls[slot] = 0
        self.seeds[slot] = seed

    def act(self, observations, slots=None):
        time.sleep(self.delay)
        slots = list(range(len(observations))) if slots is None else list(slots)
        out = np.zeros((len(slots), self.spec.chunk, 7), dtype=np.float32)
        for row, (slot, obs) in enumerate(zip(slots, observations)):
            seed = self.seeds.get(slot)
            out[row, :, 0] = obs["images"]["agentview"].mean()
            out[row, :, 1] = obs["images"]["robot0_eye_in_hand"].mean()
            out[row, :, 2] = obs["state"]["ee_pos"][0]
            out[row, :, 3] = self.calls.get(slot, -1)
            out[row, :, 4] = -1 if seed is None else seed
            out[row, :, 5] = len(obs["instruction"])
            out[row, :, 6] = np.arange(self.spec.chunk)
            self.calls[slot] = self.calls.get(slot, 0) + 1
        return out


class DyingPolicy(BasePolicy):
    """Zero actions, no camera; the serving process dies on act number ``die_after + 1``."""

    def __init__(self, die_after: int = 2) -> None:
        self.spec = PolicySpec(state_keys=())
        self.die_after = die_after
        self.acts = 0

    def act(self, observations, slots=None):
        self.acts += 1
        if self.acts > self.die_after:
            os._exit(3)
        return np.zeros((len(observations), 1, 7), np.float32)


class SlotsPolicy(BasePolicy):
    """Zero actions whose first value is how many slots the policy holds state for."""

    def __init__(self) -> None:
        self.spec = PolicySpec(state_keys=())
        self.held: dict[int, int] = {}

    def reset(self, task: Task, slot: int = 0, seed: int | None = None) -> None:
        self.held[slot] = 0

    def release(self, slot: int) -> None:
        self.held.pop(slot, None)

    def act(self, observations, slots=None):
        out = np.zeros((len(observations), 1, 7), np.float32)
        out[:, 0, 0] = len(self.held)
        return out


class ProbePolicy(BasePolicy):
    """Reports what it was given: row 0 the state values in ``state_keys`` order, row 1 the first
    camera's height and width and the means of its top-left and bottom-right quadrants. Raises on
    any state key or camera it did not ask for."""

    def __init__(
        self, state_keys: str = "ee_quat,ee_axis_angle", cameras: str = "agentview", trained_protocol: dict | None = None
    ) -> None:
        keys = tuple(filter(None, state_keys.split(",")))
        self.spec = PolicySpec(cameras=tuple(cameras.split(",")), state_keys=keys, chunk=2)
        self.provenance = Provenance(trained_protocol=trained_protocol)

    def act(self, observations, slots=None):
        out = np.zeros((len(observations), 2, 7), np.float32)
        for row, obs in enumerate(observations):
            if set(obs["state"]) != set(self.spec.state_keys) or set(obs["images"]) != set(self.spec.cameras):
                raise ValueError(f"probe got state {sorted(obs['state'])} and images {sorted(obs['images'])}")
            values = np.concatenate([np.asarray(obs["state"][k], np.float32).reshape(-1) for k in self.spec.state_keys])
            out[row, 0, : min(7, values.size)] = values[:7]
            image = obs["images"][self.spec.cameras[0]]
            h, w = image.shape[:2]
            out[row, 1, :4] = [h, w, image[: h // 2, : w // 2].mean(), image[h // 2 :, w // 2 :].mean()]
        return out


def serve_probe(protocol: str, client_orientation: str, state_keys: str, cameras: str) -> None:
    """Serve a :class:`ProbePolicy` on a free port under ``protocol`` (run in a subprocess)."""
    from vitabench.api.protocol import load_protocol
    from vitabench.serving import PolicyServer

    policy = ProbePolicy(state_keys, cameras)
    server = PolicyServer(
        policy, name="probe", port=0, protocol=load_protocol(protocol), client_orientation=client_orientation
    )
    server.serve_forever(on_ready=lambda url: print(f"serving probe on {url}", flush=True))


def run_openpi_like_server() -> None:
    """A server in openpi's convention that is not vitabench: metadata without ``server``; each
    reply's [10, 8] actions encode what arrived (image sizes, state, prompt)."""
    from openpi_client import msgpack_numpy
    from websockets.asyncio.server import serve

    async def handler(connection) -> None:
        packer = msgpack_numpy.Packer()
        await connection.send(packer.pack({"env": "libero"}))
        async for message in connection:
            obs = msgpack_numpy.unpackb(message)
            actions = np.zeros((10, 8), np.float32)
            actions[:, 0] = obs["observation/image"].shape[0]
            actions[:, 1] = obs["observation/wrist_image"].shape[1]
            actions[:, 2] = obs["observation/state"].size
            actions[:, 3] = obs["observation/state"][0]
            actions[:, 4] = len(obs["prompt"])
            actions[:, 5] = obs["observation/image"].dtype == np.uint8
            actions[:, 6] = np.arange(10)
            actions[:, 7] = 99.0
            await connection.send(packer.pack({"actions": actions, "server_timing": {"infer_ms": 0.1}}))

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
            print(f"serving openpi-like on ws://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
            await server.serve_forever()

    asyncio.run(main())


def launch(boot: str, *args: str) -> subprocess.Popen:
    """Start a server process; :func:`url_of` waits until it serves."""
    return subprocess.Popen(
        [sys.executable, "-c", boot, str(SERVING_TESTS), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def url_of(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline()
    if not line.startswith("serving"):
        proc.kill()
        raise AssertionError(f"server did not start: {line!r} {proc.stderr.read()}")
    return line.split(" on ")[-1].strip()


def start(boot: str, *args: str) -> tuple[subprocess.Popen, str]:
    proc = launch(boot, *args)
    return proc, url_of(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
