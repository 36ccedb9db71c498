"""Runner behaviour that needs no simulator: option parsing, fault handling, resume rules, videos.

Faults are injected through ``FaultyEnv`` (``faults.py``), a small Gymnasium-style env whose tasks
raise, hang or succeed at chosen steps; the worker processes that run it are the real ones (spawned,
piped, killed and replaced exactly as with LIBERO). LIBERO end-to-end checks are in
``test_runner_libero.py``.
"""

from __future__ import annotations

import fcntl
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

from cli_in_process import vitabench_in_process
from vitabench.api import BasePolicy, PolicySpec, Task, VitabenchError
from vitabench.cli.policy_options import parse_policy_args
from vitabench.cli.run import parse_tasks
from vitabench.plugins import POLICIES, SUITES
from vitabench.runner import run_evaluation
from vitabench.runner.store import RunStore
from vitabench.runner.video import VideoMode

VENV_PYTHON = sys.executable

# -- a suite whose environment fails on purpose (faults.py: FaultyEnv, load_faulty_suite), bad policies --

class ShapePolicy(BasePolicy):
    """Returns actions of the wrong shape."""

    def act(self, observations: Sequence[Any], slots: Sequence[int] | None = None) -> np.ndarray:
        return np.zeros((len(observations), 6), dtype=np.float32)


class RaisingPolicy(BasePolicy):
    """Raises in ``reset`` or in ``act`` for slot 1 only: the other slot must carry on."""

    def __init__(self, where: str = "act") -> None:
        self.where = where

    def reset(self, task: Task, slot: int = 0, seed: int | None = None) -> None:
        if self.where == "reset" and slot == 1:
            raise RuntimeError("cannot start")

    def act(self, observations: Sequence[Any], slots: Sequence[int] | None = None) -> np.ndarray:
        if self.where == "act" and 1 in (slots or []):
            raise RuntimeError("inference failed")
        return np.zeros((len(observations), 1, 7), dtype=np.float32)


class CountingPolicy(BasePolicy):
    """Deterministic chunked policy that logs every batch it is asked for."""

    batches: list[list[int]] = []

    def __init__(self, chunk: int = 2) -> None:
        self.spec = PolicySpec(state_keys=("ee_pos",), chunk=chunk)

    def act(self, observations: Sequence[Any], slots: Sequence[int] | None = None) -> np.ndarray:
        CountingPolicy.batches.append(list(slots or []))
        steps = np.array([o["state"]["ee_pos"][1] for o in observations], dtype=np.float32)
        return np.repeat((0.01 * steps)[:, None, None], self.spec.chunk, axis=1) * np.ones((1, 1, 7), np.float32)


@pytest.fixture(autouse=True, scope="module")
def _registered() -> None:
    SUITES.register("faulty", "faults:load_faulty_suite")
    POLICIES.register("nan_test", "faults:NanPolicy")
    POLICIES.register("shape_test", "test_runner:ShapePolicy")
    POLICIES.register("counting_test", "test_runner:CountingPolicy")
    POLICIES.register("raising_test", "test_runner:RaisingPolicy")


def _records(run_dir: Path) -> dict[str, Any]:
    return {r.episode_id: r for r in RunStore(run_dir).records()}


def _lines(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]


# -- option parsing ---------------------------------------------------------------------------


def test_policy_args_file_then_pairs(tmp_path: Path) -> None:
    config = tmp_path / "policy.toml"
    config.write_text('chunk = 4\nname = "from-file"\nscale = 0.5\n')
    args = parse_policy_args(["chunk=8", "flag=true", "tags=[1, 2]", "path=/tmp/x", 'quoted="7"'], config)
    assert args == {"chunk": 8, "name": "from-file", "scale": 0.5, "flag": True, "tags": [1, 2], "path": "/tmp/x", "quoted": "7"}
    (tmp_path / "p.json").write_text('{"chunk": 3}')
    assert parse_policy_args([], tmp_path / "p.json") == {"chunk": 3}


@pytest.mark.parametrize("pair", ["novalue", "=3", "bad key=1"])
def test_policy_arg_bad_pair(pair: str) -> None:
    with pytest.raises(VitabenchError, match="KEY=VALUE"):
        parse_policy_args([pair], None)


def test_policy_config_bad_file(tmp_path: Path) -> None:
    with pytest.raises(VitabenchError, match="cannot be read"):
        parse_policy_args([], tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("chunk = = 3")
    with pytest.raises(VitabenchError, match="not valid TOML"):
        parse_policy_args([], tmp_path / "bad.toml")


def test_parse_tasks_and_video_modes() -> None:
    assert parse_tasks("0,3") == [0, 3]
    assert parse_tasks("0-2,7") == [0, 1, 2, 7]
    assert parse_tasks(None) is None
    for bad in ("0,x", "1,1", ""):
        with pytest.raises(VitabenchError):
            parse_tasks(bad)
    assert VideoMode.parse("sample:2").sample == 2
    for bad in ("sample:0", "some", "sample:x"):
        with pytest.raises(VitabenchError, match="accepted: none, failures"):
            VideoMode.parse(bad)


# -- fault handling ---------------------------------------------------------------------------


def test_env_exception_and_worker_death_are_episode_errors(tmp_path: Path) -> None:
    out = run_evaluation("zero", {}, "faulty", tasks=[0, 1, 3], episodes_per_task=3, max_steps=5, workers=2, out=tmp_path / "run").run_dir
    records = _records(out)
    assert len(records) == 9 and len(_lines(out)) == 9
    errors = {e: r.error for e, r in records.items() if r.status == "error"}
    assert set(errors) == {"faulty/t001/e0001", "faulty/t003/e0001"}
    assert "RuntimeError: simulated simulator failure" in errors["faulty/t001/e0001"]
    assert "died (signal SIGKILL)" in errors["faulty/t003/e0001"]
    # the worker's traceback is kept, down to the env line that raised; a killed worker has none
    raised = records["faulty/t001/e0001"].extra["traceback"]
    assert raised.startswith("Traceback") and raised.endswith("RuntimeError: simulated simulator failure")
    assert 'faults.py", line' in raised and "in step" in raised and "EnvHost" not in raised.splitlines()[-1]
    assert "traceback" not in records["faulty/t003/e0001"].extra
    for episode_id, record in records.items():
        if record.status == "error":
            assert record.success is None
        else:  # the episodes after a fault ran normally on a rebuilt env or a replaced worker
            assert record.success == (record.init_state_id % 2 == 0)
            assert record.steps == (3 if record.success else 5)


def test_hung_worker_times_out_and_is_replaced(tmp_path: Path) -> None:
    start = time.monotonic()
    out = run_evaluation("zero", {}, "faulty", tasks=[2], episodes_per_task=2, max_steps=5, out=tmp_path / "run", step_timeout=1.0).run_dir
    assert time.monotonic() - start < 60
    records = _records(out)
    assert records["faulty/t002/e0000"].status == "error"
    assert "no step reply within 1 s" in records["faulty/t002/e0000"].error
    assert records["faulty/t002/e0001"].status == "ok"
    assert records["faulty/t002/e0001"].worker["pid"] != records["faulty/t002/e0000"].worker["pid"]


@pytest.mark.parametrize(("policy", "message"), [("nan_test", "non-finite action"), ("shape_test", "actions of shape")])
def test_bad_policy_actions_are_episode_errors(tmp_path: Path, policy: str, message: str) -> None:
    out = run_evaluation(policy, {}, "faulty", tasks=[0], episodes_per_task=3, max_steps=5, workers=2, out=tmp_path / "run").run_dir
    records = _records(out)
    assert len(records) == 3
    assert all(r.status == "error" and message in r.error and r.steps == 0 for r in records.values())


#: ``vitabench`` in a subprocess that knows the test suite and policies.
CLI = [
    VENV_PYTHON,
    "-c",
    (
        "import sys; sys.path.insert(0, %r);"
        "from vitabench.plugins import POLICIES, SUITES;"
        "SUITES.register('faulty', 'faults:load_faulty_suite');"
        "POLICIES.register('nan_test', 'faults:NanPolicy');"
        "from vitabench.cli import main; main()"
    )
    % str(Path(__file__).parent),
]


def test_policy_exceptions_are_episode_errors(tmp_path: Path) -> None:
    kwargs = dict(tasks=[0], episodes_per_task=4, max_steps=5, workers=2)
    records = _records(run_evaluation("raising_test", {"where": "reset"}, "faulty", out=tmp_path / "reset", **kwargs).run_dir)
    assert len(records) == 4
    for record in records.values():  # a failed reset ends that slot's episode only
        if record.worker["slot"] == 1:
            assert record.status == "error" and record.error == "policy reset failed: RuntimeError: cannot start"
            assert "in reset\n    raise RuntimeError(\"cannot start\")" in record.extra["traceback"]
        else:
            assert record.status == "ok"
    assert any(r.status == "ok" for r in records.values())
    # a raising act fails every episode of its batch (here both slots step in lockstep)
    records = _records(run_evaluation("raising_test", {"where": "act"}, "faulty", out=tmp_path / "act", **kwargs).run_dir)
    assert len(records) == 4
    assert all(r.status == "error" and r.error == "policy act failed: RuntimeError: inference failed" for r in records.values())
    assert all("in act\n    raise RuntimeError(\"inference failed\")" in r.extra["traceback"] for r in records.values())


def test_cli_errored_episodes_exit_3_with_one_line(tmp_path: Path) -> None:
    args = ["run", "--policy", "nan_test", "--suite", "faulty", "--tasks", "0", "--episodes-per-task", "2", "--max-steps", "5", "--out", str(tmp_path / "run"), "--quiet"]
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "2 episode(s) errored" in lines[0] and "non-finite" in lines[0]
    assert "overall" in done.stdout  # the summary is printed even with --quiet


def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # 24 slow episodes (0.15-0.5 s each, two workers): seconds of work left when the signal comes,
    # even if this test process is descheduled under load after the second record appears. SIGINT
    # back to its default in the child: pytest started as a background job (`pytest ... &`) passes
    # it on ignored, and Python then never raises KeyboardInterrupt, as a shell's background job should
    args = ["run", "--policy", "zero", "--suite", "faulty", "--tasks", "4", "--episodes-per-task", "24", "--max-steps", "10", "--workers", "2", "--out", str(out), "--video", "all", "--quiet"]
    process = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not ((out / "episodes.jsonl").exists() and (out / "episodes.jsonl").read_bytes().count(b"\n") >= 2):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted:" in stderr and "continue with --resume" in stderr
    recorded = _lines(out)
    assert 2 <= len(recorded) < 24
    assert not [p for p in (out / "videos").iterdir() if "partial" in p.name]  # no half-written video
    assert sorted(p.name for p in (out / "videos").iterdir()) == sorted(Path(r["video"]).name for r in recorded)
    # the run directory alone is enough to resume: run.json holds policy, suite, tasks, protocol
    # (the CLI in this process from here: the signal and its exit code were the real process's part;
    # the episodes left need no slowness, so the resume's workers step the slow task without sleeping)
    done = vitabench_in_process("run", "--resume", "--out", str(out), "--quiet", env={"FAULTY_SLOW_STEP_S": "0"})
    assert done.returncode == 0, done.stderr
    assert len(_records(out)) == len(_lines(out)) == 24
    refused = vitabench_in_process("run", "--resume", "--out", str(out), "--max-steps", "7")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "protocol" in refused.stderr


def test_chunks_are_executed_and_slots_batched(tmp_path: Path) -> None:
    CountingPolicy.batches.clear()
    out = run_evaluation("counting_test", {"chunk": 2}, "faulty", tasks=[0], episodes_per_task=2, max_steps=5, workers=2, out=tmp_path / "run").run_dir
    records = _records(out)
    assert [records[e].steps for e in sorted(records)] == [3, 5]  # init state 0 succeeds at step 3
    # 5 steps with chunks of 2 need 3 calls per episode; the first call serves both slots at once
    assert sum(len(b) for b in CountingPolicy.batches) == 2 + 3
    assert [0, 1] in CountingPolicy.batches


# -- run directory rules ------------------------------------------------------------------------


def test_resume_refuses_other_policy_protocol_manifest(tmp_path: Path) -> None:
    out = run_evaluation("zero", {}, "faulty", tasks=[0], episodes_per_task=2, max_steps=5, out=tmp_path / "run").run_dir
    before = (out / "episodes.jsonl").read_bytes()
    common = dict(tasks=[0], episodes_per_task=2, max_steps=5, out=out, resume=True)
    cases = [
        (dict(common, policy_name="random"), "policy"),
        (dict(common, policy_name="zero", policy_args={"chunk": 2}), "policy"),
        (dict(common, policy_name="zero", max_steps=6), "protocol standard\\+max_steps=5"),
        (dict(common, policy_name="zero", seed=3), "protocol"),
        (dict(common, policy_name="zero", episodes_per_task=3), "manifest"),
        (dict(common, policy_name="zero", tasks=[0, 1]), "manifest"),
    ]
    for kwargs, what in cases:
        name = kwargs.pop("policy_name")
        args = kwargs.pop("policy_args", {})
        with pytest.raises(VitabenchError, match=f"holds .*{what}"):
            run_evaluation(name, args, "faulty", **kwargs)
    assert (out / "episodes.jsonl").read_bytes() == before
    with pytest.raises(VitabenchError, match="not empty; pass --resume"):
        run_evaluation("zero", {}, "faulty", tasks=[0], episodes_per_task=2, max_steps=5, out=out)
    with open(out / ".lock") as held:  # as a run in progress holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(VitabenchError, match="in use by another vitabench run"):
            run_evaluation("zero", {}, "faulty", **common)
    assert (out / "episodes.jsonl").read_bytes() == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(VitabenchError, match="holds no vitabench run"):
        run_evaluation("zero", {}, "faulty", tasks=[0], episodes_per_task=2, max_steps=5, out=tmp_path / "other", resume=True)


def test_resume_retries_errors_and_repairs_torn_line(tmp_path: Path) -> None:
    out = run_evaluation("zero", {}, "faulty", tasks=[1], episodes_per_task=3, max_steps=5, out=tmp_path / "run").run_dir
    assert _records(out)["faulty/t001/e0001"].status == "error"
    with open(out / "episodes.jsonl", "ab") as handle:
        handle.write(b'{"episode_id": "faulty/t001/e00')  # what a crash mid-write would leave
    run_evaluation("zero", {}, "faulty", tasks=[1], episodes_per_task=3, max_steps=5, out=out, resume=True)
    lines = _lines(out)  # parses every line: the torn one is gone
    assert [line["episode_id"] for line in lines].count("faulty/t001/e0001") == 2  # the error stays as history
    assert _records(out)["faulty/t001/e0001"].status == "error"  # it fails again: deterministic fault
    config = json.loads((out / "run.json").read_text())
    assert [s["episodes_to_run"] for s in config["sessions"]] == [3, 1]
    assert config["versions"]["mujoco"] and config["versions"]["numpy"] == np.__version__
    assert len(config["git"]["commit"]) == 40
    assert config["protocol"]["name"] == "standard+max_steps=5" and config["protocol"]["max_steps"]["libero_object"] == 5
    assert config["policy"] == {"name": "zero", "args": {}, "checkpoint_hash": None, "trained_protocol": None, "lineage": None}
    import pandas as pd

    table = pd.read_parquet(out / "episodes.parquet")  # the latest record of each episode
    assert sorted(table["episode_id"]) == ["faulty/t001/e0000", "faulty/t001/e0001", "faulty/t001/e0002"]
    assert table.set_index("episode_id").loc["faulty/t001/e0001", "status"] == "error"


def test_bad_inputs_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    bad_protocol = tmp_path / "bad.toml"
    bad_protocol.write_text('name = "x"\n')
    cases = [
        (dict(policy_name="nope", suite="faulty"), "unknown policy 'nope'"),
        (dict(policy_name="zero", suite="nope"), "unknown suite 'nope'"),
        (dict(policy_name="zero", suite="faulty", tasks=[9]), "task 9 is not in suite 'faulty'; accepted: 0-4"),
        (dict(policy_name="zero", suite="faulty", protocol=str(bad_protocol)), "missing protocol field"),
        (dict(policy_name="zero", suite="faulty", protocol="nope"), "unknown protocol 'nope'"),
        (dict(policy_name="zero", suite="faulty", video="some"), "--video 'some'"),
        (dict(policy_name="zero", suite="faulty", max_steps=0), "--max-steps 0"),
        (dict(policy_name="zero", suite="faulty", episodes_per_task=0), "episodes per task 0"),
        (dict(policy_name="zero", suite="faulty", workers=0), "--workers 0"),
        (dict(policy_name="zero", suite="faulty", policy_args={"chunk": 0}), "chunk=0"),
        (dict(policy_name="zero", suite="faulty", policy_args={"nope": 1}), "rejected its arguments"),
    ]
    for kwargs, message in cases:
        name, suite = kwargs.pop("policy_name"), kwargs.pop("suite")
        args = kwargs.pop("policy_args", {})
        with pytest.raises(VitabenchError) as info:
            run_evaluation(name, args, suite, out=out, **kwargs)
        assert message in str(info.value) and "\n" not in str(info.value)
        assert not out.exists()


# -- videos -----------------------------------------------------------------------------------


def test_videos_sample_and_failures(tmp_path: Path) -> None:
    import imageio.v3 as iio

    out = run_evaluation("zero", {}, "faulty", tasks=[0], episodes_per_task=3, max_steps=5, out=tmp_path / "s", video="sample:2").run_dir
    records = _records(out)
    assert records["faulty/t000/e0000"].video == "videos/faulty_t000_e0000__success.mp4"
    assert records["faulty/t000/e0001"].video == "videos/faulty_t000_e0001__failure.mp4"
    assert records["faulty/t000/e0002"].video is None
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["faulty_t000_e0000__success.mp4", "faulty_t000_e0001__failure.mp4"]
    frames = iio.imread(out / "videos/faulty_t000_e0001__failure.mp4")
    # reset + 5 steps; the protocol's two cameras side by side at its resolution
    assert frames.shape == (6, 256, 512, 3)

    out = run_evaluation("zero", {}, "faulty", tasks=[0], episodes_per_task=2, max_steps=5, out=tmp_path / "f", video="failures").run_dir
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["faulty_t000_e0001__failure.mp4"]
    assert _records(out)["faulty/t000/e0000"].video is None


def test_seed_and_max_steps_derive_a_protocol(tmp_path: Path) -> None:
    out = run_evaluation("random", {}, "faulty", tasks=[0], episodes_per_task=2, max_steps=4, seed=3, out=tmp_path / "run").run_dir
    records = _records(out)
    assert {r.seed for r in records.values()} == {3}  # the standard protocol gives every episode its seed
    assert {r.protocol["name"] for r in records.values()} == {"standard+seed=3+max_steps=4"}
    assert all(r.steps == 4 or r.success for r in records.values())
    other = run_evaluation("random", {}, "faulty", tasks=[0], episodes_per_task=2, max_steps=4, seed=4, out=tmp_path / "other").run_dir
    # another seed: other random actions, so other trajectories
    assert {e: r.extra["state_digest"] for e, r in _records(other).items()} != {e: r.extra["state_digest"] for e, r in records.items()}


def test_domain_derives_a_protocol_stamped_on_records(tmp_path: Path) -> None:
    out = run_evaluation("zero", {}, "faulty", tasks=[0], episodes_per_task=1, max_steps=4, domain="seen/warm_light", out=tmp_path / "run").run_dir
    (record,) = _records(out).values()
    assert record.domain == "seen/warm_light@1"
    assert record.protocol["name"] == "standard+domain=seen/warm_light@1+max_steps=4"
    assert json.loads((out / "run.json").read_text())["protocol"]["domain"]["name"] == "warm_light"
    with pytest.raises(VitabenchError, match="unknown domain 'nope'"):
        run_evaluation("zero", {}, "faulty", tasks=[0], domain="nope", out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_long_tracebacks_keep_their_innermost_frames() -> None:
    from vitabench.runner.worker import TRACEBACK_CHARS, traceback_text

    def fail(detail: str) -> None:
        raise ValueError(f"{detail} at the bottom")

    with pytest.raises(ValueError) as caught:
        fail("x" * 2 * TRACEBACK_CHARS)
    text = traceback_text(caught.value)
    assert len(text) == TRACEBACK_CHARS + 3 and text.startswith("...") and text.endswith("x at the bottom")
    with pytest.raises(ValueError) as caught:
        fail("short")
    text = traceback_text(caught.value)
    assert text.startswith("Traceback (most recent call last)") and text.endswith("ValueError: short at the bottom")
