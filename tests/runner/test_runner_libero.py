"""``vitabench run`` end to end on real LIBERO: crash and resume, worker-count independence,
a worker killed mid-episode. Short budgets: one task, a few episodes of 20-120 steps, no cameras.

Per-episode outcomes are compared as (success, steps, state_digest): the digest fingerprints
every state the policy was shown, so equal digests mean identical trajectories.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from vitabench.runner import run_evaluation
from vitabench.runner.store import RunStore

pytestmark = pytest.mark.sim

VITABENCH = [str(Path(sys.executable).parent / "vitabench")]
RUN = ["run", "--policy", "random", "--suite", "libero_object", "--tasks", "0", "--quiet"]
ENV = {**os.environ, "MUJOCO_GL": "egl"}


def outcomes(run_dir: Path) -> dict[str, tuple[Any, ...]]:
    return {r.episode_id: (r.status, r.success, r.steps, r.extra.get("state_digest")) for r in RunStore(run_dir).records()}


def lines(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]


def wait_for_records(run_dir: Path, count: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    path = run_dir / "episodes.jsonl"
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.02)
    raise AssertionError(f"no {count} records in {timeout} s")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def env_workers(parent: int) -> list[int]:
    """Pids of the spawned env workers of ``parent`` (found in /proc, no hook in the runner)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 1-worker run: 4 episodes of 20 steps."""
    out = tmp_path_factory.mktemp("reference") / "run"
    done = subprocess.run([*VITABENCH, *RUN, "--episodes-per-task", "4", "--max-steps", "20", "--out", str(out)], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(outcomes(out)) == 4
    return out


def test_sigkill_then_resume_matches_uninterrupted(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [*VITABENCH, *RUN, "--episodes-per-task", "4", "--max-steps", "20", "--out", str(out)]
    process = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_records(out, 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    recorded = lines(out)  # every line parses: fsynced whole-line appends
    assert 2 <= len(recorded) < 4, "the run finished before it could be killed"
    deadline = time.monotonic() + 30
    while alive(recorded[0]["worker"]["pid"]):
        assert time.monotonic() < deadline, "the env worker outlived its killed main process"
        time.sleep(0.1)
    resumed = subprocess.run([*args, "--resume"], env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    ids = [line["episode_id"] for line in lines(out)]
    assert len(ids) == len(set(ids)) == 4  # no duplicates, nothing missing
    assert outcomes(out) == outcomes(reference)
    sessions = json.loads((out / "run.json").read_text())["sessions"]
    assert [s["episodes_to_run"] for s in sessions] == [4, 4 - len(recorded)]


def test_two_workers_give_the_same_outcomes(reference: Path, tmp_path: Path) -> None:
    out = run_evaluation("random", {}, "libero_object", tasks=[0], episodes_per_task=4, max_steps=20, workers=2, out=tmp_path / "run").run_dir
    assert outcomes(out) == outcomes(reference)
    assert len({r.worker["pid"] for r in RunStore(out).records()}) == 2


def test_sigkilled_env_worker_gives_one_error_and_the_run_completes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [*VITABENCH, *RUN, "--episodes-per-task", "3", "--max-steps", "120", "--out", str(out)]
    process = subprocess.Popen(args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_records(out, 1, process)
    time.sleep(0.3)  # into the next episode's steps
    workers = env_workers(process.pid)
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 3, stderr  # finished, with errored episodes
    records = RunStore(out).records()
    assert len(records) == 3
    errors = [r for r in records if r.status == "error"]
    assert len(errors) == 1 and f"worker pid {workers[0]} died (signal SIGKILL)" in errors[0].error
    assert errors[0].episode_id != "libero_object/t000/e0000" and errors[0].success is None
    assert all(r.status == "ok" and r.steps == 120 for r in records if r is not errors[0])
    assert "1 episode(s) errored" in stderr and "overall" in stdout
