"""``vitabench convert``: synthetic released weights with their projects' own names and shapes
(tests/models/released_weights.py) become a teacher checkpoint (Seer) and an InternVL directory
(VITA-1.5); every tensor placed or named as unused, none left over; the converted models compute
what the source formulas compute; bad input is one line and nothing is written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_in_process import vitabench_in_process
from released_weights import (
    SEER_SIZES,
    VITA_SIZES,
    clip_state,
    clip_text,
    gpt2_block,
    mae_encoder,
    mae_state,
    perceiver_layer,
    seer_reference_mask,
    seer_state,
    vita_image_features,
    write_seer_files,
    write_vita15_dir,
)

from vitabench.api.errors import VitabenchError
from vitabench.convert import REPORT_FILE, convert_seer, convert_vita15
from vitabench.models.common import FrameBatch, clip_tokenizer
from vitabench.models.seer import seer_pixels
from vitabench.plugins import make_policy

torch.set_num_threads(1)
CAMERAS = ("agentview", "robot0_eye_in_hand")
SEER_UNUSED_PREFIXES = ("action_pose_encoder.", "action_gripper_position_encoder.", "action_projector.", "recon_")


@pytest.fixture(scope="module")
def seer_files(tmp_path_factory) -> dict[str, Path]:
    return write_seer_files(tmp_path_factory.mktemp("seer"))


@pytest.fixture(scope="module")
def converted(seer_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "teacher"
    convert_seer(seer_files["checkpoint"], out, mae=seer_files["mae"], clip=seer_files["clip"], heads=SEER_SIZES["heads"])
    return out


def load_teacher(directory: Path):
    return make_policy("teacher", checkpoint=str(directory), device="cpu").model


@pytest.mark.model
def test_every_seer_tensor_is_placed_or_named_unused_and_none_left_over(converted):
    report = json.loads((converted / REPORT_FILE).read_text())
    sources = set(seer_state()) | {f"vision_encoder.{n}" for n in mae_state()} | {f"clip_model.{n}" for n in clip_state()}
    used = {s for names in report["placed"].values() for s in names} | set(report["dropped"]) | set(report["checked"])
    assert used == sources
    # dropped: exactly Seer's never-called modules, MAE's decoder, CLIP's image tower and archive metadata
    expected_dropped = {n for n in seer_state() if n.startswith(SEER_UNUSED_PREFIXES)}
    expected_dropped |= {f"vision_encoder.{n}" for n in mae_state() if n.startswith(("decoder", "mask_token"))}
    expected_dropped |= {f"clip_model.{n}" for n in clip_state() if n.startswith(("visual.", "logit_scale", "input_", "context_", "vocab_"))}
    assert set(report["dropped"]) == expected_dropped
    model = load_teacher(converted)
    assert set(report["placed"]) == set(model.state_dict())  # every teacher tensor filled
    config = json.loads((converted / "config.json").read_text())["config"]
    assert (config["architecture"], config["foresight"], config["foresight_tokens"], config["history"]) == ("seer", True, 4, 7)
    assert config["frozen_encoders"] == ["image", "text"] and config["heads"] == SEER_SIZES["heads"]
    assert not any(p.requires_grad for p in model.image_encoder.parameters())


@pytest.mark.model
def test_tensors_land_transformed_as_seer_stores_them(converted):
    source, mae, clip = seer_state(), mae_state(), clip_state()
    weights = load_teacher(converted).state_dict()
    torch.testing.assert_close(weights["blocks.1.qkv.weight"], source["transformer_backbone.h.1.attn.c_attn.weight"].t())  # Conv1D
    torch.testing.assert_close(weights["action_queries"], source["action_pred_token"][0, 0])
    torch.testing.assert_close(weights["timestep_embedding"], source["transformer_backbone_position_embedding"][0, :, 0])
    torch.testing.assert_close(weights["image_projections.robot0_eye_in_hand.weight"], source["image_wrist_projector.weight"])
    torch.testing.assert_close(weights["action_decoder.gripper_head.bias"], source["gripper_action_decoder.0.bias"])
    q, k, v = mae["blocks.0.attn.qkv.weight"].chunk(3)
    torch.testing.assert_close(weights["image_encoder.layers.0.attention.k_proj.weight"], k)
    torch.testing.assert_close(weights["text_encoder.text_projection.weight"], clip["text_projection"].t())
    bias_q = clip["transformer.resblocks.0.attn.in_proj_bias"].chunk(3)[0]
    torch.testing.assert_close(weights["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.bias"], bias_q)


@pytest.mark.model
def test_one_gpt2_layer_and_the_resampler_compute_seers_formula(converted):
    source = seer_state()
    model = load_teacher(converted).eval()
    generator = torch.Generator().manual_seed(5)
    frames, layout = 2, model.layout
    x = torch.randn(1, frames * layout.per_frame, SEER_SIZES["hidden"], generator=generator)
    additive = seer_reference_mask(frames, layout.context, layout.foresight, layout.chunk)
    with torch.no_grad():
        ours = model.blocks[1](x, layout.attention(frames))
    torch.testing.assert_close(ours, gpt2_block(x, source, "transformer_backbone.h.1", SEER_SIZES["heads"], additive), atol=1e-5, rtol=1e-4)
    media = torch.randn(2, 16, SEER_SIZES["width"], generator=generator)
    latents = source["perceiver_resampler.latents"].expand(2, -1, -1)
    with torch.no_grad():
        ours = model.resampler.layers[0](media, latents)
    torch.testing.assert_close(ours, perceiver_layer(media, latents, source, "perceiver_resampler.layers.0"), atol=1e-5, rtol=1e-4)


def seer_reference_features(batch: FrameBatch, source: dict, mae: dict, clip: dict, image_size: int) -> torch.Tensor:
    """Seer's forward (SeerAgent.forward, eval) from Seer's own tensors, written from its code:
    the transformer outputs at the action tokens ``[B, T, chunk, D]``."""
    s = SEER_SIZES
    rows, frames = batch.frame_mask.shape
    ids = clip_tokenizer()(batch.instructions, padding="max_length", max_length=77, return_tensors="pt")["input_ids"]
    text = clip_text(ids, clip, heads=s["text_width"] // 64) @ source["text_projector.weight"].t() + source["text_projector.bias"]
    linear = lambda x, n: x @ source[f"{n}.weight"].t() + source[f"{n}.bias"]  # noqa: E731
    state = linear(torch.cat([linear(batch.state[..., :6], "arm_state_encoder"), linear(batch.state[..., 6:], "gripper_state_encoder")], -1),
                   "state_projector")
    images, cls_tokens = [], []
    for camera, seer_name in zip(CAMERAS, ("primary", "wrist")):
        features = mae_encoder(seer_pixels(batch.images[camera].flatten(0, 1), image_size), mae, heads=s["width"] // 64)
        latents = source["perceiver_resampler.latents"].expand(features.shape[0], -1, -1)
        latents = perceiver_layer(features[:, 1:], latents, source, "perceiver_resampler.layers.0")
        latents = torch.nn.functional.layer_norm(latents, (s["width"],), source["perceiver_resampler.norm.weight"], source["perceiver_resampler.norm.bias"])
        images.append(linear(latents, f"image_{seer_name}_projector").view(rows, frames, -1, s["hidden"]))
        cls_tokens.append(linear(features[:, :1], f"cls_token_{seer_name}_projector").view(rows, frames, 1, s["hidden"]))
    tokens = torch.cat([text[:, None, None].expand(-1, frames, 1, -1), state[:, :, None], *images, *cls_tokens,
                        source["obs_tokens"].expand(rows, frames, -1, -1), source["action_pred_token"].expand(rows, frames, -1, -1)], dim=2)
    tokens = tokens + source["transformer_backbone_position_embedding"][:, :frames]
    per = tokens.shape[2]
    x = torch.nn.functional.layer_norm(tokens.flatten(1, 2), (s["hidden"],), source["embedding_layer_norm.weight"], source["embedding_layer_norm.bias"])
    mask = seer_reference_mask(frames, 2 + 2 * (s["queries"] + 1), 2 * s["obs_per_image"], s["chunk"])
    for i in range(s["layers"]):
        x = gpt2_block(x, source, f"transformer_backbone.h.{i}", s["heads"], mask)
    x = torch.nn.functional.layer_norm(x, (s["hidden"],), source["transformer_backbone.ln_f.weight"], source["transformer_backbone.ln_f.bias"])
    return x.view(rows, frames, per, -1)[:, :, -s["chunk"]:]


@pytest.mark.model
def test_the_converted_teacher_computes_seers_forward_pass(converted):
    """Actions of the converted teacher == Seer's forward written from its code, on Seer's tensors
    (MAE and CLIP included): the whole mapping, the layout and the formulas at once."""
    source, mae, clip = seer_state(), mae_state(), clip_state()
    model = load_teacher(converted).eval()
    generator = torch.Generator().manual_seed(3)
    images = {c: torch.randint(0, 256, (2, 3, 128, 128, 3), dtype=torch.uint8, generator=generator) for c in CAMERAS}
    batch = FrameBatch(images, torch.randn(2, 3, 8, generator=generator), torch.ones(2, 3, dtype=torch.bool),
                       ["put the bowl on the plate", "open the top drawer"])
    with torch.no_grad():
        ours = model(batch).action_features
        expected = seer_reference_features(batch, source, mae, clip, model.image_size)
    torch.testing.assert_close(ours, expected, atol=2e-4, rtol=1e-3)
    # Seer's heads: arm tanh(...), gripper sigmoid(...) > 0.5
    trunk = lambda x, n: torch.relu(x @ source[f"{n}.weight"].t() + source[f"{n}.bias"])  # noqa: E731
    hidden = trunk(trunk(expected, "action_decoder.0"), "action_decoder.2")
    arm = torch.tanh(hidden @ source["arm_action_decoder.0.weight"].t() + source["arm_action_decoder.0.bias"])
    torch.testing.assert_close(model(batch).actions.arm.detach(), arm, atol=2e-4, rtol=1e-3)


@pytest.mark.model
def test_a_checkpoint_holding_everything_converts_alone_and_checks_the_fixed_tensors(tmp_path):
    files = write_seer_files(tmp_path / "all", everything=True)
    report = convert_seer(files["checkpoint"], tmp_path / "out", heads=SEER_SIZES["heads"])
    assert sorted(report.checked) == ["attention_mask", "image_decoder_position_embedding"]
    assert load_teacher(tmp_path / "out").config.frozen_encoders == ("image", "text")
    # a mask of another layout is refused, naming it
    checkpoint = torch.load(files["checkpoint"], weights_only=True)
    checkpoint["model_state_dict"]["module.attention_mask"] = torch.zeros_like(checkpoint["model_state_dict"]["module.attention_mask"])
    torch.save(checkpoint, tmp_path / "other.pth")
    with pytest.raises(VitabenchError, match="attention_mask differs from vitabench's computed one"):
        convert_seer(tmp_path / "other.pth", tmp_path / "out2", heads=SEER_SIZES["heads"])
    assert not (tmp_path / "out2").exists()


@pytest.mark.model
def test_the_converted_teacher_acts_and_distils_like_any_teacher(converted, seer_files, tmp_path):
    from test_seer import write_demos

    from vitabench.training.distill import StudentOptions, align, build_student
    from vitabench.models.checkpoint import read_lineage
    from vitabench.training.loop import TrainSettings

    policy = make_policy("teacher", checkpoint=str(converted), device="cpu", protocol="vita_vla_paper")
    assert policy.spec.resolution == 128 and policy.spec.history == 7
    rng = np.random.default_rng(0)
    observation = {"images": {c: rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for c in CAMERAS},
                   "state": {"ee_pos": rng.normal(size=3), "ee_quat": np.array([0, 0, 0, 1.0]), "gripper_qpos": np.zeros(2)},
                   "instruction": "put the bowl on the plate"}
    chunk = policy.act([observation])
    assert chunk.shape == (1, 3, 7) and np.isfinite(chunk).all()
    student = build_student(policy.model, "tiny", StudentOptions(), seed=0)
    assert student.config.latent == SEER_SIZES["hidden"]
    torch.testing.assert_close(student.action_decoder.arm_head.weight, policy.model.action_decoder.arm_head.weight)
    (stage,) = read_lineage(converted)["stages"]
    assert stage["stage"] == "convert" and stage["source"] == "seer" and stage["weights_hash"] == policy.checkpoint_hash
    assert {i["role"]: i["path"] for i in stage["inputs"]}["checkpoint"] == str(seer_files["checkpoint"])
    data = write_demos(tmp_path / "demos.hdf5", size=128)
    settings = TrainSettings(steps=1, batch_size=2, device="cpu", checkpoint_every=100, shift=0, warmup=0.0)
    align(converted, "tiny", [data], tmp_path / "align", settings=settings, quiet=True)
    assert read_lineage(tmp_path / "align")["teacher"]["weights_hash"] == policy.checkpoint_hash


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: (d / "x.pth").write_text("not a checkpoint"), "cannot be read as a PyTorch checkpoint"),
        (lambda d: torch.save({"model": {}}, d / "x.pth"), r"not a Seer checkpoint: .*x.pth lacks model_state_dict \(it holds: model\)"),
        (lambda d: torch.save({"model_state_dict": {"module.text_projector.weight": torch.zeros(2, 2)}}, d / "x.pth"),
         "not a Seer checkpoint: .*model_state_dict lacks arm_state_encoder.weight, perceiver_resampler.latents"),
    ],
)
def test_a_file_that_is_not_a_seer_checkpoint_is_named_in_one_line(tmp_path, make, expected):
    make(tmp_path)
    with pytest.raises(VitabenchError, match=expected):
        convert_seer(tmp_path / "x.pth", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pth"]  # nothing written, no staging left


@pytest.mark.model
def test_missing_encoders_and_an_existing_output_are_refused(seer_files, converted, tmp_path):
    with pytest.raises(VitabenchError, match="holds no vision_encoder .* accepted: --mae"):
        convert_seer(seer_files["checkpoint"], tmp_path / "out", clip=seer_files["clip"])
    with pytest.raises(VitabenchError, match="exists; accepted: a new directory"):
        convert_seer(seer_files["checkpoint"], converted, mae=seer_files["mae"], clip=seer_files["clip"])
    with pytest.raises(VitabenchError, match="is not OpenAI CLIP"):
        convert_seer(seer_files["checkpoint"], tmp_path / "out", mae=seer_files["mae"], clip=seer_files["mae"])
    assert not (tmp_path / "out").exists()


@pytest.mark.model
def test_the_command_line_converts_and_reports_bad_input_in_one_line(seer_files, tmp_path):
    # the CLI in this process: exit codes, stdout and stderr as a shell sees them, without a
    # fresh interpreter importing torch twice
    ok = vitabench_in_process("convert", "seer", str(seer_files["checkpoint"]), str(tmp_path / "t"), "--mae", str(seer_files["mae"]),
                              "--clip", str(seer_files["clip"]), "--heads", "4")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "tensors placed" in ok.stdout and "never called by SeerAgent.forward" in ok.stdout
    bad = vitabench_in_process("convert", "seer", str(seer_files["mae"]), str(tmp_path / "u"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a Seer checkpoint" in bad.stderr
    assert not (tmp_path / "u").exists()


# -- VITA-1.5 ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vita(tmp_path_factory) -> tuple[Path, dict, Path]:
    directory = tmp_path_factory.mktemp("vita") / "VITA-1.5"
    tensors = write_vita15_dir(directory)
    out = directory.parent / "internvl"
    convert_vita15(directory, out)
    return directory, tensors, out


@pytest.mark.model
def test_vita15_becomes_an_internvl_directory_with_every_tensor_placed(vita):
    from safetensors import safe_open

    directory, tensors, out = vita
    report = json.loads((out / REPORT_FILE).read_text())
    used = {s for names in report["placed"].values() for s in names} | set(report["dropped"])
    assert used == set(tensors) and set(report["dropped"]) == {n for n in tensors if ".audio_" in n}
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "internvl" and config["projector_layer_norm"] is False
    assert config["text_config"]["rope_parameters"]["rope_theta"] == 1000000.0 and config["vision_config"]["image_size"] == [56, 56]
    index = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    assert set(index) == set(report["placed"]) and not any("layer_norm" in n and "projector" in n for n in index)
    with safe_open(str(out / index["model.multi_modal_projector.linear_1.weight"]), "pt") as handle:
        torch.testing.assert_close(handle.get_tensor("model.multi_modal_projector.linear_1.weight"), 0.5 * tensors["model.mm_projector.0.weight"])
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 56, "width": 56} and processor["image_mean"] == [0.485, 0.456, 0.406]


@pytest.mark.model
def test_the_internvl_directory_computes_vitas_image_features_and_keeps_its_language_model(vita):
    from vitabench.models.backbones import load_backbone

    _, tensors, out = vita
    vlm, _, image = load_backbone(out)  # transformers' from_pretrained, then no projector LayerNorm
    assert image.size == 56 and image.mean == (0.485, 0.456, 0.406)
    pixels = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = vlm.get_image_features(pixel_values=pixels).pooler_output
    torch.testing.assert_close(ours, vita_image_features(pixels, tensors), atol=1e-5, rtol=1e-4)
    weights = vlm.state_dict()
    for name in ("model.layers.1.self_attn.k_proj.bias", "model.layers.0.mlp.down_proj.weight", "model.embed_tokens.weight"):
        torch.testing.assert_close(weights[name.replace("model.", "model.language_model.", 1)], tensors[name])
    torch.testing.assert_close(weights["lm_head.weight"], tensors["lm_head.weight"])


@pytest.mark.model
def test_vita15_bad_input_is_one_line_and_writes_nothing(vita, tmp_path):
    directory, _, _ = vita
    with pytest.raises(VitabenchError, match="not a VITA-1.5 directory: .* has model_type 'internvl'; accepted: vita-Qwen2"):
        convert_vita15(vita[2], tmp_path / "a")
    config = json.loads((directory / "config.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    for name in os.listdir(directory):
        if name != "InternViT-tiny":
            (other / name).symlink_to(directory / name)
    with pytest.raises(VitabenchError, match="vision tower InternViT-tiny is not found; accepted: --vision-tower DIR"):
        convert_vita15(other, tmp_path / "b")
    assert config["model_type"] == "vita-Qwen2" and not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]


@pytest.mark.model
def test_vita15_image_size_option_sets_what_the_student_feeds_it(vita, tmp_path):
    directory, _, _ = vita
    convert_vita15(directory, tmp_path / "small", image_size=28)
    processor = json.loads((tmp_path / "small" / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 28, "width": 28}
    assert VITA_SIZES["image"] == 56


@pytest.mark.sim
@pytest.mark.model
def test_a_converted_seer_teacher_steps_a_real_libero_env(converted):
    import libero  # noqa: F401  (the simulator stack this test needs)

    from vitabench.api.protocol import load_protocol
    from vitabench.envs.libero_env import LiberoEnv
    from vitabench.plugins import get_suite

    task = get_suite("libero_long").task(0)
    protocol = load_protocol("vita_vla_paper")
    policy = make_policy("teacher", checkpoint=str(converted), device="cpu", protocol="vita_vla_paper")
    spec = policy.spec
    env = LiberoEnv(task, protocol, cameras=spec.cameras, resolution=spec.resolution, state_keys=spec.state_keys)
    try:
        obs, _ = env.reset(seed=protocol.seed, options={"init_state": 0})
        policy.reset(task, slot=0)
        start = obs["state"]["ee_pos"].copy()
        for _ in range(2):
            chunk = policy.act([obs], [0])
            assert chunk.shape == (1, 3, 7) and np.isfinite(chunk).all()
            for action in chunk[0]:
                obs, *_ = env.step(action)
        assert obs["images"]["agentview"].shape == (128, 128, 3) and not np.allclose(obs["state"]["ee_pos"], start)
    finally:
        env.close()
