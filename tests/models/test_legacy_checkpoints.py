"""Checkpoints made before the seer architecture and the backbone families keep loading and acting
identically. ``tests/data/pre_seer_golden.json`` was recorded with vitabench at commit ce31763
(before them): for the ``tiny`` and ``cpu`` teachers and the ``tiny`` student, built from
``torch.manual_seed(0)``, a digest of every weight (names, shapes, values) and the actions a
``ModelPolicy`` returned on fixed observations, plus the config.json fields of that time."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vitabench.api.suite import Task
from vitabench.models.checkpoint import CONFIG_FILE, save_checkpoint, shipped_checkpoints
from vitabench.models.runtime import ModelPolicy
from vitabench.plugins import make_policy

torch.set_num_threads(1)
pytestmark = pytest.mark.model  # every test builds or loads a teacher or student
GOLDEN = json.loads((Path(__file__).parents[1] / "data" / "pre_seer_golden.json").read_text())
TASK = Task("libero_object", 0, "t", "pick up the alphabet soup and place it in the basket", 50)
INSTRUCTIONS = ("pick up the alphabet soup and place it in the basket", "put the bowl on the plate")
SIZES = {"teacher_tiny": 64, "teacher_cpu": 128, "student_tiny": 64}


def digest(model: torch.nn.Module) -> str:
    hasher = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().contiguous().cpu()
        hasher.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        hasher.update(tensor.numpy().tobytes())
    return hasher.hexdigest()[:16]


def observations(size: int, steps: int = 3, slots: int = 2) -> list[list[dict]]:
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(steps):
        batch = []
        for slot in range(slots):
            quat = rng.normal(size=4)
            batch.append({
                "images": {c: rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for c in ("agentview", "robot0_eye_in_hand")},
                "state": {"ee_pos": rng.normal(size=3), "ee_quat": quat / np.linalg.norm(quat), "gripper_qpos": rng.uniform(-0.04, 0.04, 2)},
                "instruction": INSTRUCTIONS[slot % 2],
            })
        batches.append(batch)
    return batches


def act(policy, size: int) -> np.ndarray:
    for slot in range(2):
        policy.reset(TASK, slot=slot)
    return np.stack([policy.act(batch) for batch in observations(size)])


def build(name: str) -> torch.nn.Module:
    from vitabench.models.student import STUDENT_PRESETS, StudentModel
    from vitabench.models.teacher import TEACHER_PRESETS, TeacherModel

    torch.manual_seed(0)
    if name == "student_tiny":
        return StudentModel.build(STUDENT_PRESETS["tiny"]).eval()
    model = TeacherModel.build(TEACHER_PRESETS[name.removeprefix("teacher_")]).eval()
    if model.config.normalize:
        model.set_normalization(torch.linspace(-1, 1, 11), torch.linspace(0.1, 2, 11), torch.tensor([1.0, 1.0, 0.8, 0.3, 0.3, 0.5]))
    return model


@pytest.mark.parametrize("name", list(SIZES))
def test_presets_build_act_save_and_load_as_before(name, tmp_path):
    kind, size, extra = name.split("_")[0], SIZES[name], ({"ensemble": "none"} if name.startswith("student") else {})
    model = build(name)
    assert digest(model) == GOLDEN[name]["digest"]  # same parameter names, shapes and initial values
    actions = act(ModelPolicy(model, device="cpu"), size)
    np.testing.assert_allclose(actions, np.array(GOLDEN[name]["actions"]), rtol=0, atol=1e-6)
    spec = ModelPolicy(model, device="cpu").spec
    save_checkpoint(model, tmp_path / "new", spec)
    recorded = json.loads((tmp_path / "new" / CONFIG_FILE).read_text())["config"]
    if kind == "teacher":
        assert recorded["architecture"] == "vitabench" and recorded["frozen_encoders"] == []
    loaded = make_policy("teacher" if kind == "teacher" else "vita_vla", checkpoint=str(tmp_path / "new"), device="cpu", **extra)
    assert np.array_equal(act(loaded, size), actions)
    # a config.json as vitabench wrote it before (none of the new fields) loads to the same model
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    (tmp_path / "old" / CONFIG_FILE).write_text(json.dumps({"format": 1, "kind": kind if kind == "teacher" else "vita_vla",
                                                            "config": GOLDEN[name]["config"]}))
    old = make_policy("teacher" if kind == "teacher" else "vita_vla", checkpoint=str(tmp_path / "old"), device="cpu", **extra)
    assert old.model.config == loaded.model.config
    assert np.array_equal(act(old, size), actions)


def test_a_student_checkpoint_without_an_image_processor_file_loads_as_before(tmp_path):
    """Student checkpoints saved before kept only the VLM config and tokenizer in vlm/."""
    model = build("student_tiny")
    actions = act(ModelPolicy(model, device="cpu"), 64)
    save_checkpoint(model, tmp_path / "s", ModelPolicy(model, device="cpu").spec)
    (tmp_path / "s" / "vlm" / "preprocessor_config.json").unlink()
    loaded = make_policy("vita_vla", checkpoint=str(tmp_path / "s"), device="cpu", ensemble="none")
    assert loaded.model.image_size == 56 and np.array_equal(act(loaded, 64), actions)


def test_every_shipped_teacher_loads_and_acts():
    """The shipped checkpoints (the lead's CPU teacher once it ships) load as the current code reads them."""
    for name in shipped_checkpoints("teacher"):
        policy = make_policy("teacher", checkpoint=name, device="cpu")
        chunk = act(policy, policy.spec.resolution or 128)
        assert np.isfinite(chunk).all() and policy.model.config.architecture == "vitabench"
