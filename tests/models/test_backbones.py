"""Student backbones of every accepted family, built tiny from transformers configs, saved and
loaded back through ``from_pretrained(path)``: InternVL (a list-valued image size), LLaVA, and a
synthetic VITA-1.5 directory converted to InternVL. Each runs stage 1, stage 2 and a LIBERO step;
image size, mean and std come from the directory's processor config; the student follows its
teacher's state rotation and normalisation; another family is refused in one line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_in_process import vitabench_in_process
from released_weights import write_vita15_dir

from vitabench.api.errors import VitabenchError
from vitabench.convert import convert_vita15
from vitabench.models.checkpoint import save_checkpoint
from vitabench.models.common import FrameBatch, clip_tokenizer
from vitabench.models.runtime import ModelPolicy
from vitabench.models.student import STUDENT_PRESETS, StudentModel, build_vlm_dir
from vitabench.models.teacher import TEACHER_PRESETS, TeacherModel
from vitabench.plugins import make_policy
from vitabench.training.data import Demo, DemoWriter
from vitabench.training.lineage import write_lineage
from vitabench.training.loop import TrainSettings

torch.set_num_threads(1)
pytestmark = pytest.mark.model  # every test builds or loads a student (or its teacher)
CAMERAS = ("agentview", "robot0_eye_in_hand")
INSTRUCTION = "put both the alphabet soup and the tomato sauce in the basket"
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
RESOLUTION = 128
SETTINGS = TrainSettings(steps=2, batch_size=2, device="cpu", checkpoint_every=100, shift=0, warmup=0.0)


def internvl_dir(directory: Path, image_size: list[int] | None = None) -> Path:
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    tokenizer = clip_tokenizer()
    config = InternVLConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           image_size=image_size or [56, 56], patch_size=[14, 14], attention_bias=True),
        text_config=dict(model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=4096),
        image_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(1)
    InternVLForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "GotOcr2ImageProcessor", "size": {"height": 56, "width": 56},
        "image_mean": list(IMAGENET[0]), "image_std": list(IMAGENET[1]), "do_resize": True, "do_normalize": True}))
    return directory


def llava_dir(directory: Path) -> Path:
    torch.manual_seed(2)
    build_vlm_dir("tiny", directory)
    (directory / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor", "do_center_crop": True, "crop_size": {"height": 56, "width": 56},
        "size": {"shortest_edge": 64}, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}))
    return directory


def vita_dir(directory: Path) -> Path:
    write_vita15_dir(directory / "VITA-1.5")
    convert_vita15(directory / "VITA-1.5", directory / "internvl")
    return directory / "internvl"


FAMILIES = {
    "internvl": (internvl_dir, 56, IMAGENET),
    "llava": (llava_dir, 56, ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))),
    "vita15": (vita_dir, 56, IMAGENET),
}


@pytest.fixture(scope="module")
def backbones(tmp_path_factory) -> dict[str, Path]:
    return {name: make(tmp_path_factory.mktemp(name)) for name, (make, _, _) in FAMILIES.items()}


def write_demos(path: Path, lengths: tuple[int, ...] = (8, 6)) -> Path:
    with DemoWriter(path, attrs={"problem_info": {"language_instruction": INSTRUCTION}, "env_args": {"env_name": "libero_10"}}) as writer:
        for index, steps in enumerate(lengths):
            rng = np.random.default_rng(index)
            writer.append(Demo(
                actions=rng.uniform(-1, 1, (steps, 7)).astype(np.float32),
                images={c: rng.integers(0, 255, (steps, RESOLUTION, RESOLUTION, 3), dtype=np.uint8) for c in CAMERAS},
                ee_pos=rng.normal(size=(steps, 3)), ee_ori=rng.normal(scale=0.5, size=(steps, 3)),
                gripper_states=rng.normal(scale=0.02, size=(steps, 2)), joint_states=rng.normal(size=(steps, 7)),
                instruction=INSTRUCTION,
            ))
    return path


@pytest.fixture(scope="module")
def teacher_and_data(tmp_path_factory) -> tuple[Path, Path]:
    """An (untrained) seer_tiny teacher checkpoint, normalised and rot6d like the cpu recipe, and demos."""
    directory = tmp_path_factory.mktemp("teacher")
    torch.manual_seed(0)
    config = dataclasses.replace(TEACHER_PRESETS["seer_tiny"], state_rotation="rot6d", normalize=True)
    teacher = TeacherModel.build(config)
    teacher.set_normalization(torch.linspace(-1, 1, 11), torch.linspace(0.1, 2, 11), torch.tensor([1.0, 1.0, 0.8, 0.3, 0.3, 0.5]))
    spec = dataclasses.replace(ModelPolicy(teacher, device="cpu").spec, resolution=RESOLUTION)
    save_checkpoint(teacher, directory / "teacher", spec)
    write_lineage(directory / "teacher", kind="teacher", variant="teacher", stages=[])
    return directory / "teacher", write_demos(directory / "demos.hdf5")


@pytest.fixture(scope="module")
def two_stage(backbones, teacher_and_data, tmp_path_factory) -> dict[str, Path]:
    """Stage 1 then stage 2 on every family: the stage-2 checkpoint directories."""
    from vitabench.training.distill import align, finetune

    teacher, data = teacher_and_data
    out = {}
    for name, backbone in backbones.items():
        directory = tmp_path_factory.mktemp(f"distill-{name}")
        align(teacher, str(backbone), [data], directory / "align", settings=SETTINGS, quiet=True)
        finetune([data], directory / "finetune", from_dir=directory / "align", settings=SETTINGS, quiet=True)
        out[name] = directory / "finetune"
    return out


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_family_loads_through_from_pretrained_with_its_processor_settings(name, backbones):
    _, size, (mean, std) = FAMILIES[name]
    torch.manual_seed(0)
    student = StudentModel.build(STUDENT_PRESETS["tiny"], backbones[name]).eval()
    assert (student.image_size, student.config.image_mean, student.config.image_std) == (size, mean, std)
    images = {c: torch.randint(0, 256, (3, RESOLUTION, RESOLUTION, 3), dtype=torch.uint8) for c in CAMERAS}
    with torch.inference_mode():
        tokens = student.encode_images(images)
    per_image = 4 if name != "llava" else 16  # InternVL: (56/14)² patches, pixel-shuffled by 2; LLaVA: 4 × 4 patches
    assert tokens.shape == (3, 2 * per_image, 64)
    if name == "vita15":  # VITA's projector has no LayerNorm
        assert isinstance(student.vlm.model.multi_modal_projector.layer_norm, torch.nn.Identity)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_student_follows_its_teachers_state_and_statistics_on_every_family(name, backbones, teacher_and_data):
    from vitabench.training.distill import StudentOptions, build_student, load_teacher

    teacher, _ = load_teacher(teacher_and_data[0])
    student = build_student(teacher, str(backbones[name]), StudentOptions(), seed=0).eval()
    assert (student.config.state_rotation, student.config.normalize) == ("rot6d", True)
    assert student.state_encoder.arm.in_features == 9 and student.config.latent == 64
    torch.testing.assert_close(student.state_std, teacher.state_std)
    torch.testing.assert_close(student.action_decoder.arm_scale, teacher.action_decoder.arm_scale)
    batch = FrameBatch({c: torch.randint(0, 256, (2, 2, RESOLUTION, RESOLUTION, 3), dtype=torch.uint8) for c in CAMERAS},
                       torch.randn(2, 2, 11), torch.tensor([[True, True], [True, False]]), [INSTRUCTION, INSTRUCTION])
    with torch.inference_mode():
        actions = student(batch).newest_actions(batch)
    assert actions.shape == (2, 3, 7) and (actions[..., 3:6].abs() <= 0.5 + 1e-6).all()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_stage_one_and_two_train_and_the_checkpoint_reloads_identically(name, two_stage, backbones):
    lineage = json.loads((two_stage[name] / "lineage.json").read_text())
    assert lineage["variant"] == "two-stage" and lineage["backbone"] == str(backbones[name])
    _, size, (mean, std) = FAMILIES[name]
    policy = make_policy("vita_vla", checkpoint=str(two_stage[name]), device="cpu", ensemble="none")
    assert (policy.model.image_size, policy.model.config.image_mean, policy.model.config.image_std) == (size, mean, std)
    again = make_policy("vita_vla", checkpoint=str(two_stage[name]), device="cpu", ensemble="none")
    rng = np.random.default_rng(0)
    observation = {"images": {c: rng.integers(0, 256, (RESOLUTION, RESOLUTION, 3), dtype=np.uint8) for c in CAMERAS},
                   "state": {"ee_pos": rng.normal(size=3), "ee_quat": np.array([1.0, 0, 0, 0]), "gripper_qpos": np.zeros(2)},
                   "instruction": INSTRUCTION}
    first, second = policy.act([observation]), again.act([observation])
    assert first.shape == (1, 3, 7) and np.isfinite(first).all() and np.array_equal(first, second)


@pytest.mark.sim
def test_policies_of_every_family_step_a_real_libero_env(two_stage):
    import libero  # noqa: F401  (the simulator stack this test needs)

    from vitabench.api.protocol import load_protocol
    from vitabench.envs.libero_env import LiberoEnv
    from vitabench.plugins import get_suite

    task = get_suite("libero_long").task(0)
    protocol = load_protocol("vita_vla_paper")
    policies = {name: make_policy("vita_vla", checkpoint=str(path), device="cpu") for name, path in two_stage.items()}
    spec = next(iter(policies.values())).spec
    env = LiberoEnv(task, protocol, cameras=spec.cameras, resolution=RESOLUTION, state_keys=spec.state_keys)
    try:
        for name, policy in policies.items():
            obs, _ = env.reset(seed=protocol.seed, options={"init_state": 0})
            policy.reset(task, slot=0)
            for _ in range(2):
                chunk = policy.act([obs], [0])
                assert chunk.shape == (1, 1, 7) and np.isfinite(chunk).all(), name
                obs, *_ = env.step(chunk[0, 0])
    finally:
        env.close()


def test_another_family_is_refused_naming_the_accepted_ones(tmp_path, teacher_and_data):
    from transformers import Qwen2Config

    other = tmp_path / "qwen2"
    other.mkdir()
    Qwen2Config(hidden_size=64, num_attention_heads=4).save_pretrained(other)
    accepted = r"accepted families: llava \(LlavaForConditionalGeneration\), internvl \(InternVLForConditionalGeneration\)"
    with pytest.raises(VitabenchError, match=f"holds a 'qwen2' model; {accepted}$"):
        StudentModel.build(STUDENT_PRESETS["tiny"], other)
    vita = tmp_path / "vita"
    vita.mkdir()
    (vita / "config.json").write_text(json.dumps({"model_type": "vita-Qwen2"}))
    with pytest.raises(VitabenchError, match="convert it first with 'vitabench convert vita15 DIR OUT'"):
        StudentModel.build(STUDENT_PRESETS["tiny"], vita)
    teacher, data = teacher_and_data
    # the CLI in this process (the exit code and stderr its main gives a shell; a fresh interpreter
    # would add only its imports, about 10 CPU-s): one line, exit 2, nothing written
    result = vitabench_in_process("distill", "--stage", "align", "--teacher", str(teacher), "--backbone", str(other),
                                  "--data", str(data), "--out", str(tmp_path / "out"), "--device", "cpu", "--steps", "1")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "accepted families: llava" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_non_square_image_size_is_refused(tmp_path):
    directory = internvl_dir(tmp_path / "wide", image_size=[56, 42])
    (directory / "preprocessor_config.json").unlink()
    with pytest.raises(VitabenchError, match=r"image size \[56, 42\]; accepted: a square size"):
        StudentModel.build(STUDENT_PRESETS["tiny"], directory)
