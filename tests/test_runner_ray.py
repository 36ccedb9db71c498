"""``vitabench run --executor ray`` end to end on real LIBERO steps, with real Ray instances.

Every test runs ``vitabench`` as a subprocess under its own ``RAY_TMPDIR`` so that the Ray
processes it starts can be found (command line, environment or parentage) and, if any outlive
the run, killed by pid in teardown; a leftover fails the test. Runs are tiny: task 0, a few
episodes of 5 steps (120 where an actor must be killed mid-episode), no cameras.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from vitabench.runner import run_evaluation
from vitabench.runner.store import RunStore

BIN = Path(sys.executable).parent
RUN = ["run", "--policy", "random", "--suite", "libero_object", "--tasks", "0", "--quiet"]


def outcomes(run_dir: Path) -> dict[str, tuple[Any, ...]]:
    return {r.episode_id: (r.status, r.success, r.steps, r.extra.get("state_digest")) for r in RunStore(run_dir).records()}


def ray_processes(tmpdir: str) -> list[int]:
    """Live processes of the Ray instances under ``tmpdir``: those naming it in their command line
    or environment, and their descendants."""
    table: dict[int, tuple[int, bytes]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if stat[0] == "Z":
                continue
            text = (entry / "cmdline").read_bytes()
            try:
                text += (entry / "environ").read_bytes()
            except OSError:
                pass
        except OSError:
            continue
        table[int(entry.name)] = (int(stat[1]), text)
    found = {pid for pid, (_, text) in table.items() if tmpdir.encode() in text}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    found.discard(os.getpid())
    return sorted(found)


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def ray_env() -> Iterator[dict[str, str]]:
    """Environment for a ``vitabench`` subprocess with a private ``RAY_TMPDIR`` (short: Ray puts
    unix sockets in it); teardown asserts no Ray process outlived the test."""
    tmpdir = tempfile.mkdtemp(prefix="vbray", dir="/tmp")
    try:
        yield {**os.environ, "MUJOCO_GL": "egl", "RAY_TMPDIR": tmpdir}
        deadline = time.monotonic() + 30
        while ray_processes(tmpdir) and time.monotonic() < deadline:
            time.sleep(0.5)
        leftover = ray_processes(tmpdir)
    finally:
        kill_all(ray_processes(tmpdir))
        shutil.rmtree(tmpdir, ignore_errors=True)
    assert not leftover, f"Ray processes outlived the run: {leftover}"


def vitabench(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "vitabench"), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_ray_gives_the_records_of_local_workers(ray_env: dict[str, str], tmp_path: Path) -> None:
    local = run_evaluation("random", {}, "libero_object", tasks=[0], episodes_per_task=3, max_steps=5, workers=1, out=tmp_path / "local")
    out = tmp_path / "ray"
    done = vitabench([*RUN, "--executor", "ray", "--workers", "2", "--episodes-per-task", "3", "--max-steps", "5", "--out", str(out)], ray_env)
    assert done.returncode == 0, done.stderr
    assert outcomes(out) == outcomes(local)
    assert all(o[0] == "ok" and o[3] for o in outcomes(out).values())
    records = RunStore(out).records()
    assert len({r.worker["pid"] for r in records}) == 2  # two actors, neither of them the driver
    assert "--executor" in RunStore(out).config()["sessions"][0]["argv"]


def test_killed_actor_gives_one_error_and_the_run_completes(ray_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [str(BIN / "vitabench"), *RUN, "--executor", "ray", "--episodes-per-task", "3", "--max-steps", "120", "--out", str(out)]
    process = subprocess.Popen(args, env=ray_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        path = out / "episodes.jsonl"
        deadline = time.monotonic() + 180
        while not (path.exists() and path.read_bytes().count(b"\n") >= 1):
            assert process.poll() is None and time.monotonic() < deadline, "no first record"
            time.sleep(0.02)
        actor = RunStore(out).records()[0].worker["pid"]
        assert actor != process.pid and actor in ray_processes(ray_env["RAY_TMPDIR"])
        os.kill(actor, signal.SIGKILL)  # the actor is in the second episode
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 3, stderr  # finished, with an errored episode
    records = RunStore(out).records()
    assert len(records) == 3
    errors = [r for r in records if r.status == "error"]
    assert len(errors) == 1 and errors[0].episode_id == "libero_object/t000/e0001", [r.error for r in records]
    assert re.fullmatch(rf"ray actor pid {actor} on \S+ died \(ActorDiedError: [^\n]*\)", errors[0].error)
    assert errors[0].success is None
    last = records[-1]
    assert last.status == "ok" and last.steps == 120 and last.worker["pid"] != actor  # a fresh actor took the slot
    assert "1 episode(s) errored" in stderr and "overall" in stdout


#: ``vitabench`` knowing the fault-injecting suite of ``test_runner.py`` (the actors import it through PYTHONPATH).
FAULTY_CLI = [
    sys.executable,
    "-c",
    "from vitabench.registry import SUITES; SUITES.register('faulty', 'test_runner:load_faulty_suite'); "
    "from vitabench.cli import main; main()",
]


def test_env_exception_actor_death_and_hang_are_episode_errors(ray_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "--policy", "zero", "--suite", "faulty", "--tasks", "0-3", "--episodes-per-task", "2", "--max-steps", "5"]
    env = {**ray_env, "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run([*FAULTY_CLI, *args, "--executor", "ray", "--workers", "2", "--step-timeout", "2", "--out", str(out), "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr
    records = {r.episode_id: r for r in RunStore(out).records()}
    assert len(records) == 8
    errors = {e: r.error for e, r in records.items() if r.status == "error"}
    assert set(errors) == {"faulty/t001/e0001", "faulty/t002/e0000", "faulty/t003/e0001"}
    assert errors["faulty/t001/e0001"] == "environment RuntimeError: simulated simulator failure"  # the actor lives on
    assert "no step reply within 2 s (step timeout)" in errors["faulty/t002/e0000"]
    assert re.fullmatch(r"ray actor pid \d+ on \S+ died \(ActorDiedError: .*\)", errors["faulty/t003/e0001"])
    for record in records.values():  # every other episode ran normally, on a rebuilt env or a fresh actor
        if record.status == "ok":
            assert record.success == (record.init_state_id % 2 == 0) and record.steps == (3 if record.success else 5)


def test_joins_a_cluster_started_with_ray_start(ray_env: dict[str, str], tmp_path: Path) -> None:
    started = subprocess.run(
        [str(BIN / "ray"), "start", "--head", "--port", str(free_port()), "--num-cpus", "1", "--include-dashboard", "false", "--disable-usage-stats"],
        env=ray_env, capture_output=True, text=True, timeout=180,
    )
    assert started.returncode == 0, started.stderr
    cluster = ray_processes(ray_env["RAY_TMPDIR"])
    try:
        out = tmp_path / "run"
        done = vitabench([*RUN, "--executor", "ray", "--ray-address", "auto", "--episodes-per-task", "2", "--max-steps", "5", "--out", str(out)], ray_env)
        assert done.returncode == 0, done.stderr
        assert [o[0] for o in outcomes(out).values()] == ["ok", "ok"]
        assert set(cluster) <= set(ray_processes(ray_env["RAY_TMPDIR"])), "the run stopped a cluster it only joined"
    finally:
        kill_all(ray_processes(ray_env["RAY_TMPDIR"]))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(("address", "message"), [(None, "no Ray cluster answers at 127.0.0.1:"), ("nohost", "accepted: auto, HOST:PORT")])
def test_bad_ray_address_exits_2_writing_nothing(ray_env: dict[str, str], tmp_path: Path, address: str | None, message: str) -> None:
    address = address or f"127.0.0.1:{free_port()}"  # nothing listens there
    out = tmp_path / "run"
    done = vitabench([*RUN, "--executor", "ray", "--ray-address", address, "--max-steps", "5", "--out", str(out)], ray_env, timeout=120)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and repr(address) in errors[0]
    assert not out.exists()


def test_executor_option_is_checked(ray_env: dict[str, str], tmp_path: Path) -> None:
    done = vitabench([*RUN, "--executor", "dask", "--out", str(tmp_path / "run")], ray_env, timeout=120)
    assert done.returncode == 2 and "accepted: local, ray" in done.stderr
    done = vitabench([*RUN, "--ray-address", "auto", "--out", str(tmp_path / "run")], ray_env, timeout=120)
    assert done.returncode == 2 and "--ray-address needs --executor ray" in done.stderr
    assert not (tmp_path / "run").exists()
