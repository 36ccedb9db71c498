"""The teacher and the VITA-VLA student as models and as policies: checkpoints, batching,
gradients, ablations, and real LIBERO steps / runs."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_in_process import vitabench_in_process
from large_presets import build_cheaply
from vitabench.api.errors import VitabenchError
from vitabench.api.protocol import load_protocol
from vitabench.api.suite import Task
from vitabench.models.checkpoint import save_checkpoint, weights_hash
from vitabench.models.common import FrameBatch, action_loss
from vitabench.models.student import STUDENT_PRESETS, StudentModel
from vitabench.plugins import make_policy

CAMERAS = ("agentview", "robot0_eye_in_hand")
TASK = Task("libero_goal", 0, "test", "open the middle drawer of the cabinet", 50)
INSTRUCTIONS = ("open the middle drawer of the cabinet", "put the bowl on the plate", "turn on the stove")
RAW = {"teacher": {}, "vita_vla": {"ensemble": "none"}}  # the model policy without ensembling

torch.set_num_threads(1)
pytestmark = pytest.mark.model  # every test builds or loads a teacher or student


def observation(rng: np.random.Generator, instruction: str, size: int = 64) -> dict:
    quat = rng.normal(size=4)
    return {
        "images": {camera: rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for camera in CAMERAS},
        "state": {
            "ee_pos": rng.normal(size=3).astype(np.float32),
            "ee_quat": (quat / np.linalg.norm(quat)).astype(np.float32),
            "gripper_qpos": rng.uniform(-0.04, 0.04, size=2).astype(np.float32),
        },
        "instruction": instruction,
    }


def episode_steps(n_steps: int, n_slots: int, seed: int = 0) -> list[list[dict]]:
    rng = np.random.default_rng(seed)
    return [[observation(rng, INSTRUCTIONS[s % len(INSTRUCTIONS)]) for s in range(n_slots)] for _ in range(n_steps)]


def rollout(policy, steps: list[list[dict]]) -> list[np.ndarray]:
    for slot in range(len(steps[0])):
        policy.reset(TASK, slot=slot)
    return [policy.act(batch) for batch in steps]


@pytest.fixture(scope="module")
def policies() -> dict:
    return {name: make_policy(name, preset="tiny", device="cpu", **RAW[name]) for name in RAW}


@pytest.fixture(scope="module")
def checkpoints(policies, tmp_path_factory) -> dict[str, Path]:
    protocol = load_protocol("vita_vla_paper")
    paths = {}
    for name, policy in policies.items():
        paths[name] = tmp_path_factory.mktemp(name)
        save_checkpoint(policy.model, paths[name], dataclasses.replace(policy.spec, resolution=128), protocol)
    return paths


@pytest.mark.parametrize("name", list(RAW))
def test_save_load_round_trip_gives_identical_actions(name, policies, checkpoints):
    steps = episode_steps(n_steps=4, n_slots=2)
    before = rollout(policies[name], steps)
    loaded = make_policy(name, checkpoint=str(checkpoints[name]), device="cpu", protocol="vita_vla_paper", **RAW[name])
    after = rollout(loaded, steps)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert before[-1].shape == (2, 3, 7) and before[-1].dtype == np.float32
    assert loaded.checkpoint_hash == weights_hash(checkpoints[name] / "model.safetensors")
    assert policies[name].checkpoint_hash is None
    ensembled = make_policy(name, checkpoint=str(checkpoints[name]), device="cpu", ensemble=0.01)
    assert ensembled.spec.chunk == 1 and ensembled.checkpoint_hash == loaded.checkpoint_hash
    assert loaded.spec.cameras == CAMERAS and loaded.spec.history == 7 and loaded.spec.chunk == 3
    assert loaded.spec.resolution == 128  # the resolution it was trained at
    assert set(np.unique(after[-1][..., 6])) <= {-1.0, 1.0}
    assert np.all(np.abs(after[-1][..., :6]) <= 1.0)


@pytest.mark.parametrize("name", list(RAW))
def test_batched_act_equals_per_slot_act(name, policies):
    policy = policies[name]
    steps = episode_steps(n_steps=3, n_slots=3, seed=1)
    batched = rollout(policy, steps)
    # slot 2 restarts its episode: its history is shorter than the others' in the same batch
    policy.reset(TASK, slot=2)
    extra = episode_steps(n_steps=1, n_slots=3, seed=2)[0]
    batched.append(policy.act(extra))
    for slot in range(3):
        policy.reset(TASK, slot=slot)
        alone = [policy.act([batch[slot]], [slot]) for batch in steps]
        if slot == 2:
            policy.reset(TASK, slot=slot)
        alone.append(policy.act([extra[slot]], [slot]))
        for together, single in zip(batched, alone):
            np.testing.assert_allclose(together[slot], single[0], atol=1e-5)


def tiny_student(**overrides) -> StudentModel:
    torch.manual_seed(0)
    return StudentModel.build(dataclasses.replace(STUDENT_PRESETS["tiny"], **overrides))


def frame_batch(n_rows: int = 2, n_frames: int = 3) -> FrameBatch:
    generator = torch.Generator().manual_seed(0)
    mask = torch.ones(n_rows, n_frames, dtype=torch.bool)
    mask[0, -1] = False
    images = {c: torch.randint(0, 256, (n_rows, n_frames, 64, 64, 3), dtype=torch.uint8, generator=generator) for c in CAMERAS}
    return FrameBatch(images, torch.randn(n_rows, n_frames, 8, generator=generator), mask, list(INSTRUCTIONS[:n_rows]))


def backward(model: StudentModel) -> None:
    batch = frame_batch()
    target = torch.cat([torch.rand(2, 3, 3, 6) * 2 - 1, torch.ones(2, 3, 3, 1)], dim=-1)
    loss = action_loss(model(batch).actions, target, mask=batch.frame_mask[..., None].expand(-1, -1, 3))
    loss.backward()


def has_gradient(parameter: torch.nn.Parameter) -> bool:
    return parameter.grad is not None and bool(parameter.grad.abs().sum() > 0)


def test_student_loss_reaches_added_parts_and_nothing_frozen():
    model = tiny_student(freeze_vlm=True)
    backward(model)
    assert has_gradient(model.action_token)
    for part in (model.state_encoder, model.mapper, model.action_decoder):
        assert all(has_gradient(p) for p in part.parameters())
    assert model.vlm_trainable() == []
    assert all(p.grad is None for p in model.vlm.parameters())


def test_unfrozen_student_trains_the_language_model_but_not_vision_projector_head():
    model = tiny_student(freeze_vlm=False)
    backward(model)
    decoder_layers = [p for n, p in model.language_model.named_parameters() if n.startswith("layers.")]
    assert decoder_layers and all(has_gradient(p) for p in decoder_layers)
    frozen = [*model.vlm.model.vision_tower.parameters(), *model.vlm.model.multi_modal_projector.parameters(), model.vlm.lm_head.weight]
    assert all(p.grad is None and not p.requires_grad for p in frozen)


def test_ablations_change_the_model_and_still_act():
    model = tiny_student(action_token=False, state_encoder=False)
    assert not hasattr(model, "action_token") and not hasattr(model, "state_encoder")
    batch = frame_batch()
    with torch.inference_mode():
        actions = model(batch).newest_actions(batch)
    assert actions.shape == (2, 3, 7)
    # one readout per frame without the action token: the chunk repeats one action
    assert torch.equal(actions[:, 0], actions[:, 1]) and torch.equal(actions[:, 1], actions[:, 2])
    with_token = tiny_student()
    with torch.inference_mode():
        chunk = with_token(batch).newest_actions(batch)
    assert not torch.equal(chunk[:, 0, :6], chunk[:, 1, :6])


def per_frame_sequences(model: StudentModel, batch: FrameBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's LM input and readout positions built the plain way: each row's real frames
    one after another as ``[image tokens, instruction, state, action × chunk]``, zero-padded."""
    config = model.config
    images = batch.real_image_tokens(model)
    states = batch.state[batch.frame_mask]
    if model.state_mean is not None:
        states = (states - model.state_mean) / model.state_std
    states = model.state_encoder(states) if config.state_encoder else None
    embed = model.language_model.get_input_embeddings()
    sequences, readouts, n = [], [], 0
    for row, instruction in enumerate(batch.instructions):
        words = embed(torch.tensor(model.tokenizer(instruction, add_special_tokens=False)["input_ids"]))
        pieces = []
        for _ in range(int(batch.frame_mask[row].sum())):
            pieces += [images[n], words]
            if states is not None:
                pieces.append(states[n][None])
            if config.action_token:
                pieces += [model.action_token[None]] * config.chunk
            length = sum(len(piece) for piece in pieces)
            if config.action_token:
                readouts.append(list(range(length - config.chunk, length)))
            else:  # the frame's last prompt position, once per chunk step
                readouts.append([length - 1] * config.chunk)
            n += 1
        sequences.append(torch.cat(pieces))
    return torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True), torch.tensor(readouts)


@pytest.mark.parametrize("parts", [dict(normalize=True), dict(state_encoder=False, action_token=False)])
def test_student_sequences_equal_the_per_frame_construction(parts):
    """The student gathers its LM input in one index: on a ragged batch (rows of 3, 4 and 1 real
    frames, instructions of different lengths) it is exactly the per-frame concatenation."""
    model = tiny_student(**parts)
    if model.state_mean is not None:
        model.state_mean.copy_(torch.linspace(-1, 1, 8))
        model.state_std.copy_(torch.linspace(0.5, 2, 8))
    batch = frame_batch(n_rows=3, n_frames=4)
    batch.frame_mask[:] = torch.tensor([[True, True, True, False], [True] * 4, [True, False, False, False]])
    with torch.no_grad():
        batch.image_tokens = model.encode_images({c: v[batch.frame_mask] for c, v in batch.images.items()})
        inputs, readouts = model._sequences(batch)
        expected_inputs, expected_readouts = per_frame_sequences(model, batch)
    assert inputs.shape == expected_inputs.shape and torch.equal(inputs, expected_inputs)
    assert torch.equal(readouts, expected_readouts)


@pytest.mark.parametrize("name", list(RAW))
def test_features_of_a_frame_ignore_later_frames(name, policies):
    model = policies[name].model
    batch = frame_batch(n_rows=1, n_frames=3)
    changed = FrameBatch(
        {c: torch.cat([v[:, :2], 255 - v[:, 2:]], dim=1) for c, v in batch.images.items()},
        torch.cat([batch.state[:, :2], batch.state[:, 2:] + 1], dim=1),
        torch.ones(1, 3, dtype=torch.bool),
        batch.instructions,
    )
    batch.frame_mask[:] = True
    with torch.inference_mode():
        first, second = model(batch).action_features, model(changed).action_features
    torch.testing.assert_close(first[:, :2], second[:, :2], atol=1e-5, rtol=0)
    assert not torch.allclose(first[:, 2], second[:, 2])


def test_paper_teacher_preset_builds_with_the_papers_shape_and_acts():
    from vitabench.models.teacher import TEACHER_PRESETS

    model = build_cheaply(TEACHER_PRESETS["paper"])
    assert len(model.blocks) == 24 and model.blocks[0].heads == 12 and model.resamplers["agentview"].latents.shape == (6, 768)
    batch = frame_batch(n_rows=1, n_frames=2)  # one real frame, one padded
    with torch.inference_mode():
        output = model(batch)
    assert output.action_features.shape == (1, 2, 3, 384) and not output.action_features[0, 1].any() and output.newest_actions(batch).shape == (1, 3, 7)


def test_cpu_recipe_keeps_its_statistics_and_loads_from_half_precision(tmp_path):
    """The cpu preset (conv stem, rot6d state, normalisation): statistics set before training are
    buffers of the checkpoint; an fp16 checkpoint is half the size and acts like the fp32 model."""
    from vitabench.models.common import state_dim
    from vitabench.models.runtime import ModelPolicy
    from vitabench.models.teacher import TEACHER_PRESETS, TeacherModel

    config = TEACHER_PRESETS["cpu"]
    assert (config.image_encoder, config.state_rotation, config.normalize) == ("conv", "rot6d", True)
    torch.manual_seed(0)
    model = TeacherModel.build(config).eval()
    mean, std = torch.linspace(-1, 1, state_dim("rot6d")), torch.linspace(0.1, 2, state_dim("rot6d"))
    scale = torch.tensor([1.0, 1.0, 0.8, 0.3, 0.3, 0.5])
    model.set_normalization(mean, std, scale)
    spec = dataclasses.replace(ModelPolicy(model, device="cpu").spec, resolution=128)
    save_checkpoint(model, tmp_path / "fp32", spec, load_protocol("vita_vla_128"))
    save_checkpoint(model, tmp_path / "fp16", spec, load_protocol("vita_vla_128"), half=True)
    assert (tmp_path / "fp16" / "model.safetensors").stat().st_size < 0.55 * (tmp_path / "fp32" / "model.safetensors").stat().st_size
    full = make_policy("teacher", checkpoint=str(tmp_path / "fp32"), device="cpu")
    half = make_policy("teacher", checkpoint=str(tmp_path / "fp16"), device="cpu")
    torch.testing.assert_close(half.model.state_std, std, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(half.model.action_decoder.arm_scale, scale, rtol=1e-3, atol=1e-3)
    assert half.model.state_mean.dtype == torch.float32  # loaded into the model's own dtype
    steps = episode_steps(n_steps=3, n_slots=2)
    steps = [[dict(o, images={c: np.resize(i, (128, 128, 3)) for c, i in o["images"].items()}) for o in batch] for batch in steps]
    for a, b in zip(rollout(full, steps), rollout(half, steps)):
        np.testing.assert_allclose(a[..., :6], b[..., :6], atol=0.02)
        assert np.abs(a[..., :6]).max() <= scale.max().item() + 1e-6  # arm actions come back in action units


def test_student_of_a_cpu_teacher_reads_its_state_and_keeps_its_statistics():
    """A student distilled from a rot6d, normalised teacher reads the same 11-value state, with the
    teacher's statistics and decoder scale, and acts in action units."""
    from vitabench.models.teacher import TEACHER_PRESETS, TeacherModel
    from vitabench.training.distill import StudentOptions, build_student

    torch.manual_seed(0)
    teacher = TeacherModel.build(TEACHER_PRESETS["cpu"]).eval()
    teacher.set_normalization(torch.linspace(-1, 1, 11), torch.linspace(0.1, 2, 11), torch.tensor([1.0, 1.0, 0.8, 0.3, 0.3, 0.5]))
    student = build_student(teacher, "tiny", StudentOptions(), seed=0).eval()
    assert (student.config.state_rotation, student.config.normalize) == ("rot6d", True)
    assert student.state_encoder.arm.in_features == 9
    torch.testing.assert_close(student.state_std, teacher.state_std)
    torch.testing.assert_close(student.action_decoder.arm_scale, teacher.action_decoder.arm_scale)
    batch = FrameBatch(
        images={camera: torch.randint(0, 256, (2, 2, 128, 128, 3), dtype=torch.uint8) for camera in CAMERAS},
        state=torch.randn(2, 2, 11), frame_mask=torch.tensor([[True, True], [True, False]]), instructions=list(INSTRUCTIONS[:2]),
    )
    with torch.inference_mode():
        actions = student(batch).newest_actions(batch)
    assert actions.shape == (2, 3, 7) and (actions[..., 3:6].abs() <= 0.5 + 1e-6).all()


def test_untrained_preset_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="vitabench.policies"):
        policy = make_policy("teacher", preset="tiny", device="cpu")
    assert "UNTRAINED" in caplog.text and policy.checkpoint_hash is None


def test_missing_corrupt_and_mismatched_checkpoints_raise_naming_the_difference(checkpoints, tmp_path):
    teacher_dir = checkpoints["teacher"]

    def fails(expected: str, name: str = "teacher", **args) -> None:
        with pytest.raises(VitabenchError, match=expected):
            make_policy(name, device="cpu", **args)

    fails("is neither a directory nor a shipped teacher checkpoint; shipped: teacher_libero_object ", checkpoint=str(tmp_path / "nowhere"))
    fails("needs checkpoint=NAME|DIR or preset=NAME; shipped checkpoints: teacher_libero_object; untrained presets: tiny, paper, cpu")
    fails("shipped checkpoints: vita_vla_libero_object;", name="vita_vla")
    fails("preset='huge'; accepted: tiny, paper, cpu", preset="huge")
    fails("preset=paper needs vlm=DIR", name="vita_vla", preset="paper")
    fails("holds a 'teacher' model, not a 'vita_vla' model", name="vita_vla", checkpoint=str(teacher_dir))
    fails(r"trained with cameras agentview, robot0_eye_in_hand, not agentview", checkpoint=str(teacher_dir), cameras="agentview")
    fails(r"trained under vita_vla_paper@2#\w+, not standard@", checkpoint=str(teacher_dir), protocol="standard")
    fails("trained with state_encoder=True, not False", name="vita_vla", checkpoint=str(checkpoints["vita_vla"]), state_encoder="false")

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer").symlink_to(teacher_dir / "tokenizer")
    for file in ("config.json", "spec.json"):
        (broken / file).write_bytes((teacher_dir / file).read_bytes())
    fails("lacks model.safetensors", checkpoint=str(broken))
    weights = (teacher_dir / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    fails("corrupt or truncated", checkpoint=str(broken))
    (broken / "model.safetensors").write_bytes(weights)
    config = json.loads((teacher_dir / "config.json").read_text())
    config["config"]["hidden"] = 128
    (broken / "config.json").write_text(json.dumps(config))
    fails(r"does not fit its config: \d+ tensor shape\(s\) differ, e.g. ", checkpoint=str(broken))
    (broken / "config.json").write_text("{not json")
    fails("is not valid JSON", checkpoint=str(broken))


@pytest.mark.sim
def test_policies_step_a_real_libero_env(policies):
    pytest.importorskip("libero")
    from vitabench.envs.libero_env import LiberoEnv
    from vitabench.plugins import get_suite

    task = get_suite("libero_goal").task(0)
    protocol = load_protocol("vita_vla_paper")
    student = make_policy("vita_vla", preset="tiny", device="cpu")  # with temporal ensembling
    spec = policies["teacher"].spec
    env = LiberoEnv(task, protocol, cameras=spec.cameras, resolution=spec.resolution, state_keys=spec.state_keys)
    try:
        for policy in (policies["teacher"], student):
            obs, _ = env.reset(seed=protocol.seed, options={"init_state": 0})
            policy.reset(task, slot=0)
            start = obs["state"]["ee_pos"].copy()
            for _ in range(3):
                chunk = policy.act([obs], [0])
                assert chunk.shape[0] == 1 and chunk.shape[2] == 7 and np.isfinite(chunk).all()
                for action in chunk[0]:
                    obs, _, terminated, truncated, _ = env.step(action)
            assert obs["images"]["agentview"].shape == (128, 128, 3)
            assert not np.allclose(obs["state"]["ee_pos"], start)  # the arm moved
        assert student.spec.chunk == 1  # the ensembling wrapper returns one action per step
    finally:
        env.close()


VITABENCH = str(Path(sys.executable).parent / "vitabench")
RUN_ENV = {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "OMP_NUM_THREADS": "1"}
#: one 10-step LIBERO episode under vita_vla_paper with a --max-steps override (a derived protocol)
LIBERO_RUN = ("--suite", "libero_goal", "--tasks", "0", "--episodes-per-task", "1", "--max-steps", "10",
              "--protocol", "vita_vla_paper", "--quiet")


@pytest.fixture(scope="module")
def teacher_run(checkpoints, tmp_path_factory) -> Path:
    """The teacher checkpoint (saved under vita_vla_paper) run by the real CLI, in its own process,
    on LIBERO_RUN: the teacher's LIBERO run of this module, shared by the two tests below."""
    out = tmp_path_factory.mktemp("teacher_run") / "run"
    command = [VITABENCH, "run", "--policy", "teacher", "--policy-arg", f"checkpoint={checkpoints['teacher']}",
               "--policy-arg", "device=cpu", *LIBERO_RUN, "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, **RUN_ENV})
    assert result.returncode == 0, result.stderr[-2000:]
    return out


@pytest.mark.sim
@pytest.mark.parametrize("name", list(RAW))
def test_vitabench_run_completes_libero_episodes_with_records(name, checkpoints, request, tmp_path):
    if name == "teacher":  # a trained checkpoint: its records carry the weights' hash
        out = request.getfixturevalue("teacher_run")
        checkpoint_hash = weights_hash(checkpoints["teacher"] / "model.safetensors")
    else:  # an untrained preset: no hash
        out = tmp_path / "run"
        result = vitabench_in_process("run", "--policy", name, "--policy-arg", "preset=tiny", "--policy-arg", "device=cpu",
                                      *LIBERO_RUN, "--out", str(out), env=RUN_ENV)
        assert result.returncode == 0, result.stderr[-2000:]
        checkpoint_hash = None
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(records) == 1
    record = records[0]
    assert record["status"] == "ok", record
    assert record["policy"]["name"] == name and record["policy"]["checkpoint_hash"] == checkpoint_hash
    assert record["steps"] == 10


@pytest.mark.sim
def test_vitabench_run_refuses_a_checkpoint_under_another_protocol(checkpoints, teacher_run, tmp_path):
    """The teacher checkpoint was saved under vita_vla_paper: standard is refused (a real process:
    exit 2, the difference on stderr, nothing run); an override is not (``teacher_run``)."""
    refused = subprocess.run(
        [VITABENCH, "run", "--policy", "teacher", "--policy-arg", f"checkpoint={checkpoints['teacher']}",
         "--policy-arg", "device=cpu", "--suite", "libero_goal", "--tasks", "0", "--episodes-per-task", "1", "--quiet",
         "--protocol", "standard", "--out", str(tmp_path / "a")],
        capture_output=True, text=True, timeout=300, env={**os.environ, **RUN_ENV},
    )
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "trained under protocol vita_vla_paper@2#" in refused.stderr and "differ from standard@2#" in refused.stderr
    assert "resolution 128 vs 256" in refused.stderr
    assert not (tmp_path / "a" / "episodes.jsonl").exists()
    accepted = json.loads((teacher_run / "episodes.jsonl").read_text().splitlines()[0])
    assert accepted["status"] == "ok" and accepted["protocol"]["name"] == "vita_vla_paper+max_steps=10"
    assert accepted["policy"]["checkpoint_hash"] == weights_hash(checkpoints["teacher"] / "model.safetensors")


def cpu_student(**overrides) -> StudentModel:
    torch.manual_seed(0)
    # frame_batch's states are Euler (the preset's rot6d changes only the state encoder's input)
    return StudentModel.build(dataclasses.replace(STUDENT_PRESETS["cpu"], history=2, state_rotation="euler", **overrides), None, "cpu")


def vlm_parts(model: StudentModel) -> dict[str, set[str]]:
    """The VLM's parameter names by part: vision (tower + projector), lm (the LM body)."""
    vision = {f"model.vision_tower.{n}" for n, _ in model.vlm.model.vision_tower.named_parameters()}
    vision |= {f"model.multi_modal_projector.{n}" for n, _ in model.vlm.model.multi_modal_projector.named_parameters()}
    return {"vision": vision, "lm": {n for n, _ in model.vlm.named_parameters()} - vision}


def test_cpu_student_trains_vision_only_with_train_vision_and_round_trips(tmp_path):
    """The cpu backbone (128 px, 32 px patches: 16 tokens per camera, H=128): the trainable VLM
    parameters follow train_vision and freeze_vlm; stage 1 adds vision only with train_vision; a
    saved student loads back (fp32: identical outputs; fp16: well under the 25 MB shipping limit)."""
    from vitabench.models.checkpoint import load_model, read_checkpoint
    from vitabench.models.runtime import ModelPolicy
    from vitabench.models.student import StudentConfig

    model = cpu_student(train_vision=False)
    batch = frame_batch()
    with torch.inference_mode():
        assert model.encode_images({c: v[0] for c, v in batch.images.items()}).shape == (3, 32, 128)
    parts = vlm_parts(model)
    trainable = set(model.vlm_trainable())
    assert trainable and trainable <= parts["lm"] and not trainable & parts["vision"]
    assert "model.language_model.embed_tokens.weight" not in trainable  # tied to the frozen LM head
    for freeze_vlm, train_vision in ((False, True), (True, True), (True, False)):
        config = dataclasses.replace(model.config, freeze_vlm=freeze_vlm, train_vision=train_vision)
        trainable = set(StudentModel(config, model.vlm, model.tokenizer).vlm_trainable())
        assert bool(trainable & parts["lm"]) == (not freeze_vlm) and (parts["vision"] <= trainable) == train_vision
    aligning = cpu_student(train_vision=True)
    aligning.freeze_for_alignment()
    assert set(aligning.vlm_trainable()) == parts["vision"]
    assert aligning.action_token.requires_grad and not any(p.requires_grad for p in aligning.action_decoder.parameters())
    blind = cpu_student(train_vision=False)
    blind.freeze_for_alignment()
    assert blind.vlm_trainable() == []

    model = aligning.eval()
    spec = ModelPolicy(model, device="cpu").spec
    for name, half in (("fp32", False), ("fp16", True)):
        save_checkpoint(model, tmp_path / name, spec, half=half)
        loaded = load_model(read_checkpoint(tmp_path / name, "vita_vla"), StudentConfig, StudentModel.from_saved).eval()
        assert loaded.config == model.config and loaded.config.train_vision
        with torch.inference_mode():
            expected, actual = model(batch).action_features, loaded(batch).action_features
        if half:
            assert (tmp_path / name / "model.safetensors").stat().st_size < 20e6
            torch.testing.assert_close(actual, expected, atol=0.05, rtol=0.05)
        else:
            assert torch.equal(actual, expected)


def test_cpu_student_alignment_with_train_vision_lowers_the_loss_and_moves_the_vision_tower():
    """Stage 1's trainable set with train_vision (token, state encoder, mapper, vision tower,
    projector; the LM frozen) reduces the feature distance on a fixed batch, and the gradient
    reaches the vision tower through the frozen LM."""
    model = cpu_student(train_vision=True)
    model.freeze_for_alignment()
    batch = frame_batch()
    wanted = 0.05 * torch.randn(2, 3, 3, 128, generator=torch.Generator().manual_seed(1))
    weights = batch.frame_mask[:, :, None].expand(-1, -1, 3).float()
    patch = dict(model.vlm.model.vision_tower.named_parameters())["embeddings.patch_embedding.weight"]
    before = patch.detach().clone()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-3)
    losses = []
    for _ in range(10):
        distance = (model(batch).action_features - wanted).norm(dim=-1)
        loss = (distance * weights).sum() / weights.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    assert not torch.equal(patch, before)
    assert all(not p.requires_grad for p in model.language_model.parameters())


@pytest.mark.model
def test_tokenizers_of_identical_files_are_parsed_once_and_changed_files_afresh(tmp_path):
    from vitabench.models.common import clip_tokenizer, load_tokenizer

    clip_tokenizer().save_pretrained(tmp_path / "a")
    clip_tokenizer().save_pretrained(tmp_path / "b")
    first = load_tokenizer(tmp_path / "a")
    assert load_tokenizer(tmp_path / "b") is first and first("put the bowl")["input_ids"] == clip_tokenizer()("put the bowl")["input_ids"]
    config = json.loads((tmp_path / "b" / "tokenizer_config.json").read_text())
    (tmp_path / "b" / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 7}))
    changed = load_tokenizer(tmp_path / "b")
    assert changed is not first and changed.model_max_length == 7 and first.model_max_length != 7
