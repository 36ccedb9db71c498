"""The seer teacher architecture: Seer-Large's LIBERO shapes, Seer's attention layout, causality
and padding, foresight windows and the image-prediction loss (against formulas written here),
training with foresight, pretrained encoders frozen, and one-line errors for bad configs."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from large_presets import build_cheaply
from released_weights import mae_sincos_positions, seer_reference_mask

from vitabench.api.errors import VitabenchError
from vitabench.models.common import FrameBatch, count_parameters
from vitabench.models.seer import SeerTeacherModel, patch_targets, seer_layout, seer_pixels
from vitabench.models.teacher import TEACHER_PRESETS, TeacherConfig, TeacherModel
from vitabench.training.data import Demo, DemoWriter
from vitabench.training.loop import TrainSettings

torch.set_num_threads(1)
CAMERAS = ("agentview", "robot0_eye_in_hand")
INSTRUCTIONS = ["put the bowl on the plate", "open the top drawer of the cabinet"]


def frame_batch(rows: int, frames: int, size: int = 64, seed: int = 0) -> FrameBatch:
    generator = torch.Generator().manual_seed(seed)
    images = {c: torch.randint(0, 256, (rows, frames, size, size, 3), dtype=torch.uint8, generator=generator) for c in CAMERAS}
    return FrameBatch(images, torch.randn(rows, frames, 8, generator=generator), torch.ones(rows, frames, dtype=torch.bool),
                      INSTRUCTIONS[:rows])


def tiny_seer(**overrides) -> SeerTeacherModel:
    torch.manual_seed(0)
    return TeacherModel.build(dataclasses.replace(TEACHER_PRESETS["seer_tiny"], **overrides)).eval()


@pytest.mark.model
def test_seer_preset_has_seer_large_shapes_and_acts_on_cpu():
    model = build_cheaply(TEACHER_PRESETS["seer"])
    d = 384
    assert isinstance(model, SeerTeacherModel) and len(model.blocks) == 24 and model.blocks[0].heads == 12
    assert model.timestep_embedding.shape == (7, d) and model.action_queries.shape == (3, d)
    assert model.foresight_queries.shape == (2 * 9, d)
    vit = model.image_encoder.config
    assert (vit.hidden_size, vit.num_hidden_layers, vit.num_attention_heads, vit.image_size, vit.patch_size) == (768, 12, 12, 224, 16)
    text = model.text_encoder.config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.projection_dim) == (512, 12, 8, 512)
    assert model.resampler.latents.shape == (6, 768) and len(model.resampler.layers) == 3
    assert model.resampler.layers[0].query.weight.shape == (8 * 64, 768)  # 8 heads of 64, Flamingo's defaults
    assert model.image_projections["agentview"].weight.shape == (d, 768) and model.cls_projections["robot0_eye_in_hand"].weight.shape == (d, 768)
    assert model.foresight_decoder.positions.shape == (9 + 196, d) and model.foresight_decoder.head.weight.shape == (16 * 16 * 3, d)
    assert model.layout.per_frame == 2 + 2 * 7 + 18 + 3
    transformer = sum(count_parameters(b) for b in model.blocks)
    assert transformer == 24 * (12 * d * d + 13 * d)  # GPT-2 block: qkv, out, two MLP layers, two LayerNorms
    batch = frame_batch(rows=1, frames=1, size=128)
    started = time.monotonic()
    with torch.inference_mode():
        prediction = model.predict(batch, foresight=True)
    assert time.monotonic() - started < 20
    assert prediction.output.action_features.shape == (1, 1, 3, d) and prediction.images.shape == (1, 2, 196, 768)


@pytest.mark.model
def test_attention_layout_is_seers():
    model = tiny_seer()
    layout = model.layout
    assert (layout.context, layout.foresight, layout.chunk) == (2 + 2 * 5, 8, 3)
    reference = seer_reference_mask(4, layout.context, layout.foresight, layout.chunk)
    assert torch.equal(layout.attention(4), reference == 0)
    without = seer_layout(dataclasses.replace(model.config, foresight=False))
    assert torch.equal(without.attention(3), seer_reference_mask(3, without.context, 0, without.chunk) == 0)


@pytest.mark.model
def test_foresight_decoder_positions_are_maes_sine_cosine():
    model = tiny_seer()
    torch.testing.assert_close(model.foresight_decoder.positions, mae_sincos_positions(64, 4, 16), atol=1e-6, rtol=0)


@pytest.mark.model
def test_a_frame_ignores_later_frames_and_padding_changes_nothing():
    model = tiny_seer()
    batch = frame_batch(rows=2, frames=3)
    changed = FrameBatch({c: torch.cat([v[:, :2], 255 - v[:, 2:]], dim=1) for c, v in batch.images.items()},
                         torch.cat([batch.state[:, :2], batch.state[:, 2:] + 1], dim=1), batch.frame_mask, batch.instructions)
    with torch.inference_mode():
        first, second = model(batch).action_features, model(changed).action_features
        torch.testing.assert_close(first[:, :2], second[:, :2], atol=1e-5, rtol=0)
        assert not torch.allclose(first[:, 2], second[:, 2])
        padded = FrameBatch(batch.images, batch.state, torch.tensor([[True, True, False], [True, True, True]]), batch.instructions)
        short = FrameBatch({c: v[:1, :2] for c, v in batch.images.items()}, batch.state[:1, :2], torch.ones(1, 2, dtype=torch.bool),
                           batch.instructions[:1])
        torch.testing.assert_close(model(padded).action_features[0, :2], model(short).action_features[0], atol=1e-5, rtol=0)
        assert not model(padded).action_features[0, 2].any()


@pytest.mark.model
def test_foresight_loss_is_seers_formula():
    """0.5 × (MSE primary + MSE wrist) against MAE's patchify of the image, each patch normalised
    (mean, unbiased variance + 1e-6), computed here with numpy."""
    model = tiny_seer()
    generator = torch.Generator().manual_seed(1)
    future = {c: torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8, generator=generator) for c in CAMERAS}
    predicted = torch.randn(3, 2, 16, 768, generator=generator)
    valid = torch.tensor([True, False, True])
    expected = []
    for index, camera in enumerate(CAMERAS):
        pixels = seer_pixels(future[camera][valid], 64).numpy()
        n = pixels.shape[0]
        patches = np.einsum("nchpwq->nhwpqc", pixels.reshape(n, 3, 4, 16, 4, 16)).reshape(n, 16, 768)
        patches = (patches - patches.mean(-1, keepdims=True)) / np.sqrt(patches.var(-1, ddof=1, keepdims=True) + 1e-6)
        expected.append(((predicted[valid, index].numpy() - patches) ** 2).mean())
    assert model.foresight_loss(predicted, future, valid).item() == pytest.approx(np.mean(expected), rel=1e-5)
    assert patch_targets(seer_pixels(future["agentview"], 64), 16).shape == (3, 16, 768)
    assert model.foresight_loss(predicted, future, torch.zeros(3, dtype=torch.bool)).item() == 0.0


def write_demos(path: Path, lengths=(9, 6), size: int = 64) -> Path:
    """Demos whose every frame is distinguishable (its step and demo written in the pixels)."""
    with DemoWriter(path, attrs={"problem_info": {"language_instruction": INSTRUCTIONS[0]}, "env_args": {"env_name": "libero_object"}}) as writer:
        for index, steps in enumerate(lengths):
            rng = np.random.default_rng(index)
            images = rng.integers(0, 255, (steps, size, size, 3), dtype=np.uint8)
            writer.append(Demo(
                actions=rng.uniform(-1, 1, (steps, 7)).astype(np.float32), images={c: images.copy() for c in CAMERAS},
                ee_pos=rng.normal(size=(steps, 3)), ee_ori=rng.normal(scale=0.5, size=(steps, 3)),
                gripper_states=rng.normal(scale=0.02, size=(steps, 2)), joint_states=rng.normal(size=(steps, 7)),
                instruction=INSTRUCTIONS[0],
            ))
    return path


def test_foresight_windows_carry_the_image_k_steps_later_shifted_like_the_frames(tmp_path):
    from vitabench.training.foresight import ForesightWindows
    from vitabench.training.loop import Windows

    data = write_demos(tmp_path / "demos.hdf5")
    windows = ForesightWindows([data], CAMERAS, history=7, chunk=3, steps=3)
    plain = Windows([data], CAMERAS, history=7, chunk=3)
    rows = np.arange(len(windows))
    for shift in (0, 4):
        batch, targets, mask = windows.batch(rows, np.random.default_rng(7), shift)
        same, _, _ = plain.batch(rows, np.random.default_rng(7), shift)
        for camera in CAMERAS:  # the frames themselves are what plain windows give (same random draws)
            assert torch.equal(batch.images[camera], same.images[camera])
        frames = [(d, t - o) for d, t in windows.index[rows] for o in reversed(range(min(t + 1, 7)))]
        assert len(frames) == int(batch.frame_mask.sum())
        position = {frame: batch.frame_index[n].item() for n, frame in enumerate(frames)}
        for n, (demo, step) in enumerate(frames):
            has_future = step + 3 < len(windows.actions[demo])
            assert bool(batch.future_mask[n]) == has_future
            if has_future:  # the future frame is also a frame of this batch: identical pixels, shift included
                for camera in CAMERAS:
                    assert torch.equal(batch.future_images[camera][n], batch.images[camera][position[(demo, step + 3)]])
            else:
                assert not batch.future_images["agentview"][n].any()
        if shift == 0:
            assert torch.equal(batch.future_images["agentview"][0], torch.from_numpy(windows.images["agentview"][0][3]))


@pytest.mark.model
def test_training_the_seer_teacher_with_foresight_saves_a_loadable_checkpoint(tmp_path):
    from vitabench.plugins import make_policy
    from vitabench.training.teacher import train_teacher

    data = write_demos(tmp_path / "demos.hdf5")
    settings = TrainSettings(steps=3, batch_size=2, device="cpu", shift=2, checkpoint_every=100, warmup=0.0)
    result = train_teacher([data], tmp_path / "teacher", preset="seer_tiny", settings=settings, quiet=True)
    assert len(result.losses) == 3 and all(np.isfinite(result.losses))
    config = json.loads((tmp_path / "teacher" / "config.json").read_text())["config"]
    assert config["architecture"] == "seer" and config["foresight"] is True
    policy = make_policy("teacher", checkpoint=str(tmp_path / "teacher"), device="cpu")
    assert isinstance(policy.model, SeerTeacherModel)
    batch = frame_batch(rows=2, frames=2)
    trained = SeerTeacherModel.from_saved(policy.model.config, tmp_path / "teacher")
    trained.load_state_dict(policy.model.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(trained.eval()(batch).action_features, policy.model(batch).action_features)
    # the image loss reaches the foresight decoder and tokens; frozen encoders nothing
    model = tiny_seer()
    model.train()
    prediction = model.predict(batch, foresight=True)
    future = {c: v.flatten(0, 1) for c, v in batch.images.items()}
    model.foresight_loss(prediction.images, future, torch.ones(4, dtype=torch.bool)).backward()
    assert model.foresight_queries.grad.abs().sum() > 0 and model.foresight_decoder.head.weight.grad.abs().sum() > 0


def write_encoder_dirs(directory: Path) -> tuple[Path, Path]:
    """Tiny transformers CLIP and ViT-MAE directories, saved and loaded through from_pretrained."""
    from transformers import CLIPConfig, CLIPModel, ViTMAEConfig, ViTMAEForPreTraining

    from vitabench.models.common import clip_tokenizer

    torch.manual_seed(3)
    clip = CLIPModel(CLIPConfig(
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                         vocab_size=49408, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, projection_dim=48),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=16),
        projection_dim=48))
    clip.save_pretrained(directory / "clip")
    clip_tokenizer().save_pretrained(directory / "clip")
    mae = ViTMAEForPreTraining(ViTMAEConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128,
                                            image_size=64, patch_size=16, decoder_hidden_size=32, decoder_num_hidden_layers=1,
                                            decoder_num_attention_heads=2, decoder_intermediate_size=64, layer_norm_eps=1e-6))
    mae.save_pretrained(directory / "mae")
    return directory / "clip", directory / "mae"


@pytest.mark.model
def test_pretrained_encoders_are_loaded_and_frozen_when_given(tmp_path):
    from transformers import CLIPTextModelWithProjection, ViTMAEModel

    clip_dir, mae_dir = write_encoder_dirs(tmp_path)
    torch.manual_seed(0)
    model = TeacherModel.build(TEACHER_PRESETS["seer_tiny"], text_encoder_dir=str(clip_dir), image_encoder_dir=str(mae_dir))
    assert model.config.frozen_encoders == ("image", "text") and model.config.text["projection_dim"] == 48
    assert not any(p.requires_grad for p in [*model.image_encoder.parameters(), *model.text_encoder.parameters()])
    assert all(p.requires_grad for p in model.resampler.parameters())
    reference = CLIPTextModelWithProjection.from_pretrained(clip_dir).eval()
    tokens = model.tokenizer(INSTRUCTIONS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model.text_encoder(**tokens).text_embeds, reference(**tokens).text_embeds)
    mae = ViTMAEModel.from_pretrained(mae_dir)
    torch.testing.assert_close(model.image_encoder.embeddings.position_embeddings, mae.embeddings.position_embeddings)
    torch.testing.assert_close(model.image_encoder.layers[0].mlp.fc1.weight, mae.state_dict()[next(n for n in mae.state_dict() if "fc1.weight" in n)])
    # the frozen encoders keep their weights through a training step
    from vitabench.models.common import action_loss

    before = model.image_encoder.layernorm.weight.clone()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = frame_batch(rows=2, frames=2)
    action_loss(model(batch).actions, torch.zeros(2, 2, 3, 7)).backward()
    optimizer.step()
    assert torch.equal(model.image_encoder.layernorm.weight, before) and model.image_encoder.layernorm.weight.grad is None


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(architecture="gpt"), "teacher architecture='gpt'; accepted: vitabench, seer"),
        (dict(architecture="vitabench", foresight=True), "teacher foresight=true needs architecture='seer'"),
        (dict(image_encoder="conv"), "architecture='seer' reads a ViT's CLS token; image_encoder='conv', accepted: vit"),
        (dict(foresight_tokens=5), r"teacher foresight_tokens=5; accepted: a square \(4, 9, 16, ...\)"),
        (dict(hidden=72, heads=4), "teacher hidden=72 with foresight; accepted: a multiple of 16"),
        (dict(frozen_encoders=("vision",)), r"teacher frozen_encoders=\['vision'\]; accepted: any of image, text"),
    ],
)
def test_bad_seer_configs_are_named_in_one_line(changes, message):
    with pytest.raises(VitabenchError, match=message):
        dataclasses.replace(TEACHER_PRESETS["seer_tiny"], **changes)


@pytest.mark.model
def test_the_vitabench_teacher_refuses_an_image_encoder_directory_and_a_seer_config():
    with pytest.raises(VitabenchError, match="image_encoder_dir needs architecture='seer'"):
        TeacherModel.build(TEACHER_PRESETS["tiny"], image_encoder_dir="somewhere")
    with pytest.raises(VitabenchError, match="TeacherModel builds architecture 'vitabench', not 'seer'"):
        TeacherModel(TEACHER_PRESETS["seer_tiny"], tokenizer=None)
    assert TeacherConfig().architecture == "vitabench" and TeacherConfig().frozen_encoders == ()
