"""Checks both shipped-checkpoint test modules (teacher, student) run on their checkpoint: the
CLI in a subprocess, trained-vs-untrained open-loop error, a held-out episode solved by name, and a
committed ablation table rebuilt from its records alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cli_in_process import vitabench_in_process

REPO = Path(__file__).resolve().parents[2]
#: The scripted expert on libero_object task 2, init state 30 (never in the shipped models' data),
#: protocol vita_vla_128, its first 40 steps.
DEMO = Path(__file__).parents[1] / "data" / "teacher_demo.hdf5"
ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "OMP_NUM_THREADS": "1"}


def vitabench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitabench", *args], capture_output=True, text=True, env=ENV, timeout=600)


def assert_trained_open_loop(saved: Any, model: Any, bound: float) -> None:
    """On :data:`DEMO`, ``model``'s open-loop arm error is under ``bound`` (gripper >= 95% right)
    and the same architecture at its initial weights (with the trained normalisation) is over twice it."""
    import torch

    from vitabench.training.loop import Windows
    from vitabench.training.teacher import open_loop_error

    config = model.config
    windows = Windows([DEMO], config.cameras, config.history, config.chunk, config.state_rotation)
    trained = open_loop_error(model, windows)
    assert trained.steps == 40 and trained.arm_mae < bound and trained.gripper_accuracy >= 0.95, trained

    with torch.random.fork_rng():
        torch.manual_seed(0)
        untrained = model.__class__.from_saved(config, saved.directory)  # the architecture, initial weights
    untrained.load_state_dict(dict(model.named_buffers()), strict=False)  # and the trained normalisation
    fresh = open_loop_error(untrained, windows)
    assert fresh.arm_mae > 2 * bound, fresh  # the bound tells trained weights from untrained ones
    assert np.isclose(fresh.label_magnitude, trained.label_magnitude)


def assert_solves_held_out_episode(policy: str, checkpoint: str, saved: Any, tmp_path: Path) -> None:
    """``policy`` with the shipped ``checkpoint`` solves libero_object task 2 from init state 30 by name."""
    out = tmp_path / "run"
    done = vitabench("run", "--policy", policy, "--policy-arg", f"checkpoint={checkpoint}", "--policy-arg", "ensemble=0.01",
                     "--suite", "libero_object", "--tasks", "2", "--protocol", "vita_vla_128", "--init-states", "30",
                     "--episodes-per-task", "1", "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr[-2000:]
    (record,) = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    run = json.loads((out / "run.json").read_text())
    assert run["policy"]["checkpoint_hash"] == saved.weights_hash
    assert record["status"] == "ok" and record["success"] is True and record["steps"] < 220, record


def committed_ablation_rows(spec_path: str, out: str, table: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """The rows of the ablation ``spec_path`` over its committed runs (an evaluate hook fails if any
    variant is incomplete, so nothing is evaluated), after checking that ``vitabench ablate`` rebuilds
    the committed ``table`` byte for byte."""
    from vitabench.report.ablation import ablation_table, ensure_runs, load_ablation_spec

    def no_evaluation(variant, suite, spec, run_dir):  # noqa: ANN001, ANN202 - ensure_runs' evaluate hook
        raise AssertionError(f"{variant.name} on {suite} is not complete in {run_dir}")

    monkeypatch.chdir(REPO)  # the spec's run paths are relative to the repository root
    spec = load_ablation_spec(spec_path)
    rows = ablation_table(spec, ensure_runs(spec, out, evaluate=no_evaluation)).set_index("variant")
    rebuilt = tmp_path / "table.md"
    result = vitabench_in_process("ablate", spec_path, "--out", out, "--format", "md", "--report", str(rebuilt))
    assert result.returncode == 0, result.stderr
    assert rebuilt.read_text() == (REPO / table).read_text()
    return rows
