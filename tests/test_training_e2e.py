"""The whole distillation chain at tiny size on real LIBERO data, driven through the CLI:
collect scripted demos -> train the teacher -> stage 1 align -> stage 2 finetune -> evaluate
teacher and student with ``vitabench run``. Every stage's loss must fall. And the teacher
recipe's data: DART demos and DAgger rollouts whose labels are the expert's own actions on the
states that were visited (replayed here), and a teacher continued on them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
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


def expert_labels_on(path: Path, demo: int) -> tuple[np.ndarray, np.ndarray]:
    """``(recorded labels, the scripted expert's actions)`` along demo ``demo``'s executed actions,
    replayed from its init state in a camera-free env: labels must be the expert's own."""
    from vitabench.api.protocol import Protocol
    from vitabench.envs.libero_env import LiberoEnv
    from vitabench.registry import get_suite, make_policy

    with h5py.File(path) as handle:
        group = handle[f"data/demo_{demo}"]
        labels = np.asarray(group["actions"], dtype=np.float32)
        executed = np.asarray(group["executed_actions"], dtype=np.float32)
        task_id, init_state = int(group.attrs["task_id"]), int(group.attrs["init_state"])
        protocol = Protocol.from_dict(json.loads(handle["data"].attrs["protocol"]))
    task = get_suite("libero_object").task(task_id)
    expert = make_policy("scripted")
    env = LiberoEnv(task, protocol, privileged=True, state_keys=expert.spec.state_keys)
    try:
        observation, _ = env.reset(seed=protocol.seed, options={"init_state": init_state})
        expert.reset(task, 0, protocol.seed)
        replayed = []
        for action in executed:
            replayed.append(expert.act([observation], [0])[0, 0])
            observation, *_ = env.step(action)
    finally:
        env.close()
    return labels, np.stack(replayed)


def test_dart_and_dagger_data_and_a_continued_teacher(tmp_path: Path) -> None:
    """DART runs noisy actions under clean expert labels; DAgger runs the learner (or, with
    probability beta, the expert) and labels every visited state with the expert's action; a
    teacher continued on both keeps its config and extends its lineage."""
    dart = tmp_path / "dart.hdf5"
    out = vitabench("collect", "--suite", "libero_object", "--tasks", "0", "--episodes", "1", "--first-init-state", "3",
                    "--protocol", "distill_64", "--noise", "0.3", "--out", str(dart))
    assert "task 0: kept 1, failed 0" in out
    labels, replayed = expert_labels_on(dart, 0)
    np.testing.assert_allclose(labels, replayed, atol=1e-6)
    with h5py.File(dart) as handle:
        executed = np.asarray(handle["data/demo_0/executed_actions"])
        assert json.loads(handle["data"].attrs["collected_with"])["noise"] == 0.3
    assert np.abs(executed[:, :6] - labels[:, :6]).mean() > 0.1  # the noise ran, the labels stayed clean
    np.testing.assert_array_equal(executed[:, 6], labels[:, 6])  # the gripper is never perturbed

    teacher = tmp_path / "teacher"
    vitabench("train", "teacher", "--data", str(dart), "--preset", "tiny", "--out", str(teacher), *TRAIN)
    dagger = tmp_path / "dagger.hdf5"
    out = vitabench("collect", "--suite", "libero_object", "--tasks", "0", "--episodes", "2", "--protocol", "distill_64",
                    "--max-steps", "10", "--dagger", str(teacher), "--beta", "0.5", "--out", str(dagger))
    assert "task 0: kept 2, learner failed 2 (init states 0, 1)" in out
    for demo in (0, 1):
        labels, replayed = expert_labels_on(dagger, demo)
        np.testing.assert_allclose(labels, replayed, atol=1e-6)
    with h5py.File(dagger) as handle:
        group = handle["data/demo_0"]
        executed = np.asarray(group["executed_actions"])
        assert group.attrs["dagger"] and not group.attrs["learner_success"] and len(executed) == 10
        recorded = json.loads(handle["data"].attrs["dagger"])
    assert recorded["checkpoint_hash"] == lineage(teacher)["stages"][0]["weights_hash"] and recorded["beta"] == 0.5
    ran_expert = np.all(np.abs(executed - labels) < 1e-6, axis=1)
    assert 0 < ran_expert.sum() < len(executed)  # beta 0.5: some steps the expert's, the others the learner's

    continued = tmp_path / "continued"
    vitabench("train", "teacher", "--init", str(teacher), "--data", str(dart), "--data", str(dagger), "--out", str(continued), *TRAIN)
    stages = lineage(continued)["stages"]
    assert len(stages) == 2 and stages[1]["options"]["init_weights_hash"] == stages[0]["weights_hash"]
    assert json.loads((continued / "config.json").read_text())["config"] == json.loads((teacher / "config.json").read_text())["config"]
    bad = subprocess.run([sys.executable, "-m", "vitabench", "train", "teacher", "--init", str(teacher), "--history", "2",
                          "--data", str(dart), "--out", str(tmp_path / "x")], capture_output=True, text=True, env=ENV, timeout=300)
    assert bad.returncode == 2 and "keeps that checkpoint's config; drop history" in bad.stderr
