"""The VITA-VLA student shipped with vitabench (checkpoints/vita_vla_libero_object) is listed with
what it measured, descends from the shipped teacher through both distillation stages, is trained
(its open-loop error on a stored expert demo from a held-out init state is far below an untrained
student's) and solves a real LIBERO episode by name.

The demo (tests/data/teacher_demo.hdf5): the scripted expert on libero_object task 2, init state
30 (never in the data), protocol vita_vla_128, its first 40 steps; the teacher's tests use it too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SHIPPED = "vita_vla_libero_object"
TEACHER = "teacher_libero_object"
REPO = Path(__file__).resolve().parents[2]
DEMO = Path(__file__).parents[1] / "data" / "teacher_demo.hdf5"
ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "OMP_NUM_THREADS": "1"}
#: Open-loop arm error bound (action units, mean absolute over the demo's 40 steps): the shipped
#: weights measured 0.040 on it when shipped (label magnitude 0.23, gripper 39/40 right; the
#: shipped teacher 0.047); an untrained student of the same config (seed 0, the trained
#: normalisation) measured 0.243.
ARM_MAE_BOUND = 0.09


def vitabench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitabench", *args], capture_output=True, text=True, env=ENV, timeout=600)


@pytest.fixture(scope="module")
def shipped() -> tuple:
    from vitabench.models.checkpoint import load_model, resolve_checkpoint
    from vitabench.models.student import StudentConfig, StudentModel

    saved = resolve_checkpoint(SHIPPED, "vita_vla")
    return saved, load_model(saved, StudentConfig, StudentModel.from_saved)


def test_the_listing_shows_what_the_shipped_weights_measured(shipped: tuple) -> None:
    saved, _ = shipped
    listed = vitabench("list", "checkpoints", "--json")
    assert listed.returncode == 0, listed.stderr
    card = next(c for c in json.loads(listed.stdout) if c["name"] == SHIPPED)
    assert (card["policy"], card["suite"], card["tasks"]) == ("vita_vla", "libero_object", [0, 1, 2, 3, 4])
    assert card["interval"][0] <= card["success"] <= card["interval"][1] and card["episodes"] == 100
    full = json.loads((saved.directory / "card.json").read_text())
    assert full["weights_hash"] == saved.weights_hash  # the card measured these exact weights
    assert card["protocol"] == saved.protocol["ref"]


def test_the_student_descends_from_the_shipped_teacher_through_both_stages(shipped: tuple) -> None:
    from vitabench.models.checkpoint import resolve_checkpoint

    saved, model = shipped
    stages = json.loads((saved.directory / "lineage.json").read_text())["stages"]
    assert [stage["stage"] for stage in stages][-3:] == ["align", "finetune", "ship"]
    assert stages[-1]["weights_hash"] == saved.weights_hash
    teacher = resolve_checkpoint(TEACHER, "teacher")
    assert json.loads((saved.directory / "lineage.json").read_text())["teacher"]["weights_hash"] == teacher.weights_hash
    assert model.config.train_vision and model.config.state_encoder and model.config.action_token


def test_the_shipped_student_is_trained(shipped: tuple) -> None:
    import torch

    from vitabench.training.loop import Windows
    from vitabench.training.teacher import open_loop_error

    saved, model = shipped
    config = model.config
    windows = Windows([DEMO], config.cameras, config.history, config.chunk, config.state_rotation)
    trained = open_loop_error(model, windows)
    assert trained.steps == 40 and trained.arm_mae < ARM_MAE_BOUND and trained.gripper_accuracy >= 0.95, trained

    with torch.random.fork_rng():
        torch.manual_seed(0)
        untrained = model.__class__.from_saved(config, saved.directory)  # the architecture, initial weights
    untrained.load_state_dict(dict(model.named_buffers()), strict=False)  # and the trained normalisation
    fresh = open_loop_error(untrained, windows)
    assert fresh.arm_mae > 2 * ARM_MAE_BOUND, fresh  # the bound tells trained weights from untrained ones
    assert np.isclose(fresh.label_magnitude, trained.label_magnitude)


def test_vita_vla_without_a_checkpoint_names_the_shipped_student(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = vitabench("run", "--policy", "vita_vla", "--suite", "libero_long", "--out", str(out))
    assert done.returncode != 0
    assert f"shipped checkpoints: {SHIPPED};" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not out.exists()  # nothing half-written


@pytest.mark.sim
@pytest.mark.slow
def test_the_shipped_student_solves_a_held_out_episode_by_name(tmp_path: Path, shipped: tuple) -> None:
    saved, _ = shipped
    out = tmp_path / "run"
    done = vitabench("run", "--policy", "vita_vla", "--policy-arg", f"checkpoint={SHIPPED}", "--policy-arg", "ensemble=0.01",
                     "--suite", "libero_object", "--tasks", "2", "--protocol", "vita_vla_128", "--init-states", "30",
                     "--episodes-per-task", "1", "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr[-2000:]
    (record,) = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    run = json.loads((out / "run.json").read_text())
    assert run["policy"]["checkpoint_hash"] == saved.weights_hash
    assert record["status"] == "ok" and record["success"] is True and record["steps"] < 220, record


def test_the_committed_student_teacher_table_is_what_their_records_give(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """reports/student/ablation/student_vs_teacher.md is rebuilt from the committed records alone
    (both runs are complete: nothing is evaluated), pairing the student with its teacher on every
    one of the 100 held-out episodes."""
    from cli_in_process import vitabench_in_process

    from vitabench.report.ablation import ablation_table, ensure_runs, load_ablation_spec

    def no_evaluation(variant, suite, spec, run_dir):  # noqa: ANN001, ANN202 - ensure_runs' evaluate hook
        raise AssertionError(f"{variant.name} on {suite} is not complete in {run_dir}")

    monkeypatch.chdir(REPO)  # the spec's run paths are relative to the repository root
    spec = load_ablation_spec("reports/ablations/student_vs_teacher.toml")
    rows = ablation_table(spec, ensure_runs(spec, "reports/student/ablation", evaluate=no_evaluation)).set_index("variant")
    assert rows.loc["two_stage", "pairs"] == 100
    table = tmp_path / "table.md"
    result = vitabench_in_process("ablate", "reports/ablations/student_vs_teacher.toml", "--out", "reports/student/ablation",
                                  "--format", "md", "--report", str(table))
    assert result.returncode == 0, result.stderr
    assert table.read_text() == (REPO / "reports/student/ablation/student_vs_teacher.md").read_text()
