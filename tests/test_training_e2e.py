"""The whole distillation chain at tiny size on real LIBERO data, driven through the CLI:
collect scripted demos -> train the teacher -> stage 1 align -> stage 2 finetune -> evaluate
teacher and student with ``vitabench run``. Every stage's loss must fall."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "OMP_NUM_THREADS": "1"}
TRAIN = ["--steps", "40", "--batch-size", "4", "--lr", "1e-3", "--seed", "0", "--checkpoint-every", "20"]


def vitabench(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "vitabench", *args], capture_output=True, text=True, env=ENV, timeout=900)
    assert done.returncode == 0, f"vitabench {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


def lineage(directory: Path) -> dict:
    return json.loads((directory / "lineage.json").read_text())


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]


def test_collect_train_distill_evaluate(tmp_path: Path) -> None:
    demos = tmp_path / "demos.hdf5"
    out = vitabench("collect", "--policy", "scripted", "--suite", "libero_object", "--tasks", "0", "--episodes", "2",
                    "--protocol", "distill_64", "--out", str(demos))
    assert "task 0: kept 2, failed 0" in out

    from vitabench.training.data import read_info

    info = read_info(demos)
    assert (info.n_demos, info.resolution, info.cameras) == (2, 64, ("agentview", "robot0_eye_in_hand"))
    assert info.protocol["name"] == "distill_64"

    teacher = tmp_path / "teacher"
    vitabench("train", "teacher", "--data", str(demos), "--preset", "tiny", "--out", str(teacher), *TRAIN)
    aligned = tmp_path / "align"
    vitabench("distill", "--stage", "align", "--teacher", str(teacher), "--backbone", "tiny", "--data", str(demos),
              "--out", str(aligned), *TRAIN)
    student = tmp_path / "two_stage"
    vitabench("distill", "--stage", "finetune", "--from", str(aligned), "--data", str(demos), "--out", str(student), *TRAIN)

    for directory in (teacher, aligned, student):
        for stage in lineage(directory)["stages"]:
            assert stage["loss"]["last"] < stage["loss"]["first"], (directory.name, stage["stage"], stage["loss"])
    history = lineage(student)
    assert history["variant"] == "two-stage"
    assert [stage["stage"] for stage in history["stages"]] == ["align", "finetune"]
    assert history["teacher"]["weights_hash"] == lineage(teacher)["stages"][0]["weights_hash"]
    assert {stage["data"][0]["sha256"] for stage in history["stages"]} == {info.sha256}

    for policy, checkpoint in (("teacher", teacher), ("vita_vla", student)):
        run_dir = tmp_path / f"run-{policy}"
        vitabench("run", "--policy", policy, "--policy-arg", f"checkpoint={checkpoint}", "--policy-arg", "protocol=distill_64",
                  "--suite", "libero_object", "--tasks", "0", "--episodes-per-task", "2", "--protocol", "distill_64",
                  "--max-steps", "12", "--out", str(run_dir), "--quiet")
        episodes = records(run_dir)
        assert [e["status"] for e in episodes] == ["ok", "ok"]
        assert all(e["steps"] == 12 or e["success"] for e in episodes)
        assert episodes[0]["policy"]["checkpoint_hash"] == lineage(checkpoint)["stages"][-1]["weights_hash"]
