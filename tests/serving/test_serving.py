"""`vitabench serve` and the `remote` policy: real servers in subprocesses on 127.0.0.1 (what they
serve and how they start: ``served_policies``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import websockets.sync.client
from openpi_client import msgpack_numpy
from openpi_client.websocket_client_policy import WebsocketClientPolicy

from served_policies import BOOT_CLI, BOOT_OPENPI, launch, start, stop, url_of
from vitabench.api.errors import VitabenchError
from vitabench.api.suite import Suite, Task
from vitabench.plugins import SUITES, make_policy
from vitabench.runner import run_evaluation

TASK = Task(suite="unit", task_id=3, name="t", instruction="put the bowl on the plate", n_init_states=1)


def observation(value: int = 10, ee_x: float = 0.25, instruction: str = "put the bowl on the plate") -> dict:
    return {
        "images": {
            "agentview": np.full((16, 16, 3), value, np.uint8),
            "robot0_eye_in_hand": np.full((16, 16, 3), value + 1, np.uint8),
        },
        "state": {
            "ee_pos": np.array([ee_x, 0.0, 1.0], np.float32),
            "ee_axis_angle": np.array([0.1, 0.2, 0.3], np.float32),
            "gripper_qpos": np.array([0.04, -0.04], np.float32),
        },
        "instruction": instruction,
    }


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    proc, url = start(BOOT_CLI, "serve", "--policy", "echo", "--policy-arg", "chunk=3", "--port", "0",
                      "--max-message-bytes", "20000")
    yield url
    stop(proc)


def test_plain_openpi_client_drives_the_server(echo_server):
    client = WebsocketClientPolicy(host=echo_server)
    metadata = client.get_server_metadata()
    assert metadata["server"] == "vitabench" and metadata["policy"] == "echo"
    assert metadata["policy_args"] == {"chunk": 3} and metadata["spec"]["chunk"] == 3
    assert metadata["spec"]["cameras"] == ["agentview", "robot0_eye_in_hand"]

    # a vitabench observation through plain infer: slot 0 of this client, reset implicitly (seed None)
    first = client.infer(observation(value=10, ee_x=0.25))["actions"]
    assert first.shape == (3, 7) and first.dtype == np.float32
    np.testing.assert_allclose(first[0], [10, 11, 0.25, 0, -1, 25, 0])
    np.testing.assert_allclose(first[:, 6], [0, 1, 2])
    assert client.infer(observation())["actions"][0, 3] == 1  # second call since the reset

    # openpi's LIBERO keys are mapped to the policy's cameras and state keys
    state = np.array([0.5, 0, 1, 0.1, 0.2, 0.3, 0.04, -0.04], np.float32)
    openpi_obs = {
        "observation/image": np.full((8, 8, 3), 40, np.uint8),
        "observation/wrist_image": np.full((8, 8, 3), 50, np.uint8),
        "observation/state": state,
        "prompt": "open the drawer",  # a new instruction: a new implicit reset
    }
    np.testing.assert_allclose(client.infer(openpi_obs)["actions"][0], [40, 50, 0.5, 0, -1, 15, 0])
    with pytest.raises(RuntimeError, match="observation/state has 3 values; accepted: 8"):
        client.infer({**openpi_obs, "observation/state": state[:3]})
    # the connection survives the error
    assert client.infer(openpi_obs)["actions"][0, 3] == 1


def test_malformed_and_oversized_messages_get_error_frames(echo_server):
    packer = msgpack_numpy.Packer()
    with websockets.sync.client.connect(echo_server, compression=None, proxy=None, max_size=None) as ws:
        ws.recv(timeout=5)  # metadata
        ws.send(b"\xc1\x00garbage")
        assert ws.recv(timeout=5).startswith("error: malformed message, not msgpack")
        ws.send("a text frame")
        assert ws.recv(timeout=5).startswith("error: text message; accepted: binary msgpack maps")
        ws.send(packer.pack([1, 2, 3]))
        assert ws.recv(timeout=5) == "error: malformed message: a msgpack list; accepted: a map"
        ws.send(packer.pack({"vitabench/act": {"observations": [{"images": {}}]}}))
        assert "lacks image(s) agentview, robot0_eye_in_hand" in ws.recv(timeout=5)
        four_channels = observation()
        four_channels["images"]["agentview"] = np.zeros((16, 16, 4), np.uint8)
        ws.send(packer.pack(four_channels))
        assert ws.recv(timeout=5) == (
            "error: image 'agentview' is a uint8 array of shape (16, 16, 4); accepted: a uint8 array [H, W, 3]"
        )
        short_state = observation()
        short_state["state"]["ee_pos"] = short_state["state"]["ee_pos"][:2]
        ws.send(packer.pack(short_state))
        assert ws.recv(timeout=5) == "error: state 'ee_pos' has 2 values; accepted: 3"
        ws.send(packer.pack({"blob": np.zeros(30000, np.uint8)}))
        reply = ws.recv(timeout=5)
        assert isinstance(reply, str) and "exceeds the server limit of 20000 bytes" in reply
        # the same connection still works after every error
        ws.send(packer.pack(observation()))
        assert msgpack_numpy.unpackb(ws.recv(timeout=5))["actions"].shape == (3, 7)

    # beyond twice the limit the websocket layer closes that connection (1009); others are served
    with websockets.sync.client.connect(echo_server, compression=None, proxy=None, max_size=None) as ws:
        ws.recv(timeout=5)
        ws.send(packer.pack({"blob": np.zeros(100_000, np.uint8)}))
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == 1009
    other = WebsocketClientPolicy(host=echo_server)
    assert other.infer(observation())["actions"].shape == (3, 7)


def test_remote_resets_and_batches_through_a_vitabench_server(echo_server):
    remote = make_policy("remote", url=echo_server)
    assert remote.is_vitabench and remote.spec.chunk == 3
    assert remote.spec.cameras == ("agentview", "robot0_eye_in_hand")
    remote.reset(TASK, slot=0, seed=7)
    remote.reset(TASK, slot=5, seed=9)
    actions = remote.act([observation(1), observation(2)], [0, 5])
    assert actions.shape == (2, 3, 7)
    np.testing.assert_allclose(actions[:, 0, [0, 3, 4]], [[1, 0, 7], [2, 0, 9]])
    # a second client's slot 0 is its own: not the first client's slot 0
    second = make_policy("remote", url=echo_server)
    second.reset(TASK, slot=0, seed=3)
    assert second.act([observation()], [0])[0, 0, 3] == 0
    assert remote.act([observation()], [0])[0, 0, 3] == 1
    remote.close()
    second.close()


def test_random_policy_in_process_and_remote_give_identical_actions(tmp_path):
    (tmp_path / "random.toml").write_text("chunk = 4\n")
    proc, url = start(BOOT_CLI, "serve", "--policy", "random", "--policy-config", str(tmp_path / "random.toml"), "--port", "0")
    try:
        local = make_policy("random", chunk=4)
        remote = make_policy("remote", url=url)
        assert remote.metadata["policy_args"] == {"chunk": 4} and remote.spec.chunk == 4
        for policy in (local, remote):
            for slot, seed in ((0, 11), (1, 12), (2, 13)):
                policy.reset(TASK, slot=slot, seed=seed)
        for _ in range(3):
            np.testing.assert_array_equal(remote.act([{}] * 3, [0, 1, 2]), local.act([{}] * 3, [0, 1, 2]))
        remote.close()
    finally:
        stop(proc)


def test_remote_against_an_openpi_style_server_maps_libero_keys():
    proc, url = start(BOOT_OPENPI)
    try:
        remote = make_policy("remote", url=url)
        assert not remote.is_vitabench
        assert remote.spec.cameras == ("agentview", "robot0_eye_in_hand")
        remote.reset(TASK)
        actions = remote.act([observation(ee_x=0.5), observation(ee_x=0.75)], [0, 1])
        # chunk of 10 kept, 8 action dims cut to 7; images resized with padding to 224
        assert actions.shape == (2, 10, 7)
        np.testing.assert_allclose(actions[:, 0, :6], [[224, 224, 8, 0.5, 25, 1], [224, 224, 8, 0.75, 25, 1]])
        native = make_policy("remote", url=url, resize=0, chunk=10)
        assert native.spec.chunk == 10
        assert native.act([observation()])[0, 0, 0] == 16
        # openpi's loop runs the first replan_steps actions of each chunk; so does remote when asked
        replanning = make_policy("remote", url=url, replan_steps=5)
        assert replanning.spec.chunk == 5
        np.testing.assert_allclose(replanning.act([observation()])[0, :, 6], [0, 1, 2, 3, 4])
        too_long = make_policy("remote", url=url, replan_steps=11)
        with pytest.raises(VitabenchError, match="returned a chunk of 10 actions; replan_steps=11 needs at least 11"):
            too_long.act([observation()])
        with pytest.raises(VitabenchError, match="replan_steps=0: accepted: a positive integer"):
            make_policy("remote", url=url, replan_steps=0)
    finally:
        stop(proc)


def test_dead_or_unreachable_server_raises_a_clear_error():
    proc, url = start(BOOT_CLI, "serve", "--policy", "echo", "--port", "0")
    remote = make_policy("remote", url=url, connect_timeout=2)
    remote.reset(TASK)
    assert remote.act([observation()]).shape == (1, 2, 7)
    proc.kill()
    proc.wait()
    with pytest.raises(VitabenchError, match=f"policy server {url} failed: the connection closed"):
        remote.act([observation()])
    with pytest.raises(VitabenchError, match="no connection to policy server"):
        remote.act([observation()])
    started = time.monotonic()
    with pytest.raises(VitabenchError, match=f"cannot reach policy server {url}: connection refused"):
        remote.reset(TASK)
    with pytest.raises(VitabenchError, match="cannot reach policy server"):
        make_policy("remote", url=url)
    assert time.monotonic() - started < 5
    with pytest.raises(VitabenchError, match="accepted: ws://HOST:PORT"):
        make_policy("remote", url="http://localhost:1")


def test_slow_server_reply_is_bounded_by_timeout():
    proc, url = start(BOOT_CLI, "serve", "--policy", "echo", "--policy-arg", "delay=3", "--port", "0")
    try:
        remote = make_policy("remote", url=url, timeout=0.5)
        remote.reset(TASK)
        started = time.monotonic()
        with pytest.raises(VitabenchError, match="no answer within the time limit"):
            remote.act([observation()])
        assert time.monotonic() - started < 2.5
    finally:
        stop(proc)


def test_busy_port_is_one_clear_error_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [str(Path(sys.executable).parent / "vitabench"), "serve", "--policy", "zero", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: cannot serve on 127.0.0.1:{port}: ")
    assert "address already in use" in lines[0].lower() and "--port" in lines[0]


def test_a_closed_connections_slots_are_released():
    """Slot state lives as long as its connection: a client that leaves frees it for good."""
    proc, url = start(BOOT_CLI, "serve", "--policy", "slots", "--port", "0")
    try:
        first = WebsocketClientPolicy(host=url)
        assert first.infer({"instruction": "a"})["actions"][0, 0] == 1  # slot 0 of this client, reset implicitly
        first._ws.close()
        second = WebsocketClientPolicy(host=url)
        held = second.infer({"instruction": "b"})["actions"][0, 0]
        deadline = time.monotonic() + 10
        while held != 1 and time.monotonic() < deadline:  # the server frees a closed connection's slots as it notices
            time.sleep(0.05)
            held = second.infer({"instruction": "b"})["actions"][0, 0]
        assert held == 1
    finally:
        stop(proc)


def test_health_check_answers_like_openpi(echo_server):
    import urllib.request

    http_url = echo_server.replace("ws://", "http://") + "/healthz"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(http_url, timeout=5) as response:
        assert response.status == 200


def records_of(out: Path) -> list[dict]:
    """The records of run directory ``out``, by episode."""
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    return sorted(records, key=lambda r: r["episode_id"])


def vitabench_run(out: Path, policy: str, *args: str, workers: int = 1, max_steps: int = 5) -> list[dict]:
    """``vitabench run`` (the CLI, a real process) on two episodes of libero_object task 0; its records by episode."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "vitabench"), "run", "--policy", policy, *args, "--max-steps", str(max_steps),
         "--suite", "libero_object", "--tasks", "0", "--episodes-per-task", "2",
         "--workers", str(workers), "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "MUJOCO_GL": "egl"},
    )
    assert (out / "episodes.jsonl").exists(), result.stderr
    records = records_of(out)
    assert records, result.stderr
    return records


def in_process_run(out: Path, policy: str, max_steps: int) -> list[dict]:
    """The same episodes as :func:`vitabench_run` through the runner's Python API in this process
    (real env worker, no CLI start-up); its records by episode."""
    return records_of(run_evaluation(policy, {}, "libero_object", tasks=[0], episodes_per_task=2, max_steps=max_steps, out=out).run_dir)


@pytest.mark.sim
@pytest.mark.parametrize(
    ("policy", "max_steps", "remote_workers"),
    # scripted: 40 steps of the privileged expert (privileged state over the wire drives it; its
    # full-length successes are test_scripted's); random: two remote workers
    [("random", 5, 2), pytest.param("scripted", 40, 1, marks=pytest.mark.slow)],
)
def test_run_in_process_and_remote_give_identical_episodes(tmp_path, monkeypatch, policy, max_steps, remote_workers):
    monkeypatch.setenv("MUJOCO_GL", "egl")  # as vitabench_run's
    proc = launch(BOOT_CLI, "serve", "--policy", policy, "--port", "0")
    try:
        local = in_process_run(tmp_path / "local", policy, max_steps)  # while the server starts
        url = url_of(proc)
        remote = vitabench_run(tmp_path / "remote", "remote", "--policy-arg", f"url={url}",
                               workers=remote_workers, max_steps=max_steps)
    finally:
        stop(proc)
    keys = ("episode_id", "init_state_id", "seed", "status", "success", "steps")
    assert [r["status"] for r in remote] == ["ok", "ok"]
    assert [{k: r[k] for k in keys} for r in remote] == [{k: r[k] for k in keys} for r in local]
    # the state trajectories themselves are identical, not only the outcomes
    assert [r["extra"]["state_digest"] for r in remote] == [r["extra"]["state_digest"] for r in local]
    assert local[0]["extra"]["state_digest"] != local[1]["extra"]["state_digest"]


def still_suite(name: str) -> Suite:
    return Suite(name, "libero_object", (Task(name, 0, "wait", "wait", n_init_states=2),), "still_env:StillEnv")


def test_a_dying_server_gives_error_episodes_and_the_run_goes_on(tmp_path):
    """The remote policy's failures become error records; the env (a stand-in) plays no part."""
    SUITES.register("serving_still", f"{__name__}:still_suite")
    proc, url = start(BOOT_CLI, "serve", "--policy", "dying", "--port", "0")
    try:
        out = run_evaluation("remote", {"url": url}, "serving_still", tasks=[0], episodes_per_task=2, max_steps=5,
                             out=tmp_path / "run").run_dir
        records = records_of(out)
    finally:
        stop(proc)
    errors = [r["error"] for r in records]
    assert [r["status"] for r in records] == ["error", "error"], errors
    assert [r["success"] for r in records] == [None, None]
    assert f"policy server {url} failed: the connection closed" in records[0]["error"], errors
    assert f"cannot reach policy server {url}: connection refused" in records[1]["error"], errors
