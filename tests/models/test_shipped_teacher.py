"""The teacher shipped with vitabench (checkpoints/teacher_libero_object) is listed with what it
measured, is trained (its open-loop error on a stored expert demo from a held-out init state is
far below an untrained model's) and solves a real LIBERO episode by name.

The demo (tests/data/teacher_demo.hdf5): the scripted expert on libero_object task 2, init state
30 (never in the teacher's data), protocol vita_vla_128, its first 40 steps (see tests/data/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shipped_checkpoints import assert_solves_held_out_episode, assert_trained_open_loop, committed_ablation_rows, vitabench

SHIPPED = "teacher_libero_object"
#: Open-loop arm error bound (action units, mean absolute over the demo's 40 steps): the shipped
#: weights measured 0.047 on it when shipped (label magnitude 0.23, gripper 39/40 right);
#: untrained weights of the same config (seed 0, trained normalisation) measured 0.27.
ARM_MAE_BOUND = 0.09


@pytest.fixture(scope="module")
def shipped() -> tuple:
    from vitabench.models.checkpoint import load_model, resolve_checkpoint
    from vitabench.models.teacher import TeacherConfig, TeacherModel

    saved = resolve_checkpoint(SHIPPED, "teacher")
    return saved, load_model(saved, TeacherConfig, TeacherModel.from_saved)


@pytest.mark.model
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


@pytest.mark.model
def test_the_shipped_teacher_is_trained(shipped: tuple) -> None:
    assert_trained_open_loop(*shipped, ARM_MAE_BOUND)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.model
def test_the_shipped_teacher_solves_a_held_out_episode_by_name(tmp_path: Path, shipped: tuple) -> None:
    assert_solves_held_out_episode("teacher", SHIPPED, shipped[0], tmp_path)


def test_the_committed_recipe_ablation_is_what_its_records_give(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """reports/teacher/ablation/teacher_recipe.md is rebuilt from the committed records alone (both
    runs are complete: nothing is evaluated), pairing the shipped teacher with the Euler-state one
    on every one of the 100 held-out episodes."""
    rows = committed_ablation_rows("reports/ablations/teacher_recipe.toml", "reports/teacher/ablation",
                                   "reports/teacher/ablation/teacher_recipe.md", tmp_path, monkeypatch)
    assert rows.loc["euler_state", "pairs"] == 100 and rows.loc["euler_state", "b"] + rows.loc["euler_state", "c"] > 0


def test_the_committed_dagger_ablation_is_what_its_records_give(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """reports/teacher/ablation/teacher_dagger.md is rebuilt from the committed records alone: the
    DAgger-round teacher paired with the shipped one on all 100 held-out episodes, every one
    solved by both (the table's 0 / 0, p = 1)."""
    rows = committed_ablation_rows("reports/ablations/teacher_dagger.toml", "reports/teacher/ablation",
                                   "reports/teacher/ablation/teacher_dagger.md", tmp_path, monkeypatch)
    assert rows.loc["dagger_round", "pairs"] == 100
    assert (rows.loc["dagger_round", "b"], rows.loc["dagger_round", "c"]) == (0, 0)
