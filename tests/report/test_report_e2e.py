"""End to end: real `vitabench run` output reported, compared and ablated through the CLI.

The candidate is a real run of the `zero` policy. vitabench has no scripted (task-solving)
policy, so the high-success baseline is that run's own records rewritten as successes of a
policy named `scripted`: same manifest, same episode ids, same protocol.

Commands go through the console entry point in this process (the env workers are real spawned
processes); the committed-baseline gate runs in a real subprocess, as CI runs it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_in_process import vitabench_in_process
from vitabench.runner.store import RunStore

pytestmark = pytest.mark.sim

ENV = {**os.environ, "MUJOCO_GL": "egl"}


def vitabench_subprocess(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``vitabench ARGS`` in a fresh interpreter: the exit code a CI gate sees."""
    code = "import sys; from vitabench.cli import main; sys.argv = ['vitabench', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def vitabench(*args: str) -> subprocess.CompletedProcess:
    """``vitabench ARGS`` in this process under ``ENV``'s MUJOCO_GL (the committed-baseline gate keeps a real process)."""
    return vitabench_in_process(*args, env={"MUJOCO_GL": ENV["MUJOCO_GL"]})


@pytest.fixture(scope="module")
def zero_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("e2e") / "zero"
    result = vitabench(
        "run", "--policy", "zero", "--suite", "libero_object", "--tasks", "0", "--episodes-per-task", "6",
        "--max-steps", "5", "--out", str(out), "--quiet",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def rewrite_as_successes(run: Path, out: Path) -> Path:
    store = RunStore(run)
    config = store.config()
    config["policy"] = {**config["policy"], "name": "scripted"}
    baseline = RunStore(out)
    baseline.create(config, store.manifest())
    for record in store.records():
        policy = {**record.policy, "name": "scripted"}
        baseline.append(dataclasses.replace(record, success=True, status="ok", error=None, policy=policy))
    return out


def test_report_and_compare_real_runs(zero_run, tmp_path) -> None:
    report = vitabench("report", str(zero_run), "--format", "json")
    assert report.returncode == 0, report.stderr
    overall = next(r for r in json.loads(report.stdout)["long"] if r["level"] == "overall")
    assert (overall["label"], overall["ok"], overall["successes"]) == ("zero", 6, 0)
    assert overall["protocol"].startswith("standard+max_steps=5@2#")

    same = vitabench("compare", str(zero_run), str(zero_run))
    assert same.returncode == 0 and "no significant regression" in same.stdout

    baseline = rewrite_as_successes(zero_run, tmp_path / "scripted")
    regression = vitabench("compare", str(baseline), str(zero_run), "--summary", str(tmp_path / "summary.md"))
    assert regression.returncode == 1, regression.stderr
    summary = (tmp_path / "summary.md").read_text()
    assert "REGRESSION" in summary and "b = 6" in summary and "0.01562" in summary  # 0.5 ** 6

    side_by_side = vitabench("report", str(baseline), str(zero_run), "--format", "md")
    assert "| scripted |" in side_by_side.stdout and "| zero |" in side_by_side.stdout


def test_fresh_run_passes_the_committed_baseline(zero_run) -> None:
    baseline = Path(__file__).parents[2] / "reports" / "baselines" / "zero-libero_object-smoke"
    result = vitabench_subprocess("compare", str(baseline), str(zero_run))  # the gate as CI runs it
    assert result.returncode == 0, (
        f"{result.stderr.strip()} -- if the protocol changed on purpose, regenerate the baseline "
        "(see reports/baselines/README.md)"
    )
    assert "Paired on 6 shared episodes" in result.stdout


#: reports/ablations/baselines_smoke.toml on one task (one env build per variant, not two);
#: 4 episodes keep its 4 pairs. test_report_ablation checks the committed spec itself.
ONE_TASK_SMOKE = """\
name = "baselines_smoke_one_task"
description = "zero vs random actions, libero_object task 0, 5 steps"
reference = "zero"
suites = ["libero_object"]
tasks = [0]
episodes_per_task = 4
protocol = "standard"
max_steps = 5

[[variants]]
name = "zero"
policy = "zero"

[[variants]]
name = "random"
policy = "random"
args = { chunk = 2 }
"""


def test_ablate_runs_missing_variants_then_reuses_them(tmp_path) -> None:
    spec = tmp_path / "baselines_smoke_one_task.toml"
    spec.write_text(ONE_TASK_SMOKE)
    out = tmp_path / "ablation"
    first = vitabench("ablate", str(spec), "--out", str(out), "--format", "json")
    assert first.returncode == 0, first.stderr[-2000:]
    rows = {r["variant"]: r for r in json.loads(first.stdout)["ablation"]}
    assert set(rows) == {"zero", "random"}
    assert rows["zero"]["ok"] == 4 and rows["random"]["pairs"] == 4 and rows["random"]["p_value"] is not None
    for variant in ("zero", "random"):
        config = RunStore(out / variant / "libero_object").config()
        assert config["label"] == variant and len(config["sessions"]) == 1
    again = vitabench("ablate", str(spec), "--out", str(out), "--format", "md")
    assert again.returncode == 0 and "| zero (reference) |" in again.stdout
    assert "At α = 0.05 (Holm): no significant difference: random." in again.stdout  # 0 of 4 each: b = c = 0
    assert len(RunStore(out / "random" / "libero_object").config()["sessions"]) == 1  # reused, not rerun
