"""The whole distillation chain at tiny size on real LIBERO data, driven through the CLI:
collect scripted demos -> train the teacher -> stage 1 align -> stage 2 finetune -> evaluate
teacher and student with ``vitabench run``. Every stage's loss must fall. And the teacher
recipe's data: DART demos and DAgger rollouts whose labels are the expert's own actions on the
states that were visited (replayed here), and a teacher continued on them.

The demonstrations (one clean scripted demo, one DART demo) and the teacher trained on both are
collected and trained once for the module: the chain distils that teacher, and the DAgger
rollouts use it as their learner and the continued teacher as its ``--init``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.sim, pytest.mark.model]

ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "OMP_NUM_THREADS": "1"}
TRAIN = ["--steps", "40", "--batch-size", "4", "--lr", "1e-3", "--seed", "0", "--checkpoint-every", "20"]

#: The DART demo: the scripted expert from this init state of libero_object task 0, its executed
#: arm actions perturbed with Gaussian noise of this std. The noise is seeded by (protocol seed,
#: task, init state), so whether the expert still succeeds is fixed by the pair: choose a pair it
#: succeeds under (init state 3 with noise 0.3 failed).
DART_INIT_STATE = 3
DART_NOISE = 0.2


def vitabench(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "vitabench", *args], capture_output=True, text=True, env=ENV, timeout=900)
    assert done.returncode == 0, f"vitabench {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


def vitabench_in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """``(exit status, stderr)`` of the CLI entry point run in this process (for error paths that stop before any work)."""
    from vitabench.cli import main

    monkeypatch.setattr(sys, "argv", ["vitabench", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err


def lineage(directory: Path) -> dict:
    return json.loads((directory / "lineage.json").read_text())


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]


@dataclass(frozen=True)
class Demos:
    clean: Path  # the scripted expert from init state 0
    dart: Path  # the scripted expert from DART_INIT_STATE under DART_NOISE


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> Demos:
    root = tmp_path_factory.mktemp("demos")
    clean, dart = root / "clean.hdf5", root / "dart.hdf5"
    out = vitabench("collect", "--policy", "scripted", "--suite", "libero_object", "--tasks", "0", "--episodes", "1",
                    "--protocol", "distill_64", "--out", str(clean))
    assert "task 0: kept 1, failed 0" in out, out
    out = vitabench("collect", "--suite", "libero_object", "--tasks", "0", "--episodes", "1",
                    "--first-init-state", str(DART_INIT_STATE), "--protocol", "distill_64", "--noise", str(DART_NOISE),
                    "--out", str(dart))
    assert "task 0: kept 1, failed 0" in out, (
        f"the scripted expert failed init state {DART_INIT_STATE} under DART noise {DART_NOISE}; "
        f"choose another DART_INIT_STATE / DART_NOISE:\n{out}"
    )
    return Demos(clean, dart)


@pytest.fixture(scope="module")
def teacher(demos: Demos, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny teacher trained on both demo files."""
    out = tmp_path_factory.mktemp("teacher") / "teacher"
    vitabench("train", "teacher", "--data", str(demos.clean), "--data", str(demos.dart), "--preset", "tiny",
              "--out", str(out), *TRAIN)
    return out


def test_collect_train_distill_evaluate(demos: Demos, teacher: Path, tmp_path: Path) -> None:
    from vitabench.training.data import read_info

    clean, dart = read_info(demos.clean), read_info(demos.dart)
    for info in (clean, dart):
        assert (info.n_demos, info.resolution, info.cameras) == (1, 64, ("agentview", "robot0_eye_in_hand"))
        assert info.protocol["name"] == "distill_64"
    with h5py.File(demos.clean) as handle:
        assert json.loads(handle["data"].attrs["collected_with"]) == {"policy": "scripted", "args": {}, "noise": 0.0}
        assert int(handle["data/demo_0"].attrs["init_state"]) == 0
        assert "executed_actions" not in handle["data/demo_0"]  # the expert's own actions ran: nothing else to record

    data = ["--data", str(demos.clean), "--data", str(demos.dart)]
    aligned = tmp_path / "align"
    vitabench("distill", "--stage", "align", "--teacher", str(teacher), "--backbone", "tiny", *data, "--out", str(aligned), *TRAIN)
    student = tmp_path / "two_stage"
    vitabench("distill", "--stage", "finetune", "--from", str(aligned), *data, "--out", str(student), *TRAIN)

    for directory in (teacher, aligned, student):
        for stage in lineage(directory)["stages"]:
            assert stage["loss"]["last"] < stage["loss"]["first"], (directory.name, stage["stage"], stage["loss"])
    history = lineage(student)
    assert history["variant"] == "two-stage"
    assert [stage["stage"] for stage in history["stages"]] == ["align", "finetune"]
    assert history["teacher"]["weights_hash"] == lineage(teacher)["stages"][0]["weights_hash"]
    for stage in [*lineage(teacher)["stages"], *history["stages"]]:
        assert [(d["sha256"], d["n_demos"]) for d in stage["data"]] == [(clean.sha256, 1), (dart.sha256, 1)], stage["stage"]

    for policy, checkpoint, episodes in (("teacher", teacher, 2), ("vita_vla", student, 1)):
        run_dir = tmp_path / f"run-{policy}"
        vitabench("run", "--policy", policy, "--policy-arg", f"checkpoint={checkpoint}", "--policy-arg", "protocol=distill_64",
                  "--suite", "libero_object", "--tasks", "0", "--episodes-per-task", str(episodes), "--protocol", "distill_64",
                  "--max-steps", "12", "--out", str(run_dir), "--quiet")
        ran = records(run_dir)
        assert [e["status"] for e in ran] == ["ok"] * episodes
        assert all(e["steps"] == 12 or e["success"] for e in ran)
        assert ran[0]["policy"]["checkpoint_hash"] == lineage(checkpoint)["stages"][-1]["weights_hash"]


@pytest.fixture(scope="module")
def replay_env() -> Iterator:
    """One camera-free env of libero_object task 0 under distill_64 for every replay: a seeded
    reset to an init state is the same in a reused env as in a fresh one (collect reuses its env too)."""
    from vitabench.api.protocol import load_protocol
    from vitabench.envs.libero_env import LiberoEnv
    from vitabench.plugins import get_suite, make_policy

    env = LiberoEnv(get_suite("libero_object").task(0), load_protocol("distill_64"), privileged=True,
                    state_keys=make_policy("scripted").spec.state_keys)
    try:
        yield env
    finally:
        env.close()


def _physics(protocol) -> dict:
    """A protocol's parameters apart from its name and step limits (which a replay never reaches)."""
    return {k: v for k, v in protocol.to_dict().items() if k not in ("name", "derived_from", "max_steps")}


def expert_labels_on(env, path: Path, demo: int) -> tuple[np.ndarray, np.ndarray]:
    """``(recorded labels, the scripted expert's actions)`` along demo ``demo``'s executed actions,
    replayed from its init state in the camera-free ``env``: labels must be the expert's own."""
    from vitabench.api.protocol import Protocol
    from vitabench.plugins import make_policy

    with h5py.File(path) as handle:
        group = handle[f"data/demo_{demo}"]
        labels = np.asarray(group["actions"], dtype=np.float32)
        executed = np.asarray(group["executed_actions"], dtype=np.float32)
        task_id, init_state = int(group.attrs["task_id"]), int(group.attrs["init_state"])
        protocol = Protocol.from_dict(json.loads(handle["data"].attrs["protocol"]))
    assert task_id == env.task.task_id and _physics(protocol) == _physics(env.protocol), "replay env of another task or protocol"
    expert = make_policy("scripted")
    observation, _ = env.reset(seed=protocol.seed, options={"init_state": init_state})
    expert.reset(env.task, 0, protocol.seed)
    replayed = []
    for action in executed:
        replayed.append(expert.act([observation], [0])[0, 0])
        observation, *_ = env.step(action)
    return labels, np.stack(replayed)


def test_dart_and_dagger_data_and_a_continued_teacher(
    demos: Demos, teacher: Path, replay_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """DART runs noisy actions under clean expert labels; DAgger runs the learner (or, with
    probability beta, the expert) and labels every visited state with the expert's action; a
    teacher continued on both keeps its config and extends its lineage."""
    labels, replayed = expert_labels_on(replay_env, demos.dart, 0)
    np.testing.assert_allclose(labels, replayed, atol=1e-6)
    with h5py.File(demos.dart) as handle:
        executed = np.asarray(handle["data/demo_0/executed_actions"])
        assert int(handle["data/demo_0"].attrs["init_state"]) == DART_INIT_STATE
        assert json.loads(handle["data"].attrs["collected_with"])["noise"] == DART_NOISE
    assert np.abs(executed[:, :6] - labels[:, :6]).mean() > DART_NOISE / 3  # the noise ran, the labels stayed clean
    np.testing.assert_array_equal(executed[:, 6], labels[:, 6])  # the gripper is never perturbed

    dagger = tmp_path / "dagger.hdf5"
    out = vitabench("collect", "--suite", "libero_object", "--tasks", "0", "--episodes", "2", "--protocol", "distill_64",
                    "--max-steps", "10", "--dagger", str(teacher), "--beta", "0.5", "--out", str(dagger))
    assert "task 0: kept 2, learner failed 2 (init states 0, 1)" in out
    for demo in (0, 1):
        labels, replayed = expert_labels_on(replay_env, dagger, demo)
        np.testing.assert_allclose(labels, replayed, atol=1e-6)
    with h5py.File(dagger) as handle:
        group = handle["data/demo_0"]
        labels = np.asarray(group["actions"], dtype=np.float32)  # the expert's (replayed above)
        executed = np.asarray(group["executed_actions"], dtype=np.float32)
        assert group.attrs["dagger"] and not group.attrs["learner_success"] and len(executed) == 10
        recorded = json.loads(handle["data"].attrs["dagger"])
    assert recorded["checkpoint_hash"] == lineage(teacher)["stages"][0]["weights_hash"] and recorded["beta"] == 0.5
    ran_expert = np.all(np.abs(executed - labels) < 1e-6, axis=1)
    assert 0 < ran_expert.sum() < len(executed)  # beta 0.5: some steps the expert's, the others the learner's

    continued = tmp_path / "continued"
    vitabench("train", "teacher", "--init", str(teacher), "--data", str(demos.dart), "--data", str(dagger), "--out", str(continued), *TRAIN)
    stages = lineage(continued)["stages"]
    assert len(stages) == 2 and stages[1]["options"]["init_weights_hash"] == stages[0]["weights_hash"]
    assert json.loads((continued / "config.json").read_text())["config"] == json.loads((teacher / "config.json").read_text())["config"]
    status, stderr = vitabench_in_process(monkeypatch, capsys, "train", "teacher", "--init", str(teacher), "--history", "2",
                                          "--data", str(demos.dart), "--out", str(tmp_path / "x"), *TRAIN)
    assert status == 2 and "keeps that checkpoint's config; drop history" in stderr
    assert not (tmp_path / "x").exists()
