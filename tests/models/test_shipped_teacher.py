"""The teacher shipped with vitabench (checkpoints/teacher_libero_object) is listed with what it
measured, is trained (its open-loop error on a stored expert demo from a held-out init state is
far below an untrained model's) and solves a real LIBERO episode by name.

The demo (tests/data/teacher_demo.hdf5): the scripted expert on libero_object task 2, init state
30 (never in the teacher's data), protocol vita_vla_128, its first 40 steps (see tests/data/README.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_in_process import vitabench_in_process

SHIPPED = "teacher_libero_object"
REPO = Path(__file__).resolve().parents[2]
DEMO = Path(__file__).parents[1] / "data" / "teacher_demo.hdf5"
ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "OMP_NUM_THREADS": "1"}
#: Open-loop arm error bound (action units, mean absolute over the demo's 40 steps): the shipped
#: weights measured 0.047 on it when shipped (label magnitude 0.23, gripper 39/40 right);
#: untrained weights of the same config (seed 0, trained normalisation) measured 0.27.
ARM_MAE_BOUND = 0.09


def vitabench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitabench", *args], capture_output=True, text=True, env=ENV, timeout=600)


@pytest.fixture(scope="module")
def shipped() -> tuple:
    from vitabench.models.checkpoint import load_model, resolve_checkpoint
    from vitabench.models.teacher import TeacherConfig, TeacherModel

    saved = resolve_checkpoint(SHIPPED, "teacher")
    return saved, load_model(saved, TeacherConfig, TeacherModel.from_saved)


def test_the_listing_shows_what_the_shipped_weights_measured(shipped: tuple) -> None:
    saved, _ = shipped
    listed = vitabench("list", "checkpoints", "--json")
    assert listed.returncode == 0, listed.stderr
    card = next(c for c in json.loads(listed.stdout) if c["name"] == SHIPPED)
    assert (card["policy"], card["suite"], card["tasks"]) == ("teacher", "libero_object", [0, 1, 2, 3, 4])
    assert card["interval"][0] <= card["success"] <= card["interval"][1] and card["episodes"] == 100
    full = json.loads((saved.directory / "card.json").read_text())
    assert full["weights_hash"] == saved.weights_hash  # the card measured these exact weights
    assert card["protocol"] == saved.protocol["ref"]  # measured under the protocol it was trained under
    trained = saved.protocol["name"]
    assert all(run["protocol"].startswith((f"{trained}@", f"{trained}+")) and run["episodes"] == 100 for run in full["evaluations"])
    lineage = json.loads((saved.directory / "lineage.json").read_text())
    assert lineage["stages"][-1]["stage"] == "ship" and lineage["stages"][-1]["weights_hash"] == saved.weights_hash


def test_the_shipped_teacher_is_trained(shipped: tuple) -> None:
    import torch

    from vitabench.training.loop import Windows
    from vitabench.training.teacher import open_loop_error

    _, model = shipped
    config = model.config
    windows = Windows([DEMO], config.cameras, config.history, config.chunk, config.state_rotation)
    trained = open_loop_error(model, windows)
    assert trained.steps == 40 and trained.arm_mae < ARM_MAE_BOUND and trained.gripper_accuracy >= 0.95, trained

    with torch.random.fork_rng():
        torch.manual_seed(0)
        untrained = model.__class__.from_saved(config, shipped[0].directory)  # the architecture, initial weights
    untrained.load_state_dict(dict(model.named_buffers()), strict=False)  # and the trained normalisation
    fresh = open_loop_error(untrained, windows)
    assert fresh.arm_mae > 2 * ARM_MAE_BOUND, fresh  # the bound tells trained weights from untrained ones
    assert np.isclose(fresh.label_magnitude, trained.label_magnitude)


@pytest.mark.sim
@pytest.mark.slow
def test_the_shipped_teacher_solves_a_held_out_episode_by_name(tmp_path: Path, shipped: tuple) -> None:
    saved, _ = shipped
    out = tmp_path / "run"
    done = vitabench("run", "--policy", "teacher", "--policy-arg", f"checkpoint={SHIPPED}", "--policy-arg", "ensemble=0.01",
                     "--suite", "libero_object", "--tasks", "2", "--protocol", "vita_vla_128", "--init-states", "30",
                     "--episodes-per-task", "1", "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr[-2000:]
    (record,) = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    run = json.loads((out / "run.json").read_text())
    assert run["policy"]["checkpoint_hash"] == saved.weights_hash
    assert record["status"] == "ok" and record["success"] is True and record["steps"] < 220, record


def test_the_committed_recipe_ablation_is_what_its_records_give(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """reports/teacher/ablation/teacher_recipe.md is rebuilt from the committed records alone (both
    runs are complete: nothing is evaluated), pairing the shipped teacher with the Euler-state one
    on every one of the 100 held-out episodes."""
    from vitabench.report.ablation import ablation_table, ensure_runs, load_ablation_spec

    def no_evaluation(variant, suite, spec, run_dir):  # noqa: ANN001, ANN202 - ensure_runs' evaluate hook
        raise AssertionError(f"{variant.name} on {suite} is not complete in {run_dir}")

    monkeypatch.chdir(REPO)  # the spec's run paths are relative to the repository root
    spec = load_ablation_spec("reports/ablations/teacher_recipe.toml")
    rows = ablation_table(spec, ensure_runs(spec, "reports/teacher/ablation", evaluate=no_evaluation)).set_index("variant")
    assert rows.loc["euler_state", "pairs"] == 100 and rows.loc["euler_state", "b"] + rows.loc["euler_state", "c"] > 0
    table = tmp_path / "table.md"
    result = vitabench_in_process("ablate", "reports/ablations/teacher_recipe.toml", "--out", "reports/teacher/ablation",
                                  "--format", "md", "--report", str(table))
    assert result.returncode == 0, result.stderr
    assert table.read_text() == (REPO / "reports/teacher/ablation/teacher_recipe.md").read_text()
