"""Synthetic released weights at test size, with their projects' own tensor names and shapes
(random values), and reference forward passes written from those projects' formulas:

- a Seer checkpoint as OpenRobotLab/Seer's ``train.py`` saves a DDP ``SeerAgent``
  (``models/seer_model.py``): ``{"model_state_dict": {"module.<name>": ...}}`` with trainable
  tensors only (GPT-2 ``Conv1D`` weights ``[in, out]``, ``models/gpt2.py``; Flamingo's resampler
  ``models/perceiver_resampler.py``), unused modules included;
- MAE's ViT file (``{"model": ...}``, ``models/vit_mae.py`` ``MaskedAutoencoderViT``, decoder included);
- OpenAI CLIP's state dict (openai/CLIP ``clip/model.py``, image tower included);
- a VITA-1.5 directory (VITA-MLLM/VITA ``VITAQwen2ForCausalLM``: ``model.vision_tower.vision_tower.``
  InternViT, ``model.mm_projector`` mlp2x_gelu, Qwen2 LM, an audio encoder), in two shards.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch.nn import functional as F

SEER_SIZES = dict(hidden=64, layers=2, heads=4, frames=7, chunk=3, queries=4, resampler_layers=1, width=64,
                  resampler_inner=128, obs_per_image=4, image=64, patch=16, text_width=64, text_layers=1)


def _random(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in shapes.items():
        value = torch.randn(shape, generator=generator) * 0.1
        is_norm = name.endswith(".weight") and len(shape) == 1 and any(k in name for k in ("norm", "ln", "layernorm"))
        tensors[name] = value + 1.0 if is_norm else value
    return tensors


class _Shapes(dict):
    def linear(self, name: str, out: int, inp: int, bias: bool = True) -> None:
        self[f"{name}.weight"] = (out, inp)
        if bias:
            self[f"{name}.bias"] = (out,)

    def norm(self, name: str, dim: int) -> None:
        self[f"{name}.weight"] = (dim,)
        self[f"{name}.bias"] = (dim,)


def seer_state(seed: int = 0, **overrides: int) -> dict[str, torch.Tensor]:
    """A SeerAgent's trainable tensors (obs_pred on, gripper_width), names without ``module.``."""
    s = {**SEER_SIZES, **overrides}
    h, w, inner = s["hidden"], s["width"], s["resampler_inner"]
    shapes = _Shapes()
    shapes.linear("text_projector", h, s["text_width"])
    shapes.linear("arm_state_encoder", h, 6)
    shapes.linear("gripper_state_encoder", h, 2)
    shapes.linear("state_projector", h, 2 * h)
    shapes.linear("action_pose_encoder", h, 6)
    shapes.linear("action_gripper_position_encoder", h, 2)
    shapes.linear("action_projector", h, 2 * h)
    shapes["perceiver_resampler.latents"] = (s["queries"], w)
    for i in range(s["resampler_layers"]):
        layer = f"perceiver_resampler.layers.{i}"
        shapes.norm(f"{layer}.0.norm_media", w)
        shapes.norm(f"{layer}.0.norm_latents", w)
        shapes.linear(f"{layer}.0.to_q", inner, w, bias=False)
        shapes.linear(f"{layer}.0.to_kv", 2 * inner, w, bias=False)
        shapes.linear(f"{layer}.0.to_out", w, inner, bias=False)
        shapes.norm(f"{layer}.1.0", w)
        shapes.linear(f"{layer}.1.1", 4 * w, w, bias=False)
        shapes.linear(f"{layer}.1.3", w, 4 * w, bias=False)
    shapes.norm("perceiver_resampler.norm", w)
    for camera in ("primary", "wrist"):
        shapes.linear(f"image_{camera}_projector", h, w)
        shapes.linear(f"cls_token_{camera}_projector", h, w)
    shapes["action_pred_token"] = (1, 1, s["chunk"], h)
    shapes["obs_tokens"] = (1, 1, 2 * s["obs_per_image"], h)
    shapes.norm("embedding_layer_norm", h)
    shapes["transformer_backbone_position_embedding"] = (1, s["frames"], 1, h)
    for i in range(s["layers"]):
        block = f"transformer_backbone.h.{i}"
        shapes.norm(f"{block}.ln_1", h)
        shapes[f"{block}.attn.c_attn.weight"] = (h, 3 * h)  # Conv1D: [in, out]
        shapes[f"{block}.attn.c_attn.bias"] = (3 * h,)
        shapes[f"{block}.attn.c_proj.weight"] = (h, h)
        shapes[f"{block}.attn.c_proj.bias"] = (h,)
        shapes.norm(f"{block}.ln_2", h)
        shapes[f"{block}.mlp.c_fc.weight"] = (h, 4 * h)
        shapes[f"{block}.mlp.c_fc.bias"] = (4 * h,)
        shapes[f"{block}.mlp.c_proj.weight"] = (4 * h, h)
        shapes[f"{block}.mlp.c_proj.bias"] = (h,)
    shapes.norm("transformer_backbone.ln_f", h)
    shapes.linear("action_decoder.0", h // 2, h)
    shapes.linear("action_decoder.2", h // 2, h // 2)
    shapes.linear("arm_action_decoder.0", 6, h // 2)
    shapes.linear("gripper_action_decoder.0", 1, h // 2)
    shapes.linear("recon_state_decoder.0", h // 2, h)
    shapes.linear("recon_state_decoder.2", h // 2, h // 2)
    shapes.linear("recon_arm_state_decoder.0", 6, h // 2)
    shapes.linear("recon_gripper_state_decoder.0", 1, h // 2)
    shapes["mask_token"] = (1, 1, h)
    shapes.linear("image_decoder_obs_pred_projector", h, h)
    for j in range(2):
        shapes.norm(f"image_decoder.{j}.norm1", h)
        shapes.linear(f"image_decoder.{j}.attn.qkv", 3 * h, h)
        shapes.linear(f"image_decoder.{j}.attn.proj", h, h)
        shapes.norm(f"image_decoder.{j}.norm2", h)
        shapes.linear(f"image_decoder.{j}.mlp.fc1", 4 * h, h)
        shapes.linear(f"image_decoder.{j}.mlp.fc2", h, 4 * h)
    shapes.norm("image_decoder_norm", h)
    shapes.linear("image_decoder_pred", s["patch"] ** 2 * 3, h)
    return _random(shapes, seed)


def mae_state(seed: int = 1, width: int = 64, layers: int = 1, image: int = 64, patch: int = 16) -> dict[str, torch.Tensor]:
    """MaskedAutoencoderViT's tensors (encoder and decoder), timm names."""
    shapes = _Shapes()
    patches = (image // patch) ** 2
    shapes["cls_token"] = (1, 1, width)
    shapes["pos_embed"] = (1, patches + 1, width)
    shapes["patch_embed.proj.weight"] = (width, 3, patch, patch)
    shapes["patch_embed.proj.bias"] = (width,)
    for i in range(layers):
        shapes.norm(f"blocks.{i}.norm1", width)
        shapes.linear(f"blocks.{i}.attn.qkv", 3 * width, width)
        shapes.linear(f"blocks.{i}.attn.proj", width, width)
        shapes.norm(f"blocks.{i}.norm2", width)
        shapes.linear(f"blocks.{i}.mlp.fc1", 4 * width, width)
        shapes.linear(f"blocks.{i}.mlp.fc2", width, 4 * width)
    shapes.norm("norm", width)
    decoder = 32
    shapes.linear("decoder_embed", decoder, width)
    shapes["mask_token"] = (1, 1, decoder)
    shapes["decoder_pos_embed"] = (1, patches + 1, decoder)
    shapes.norm("decoder_blocks.0.norm1", decoder)
    shapes.linear("decoder_blocks.0.attn.qkv", 3 * decoder, decoder)
    shapes.norm("decoder_norm", decoder)
    shapes.linear("decoder_pred", patch * patch * 3, decoder)
    return _random(shapes, seed)


def clip_state(seed: int = 2, width: int = 64, layers: int = 1, projection: int = 64) -> dict[str, torch.Tensor]:
    """OpenAI CLIP's tensors (text tower, a piece of the image tower, the archive's metadata)."""
    shapes = _Shapes()
    shapes["token_embedding.weight"] = (49408, width)
    shapes["positional_embedding"] = (77, width)
    for i in range(layers):
        block = f"transformer.resblocks.{i}"
        shapes[f"{block}.attn.in_proj_weight"] = (3 * width, width)
        shapes[f"{block}.attn.in_proj_bias"] = (3 * width,)
        shapes.linear(f"{block}.attn.out_proj", width, width)
        shapes.norm(f"{block}.ln_1", width)
        shapes.linear(f"{block}.mlp.c_fc", 4 * width, width)
        shapes.linear(f"{block}.mlp.c_proj", width, 4 * width)
        shapes.norm(f"{block}.ln_2", width)
    shapes.norm("ln_final", width)
    shapes["text_projection"] = (width, projection)
    shapes["logit_scale"] = ()
    shapes["visual.conv1.weight"] = (32, 3, 32, 32)
    shapes["visual.proj"] = (32, projection)
    tensors = _random(shapes, seed)
    tensors.update(input_resolution=torch.tensor(224), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    return tensors


def write_seer_files(directory: Path, *, everything: bool = False, seed: int = 0) -> dict[str, Path]:
    """The checkpoint (plus ``mae.pth`` and ``clip.pt`` unless ``everything``: then the frozen
    encoders and the fixed tensors are inside the checkpoint, as ``get_checkpoint_all_param`` saves)."""
    directory.mkdir(parents=True, exist_ok=True)
    state = seer_state(seed)
    mae, clip = mae_state(), clip_state()
    files = {}
    if everything:
        state.update({f"vision_encoder.{k}": v for k, v in mae.items()})
        state.update({f"clip_model.{k}": v for k, v in clip.items()})
        state["attention_mask"] = seer_reference_mask(SEER_SIZES["frames"], 2 + 2 * (SEER_SIZES["queries"] + 1),
                                                      2 * SEER_SIZES["obs_per_image"], SEER_SIZES["chunk"])
        state["image_decoder_position_embedding"] = mae_sincos_positions(SEER_SIZES["hidden"], SEER_SIZES["obs_per_image"],
                                                                         (SEER_SIZES["image"] // SEER_SIZES["patch"]) ** 2)[None]
    else:
        torch.save({"model": mae}, directory / "mae.pth")
        torch.save(clip, directory / "clip.pt")
        files.update(mae=directory / "mae.pth", clip=directory / "clip.pt")
    checkpoint = {"epoch": 3, "model_state_dict": {f"module.{k}": v for k, v in state.items()},
                  "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-3}]}, "lr_scheduler_state_dict": {"last_epoch": 9}}
    torch.save(checkpoint, directory / "seer.pth")
    files["checkpoint"] = directory / "seer.pth"
    return files


# -- Seer's formulas, for reference ---------------------------------------------------------------
def seer_reference_mask(frames: int, num_a: int, num_obs: int, num_act: int) -> torch.Tensor:
    """Seer's additive attention mask (``generate_attention_mask`` with its LIBERO settings:
    no goal attention, no obs-only attention, no obs masking), from its rules."""
    per = num_a + num_obs + num_act
    mask = torch.zeros(frames * per, frames * per)
    for i in range(frames):
        start, end = i * per, (i + 1) * per
        mask[start:end, end:] = -math.inf  # no later frame
        mask[:, start + num_a : end] = -math.inf  # nobody attends to the obs / action tokens
        if num_obs and num_act:  # except a frame's action tokens to its obs tokens
            mask[start + num_a + num_obs : start + num_a + num_obs + num_act, start + num_a : start + num_a + num_obs] = 0.0
    return mask


def mae_sincos_positions(dim: int, tokens: int, patches: int) -> torch.Tensor:
    """Seer's image-decoder positions, as MAE's numpy code builds them (``np.meshgrid(w, h)``)."""
    import numpy as np

    def grid_embedding(size: int) -> np.ndarray:
        grid = np.stack(np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32)), axis=0)
        grid = grid.reshape(2, 1, size, size)

        def one(half: int, pos: np.ndarray) -> np.ndarray:
            omega = 1.0 / 10000 ** (np.arange(half // 2, dtype=np.float64) / (half / 2.0))
            out = np.einsum("m,d->md", pos.reshape(-1), omega)
            return np.concatenate([np.sin(out), np.cos(out)], axis=1)

        return np.concatenate([one(dim // 2, grid[0]), one(dim // 2, grid[1])], axis=1)

    return torch.from_numpy(np.concatenate([grid_embedding(int(tokens**0.5)), grid_embedding(int(patches**0.5))])).float()


def layer_norm(x: torch.Tensor, state: dict, name: str, eps: float = 1e-5) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], state[f"{name}.weight"], state[f"{name}.bias"], eps)


def conv1d(x: torch.Tensor, state: dict, name: str) -> torch.Tensor:
    """GPT-2's Conv1D: ``x @ W + b`` with ``W [in, out]``."""
    return x @ state[f"{name}.weight"] + state[f"{name}.bias"]


def gpt2_block(x: torch.Tensor, state: dict, name: str, heads: int, additive_mask: torch.Tensor) -> torch.Tensor:
    """Seer's GPT2Block (``models/gpt2.py``): pre-LN attention with the additive mask, gelu_new MLP."""
    batch, length, dim = x.shape
    q, k, v = conv1d(layer_norm(x, state, f"{name}.ln_1"), state, f"{name}.attn.c_attn").split(dim, dim=2)
    split = lambda t: t.view(batch, length, heads, -1).permute(0, 2, 1, 3)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    weights = (q @ k.transpose(-1, -2)) / math.sqrt(dim // heads) + additive_mask
    attended = (weights.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(batch, length, dim)
    x = x + conv1d(attended, state, f"{name}.attn.c_proj")
    hidden = F.gelu(conv1d(layer_norm(x, state, f"{name}.ln_2"), state, f"{name}.mlp.c_fc"), approximate="tanh")
    return x + conv1d(hidden, state, f"{name}.mlp.c_proj")


def perceiver_layer(media: torch.Tensor, latents: torch.Tensor, state: dict, name: str, dim_head: int = 64) -> torch.Tensor:
    """Flamingo's PerceiverAttention + FeedForward as Seer's resampler runs them (residuals added)."""
    x, lat = layer_norm(media, state, f"{name}.0.norm_media"), layer_norm(latents, state, f"{name}.0.norm_latents")
    q = lat @ state[f"{name}.0.to_q.weight"].t()
    k, v = (torch.cat([x, lat], dim=1) @ state[f"{name}.0.to_kv.weight"].t()).chunk(2, dim=-1)
    heads = q.shape[-1] // dim_head
    split = lambda t: t.view(t.shape[0], t.shape[1], heads, dim_head).transpose(1, 2)  # noqa: E731
    q, k, v = split(q) * dim_head**-0.5, split(k), split(v)
    sim = q @ k.transpose(-1, -2)
    out = ((sim - sim.amax(-1, keepdim=True)).softmax(-1) @ v).transpose(1, 2).flatten(2)
    latents = latents + out @ state[f"{name}.0.to_out.weight"].t()
    ff = F.gelu(layer_norm(latents, state, f"{name}.1.0") @ state[f"{name}.1.1.weight"].t()) @ state[f"{name}.1.3.weight"].t()
    return latents + ff


def timm_block(x: torch.Tensor, state: dict, name: str, heads: int, eps: float) -> torch.Tensor:
    """timm's ViT Block (MAE's encoder): fused qkv, exact GELU."""
    batch, length, dim = x.shape
    qkv = F.linear(layer_norm(x, state, f"{name}.norm1", eps), state[f"{name}.attn.qkv.weight"], state[f"{name}.attn.qkv.bias"])
    q, k, v = qkv.view(batch, length, 3, heads, -1).permute(2, 0, 3, 1, 4)
    attended = ((q @ k.transpose(-1, -2)) * (dim // heads) ** -0.5).softmax(-1) @ v
    x = x + F.linear(attended.transpose(1, 2).reshape(batch, length, dim), state[f"{name}.attn.proj.weight"], state[f"{name}.attn.proj.bias"])
    hidden = F.gelu(F.linear(layer_norm(x, state, f"{name}.norm2", eps), state[f"{name}.mlp.fc1.weight"], state[f"{name}.mlp.fc1.bias"]))
    return x + F.linear(hidden, state[f"{name}.mlp.fc2.weight"], state[f"{name}.mlp.fc2.bias"])


def mae_encoder(pixels: torch.Tensor, mae: dict, heads: int) -> torch.Tensor:
    """MAE's ``forward_encoder`` with mask ratio 0 (patch order kept): ``[N, 1 + P, W]``."""
    x = F.conv2d(pixels, mae["patch_embed.proj.weight"], mae["patch_embed.proj.bias"], stride=mae["patch_embed.proj.weight"].shape[-1])
    x = x.flatten(2).transpose(1, 2) + mae["pos_embed"][:, 1:]
    cls = (mae["cls_token"] + mae["pos_embed"][:, :1]).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1)
    layers = len({name.split(".")[1] for name in mae if name.startswith("blocks.")})
    for i in range(layers):
        x = timm_block(x, mae, f"blocks.{i}", heads, 1e-6)
    return layer_norm(x, mae, "norm", 1e-6)


def clip_text(ids: torch.Tensor, clip: dict, heads: int) -> torch.Tensor:
    """OpenAI CLIP's ``encode_text``: causal resblocks (QuickGELU), ln_final, the EOT token
    (the largest id) times text_projection."""
    x = clip["token_embedding.weight"][ids] + clip["positional_embedding"][: ids.shape[1]]
    length, dim = ids.shape[1], x.shape[-1]
    causal = torch.full((length, length), -math.inf).triu(1)
    layers = len({name.split(".")[2] for name in clip if name.startswith("transformer.resblocks.")})
    for i in range(layers):
        name = f"transformer.resblocks.{i}"
        h = layer_norm(x, clip, f"{name}.ln_1")
        q, k, v = F.linear(h, clip[f"{name}.attn.in_proj_weight"], clip[f"{name}.attn.in_proj_bias"]).chunk(3, dim=-1)
        split = lambda t: t.view(t.shape[0], length, heads, -1).transpose(1, 2)  # noqa: E731
        weights = split(q) @ split(k).transpose(-1, -2) / math.sqrt(dim // heads) + causal
        attended = (weights.softmax(-1) @ split(v)).transpose(1, 2).reshape(x.shape)
        x = x + F.linear(attended, clip[f"{name}.attn.out_proj.weight"], clip[f"{name}.attn.out_proj.bias"])
        hidden = F.linear(layer_norm(x, clip, f"{name}.ln_2"), clip[f"{name}.mlp.c_fc.weight"], clip[f"{name}.mlp.c_fc.bias"])
        x = x + F.linear(hidden * torch.sigmoid(1.702 * hidden), clip[f"{name}.mlp.c_proj.weight"], clip[f"{name}.mlp.c_proj.bias"])
    x = layer_norm(x, clip, "ln_final")
    return x[torch.arange(ids.shape[0]), ids.argmax(dim=-1)] @ clip["text_projection"]


# -- VITA-1.5 -----------------------------------------------------------------------------------------
VITA_SIZES = dict(vision_width=32, vision_layers=2, vision_heads=2, image=56, patch=14, hidden=64, text_layers=2)


def write_vita15_dir(directory: Path, seed: int = 3) -> dict[str, torch.Tensor]:
    """A VITA-1.5 directory (two shards, an InternViT subdirectory its config names, the CLIP
    tokenizer); returns every tensor by its VITA name."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from vitabench.models.common import clip_tokenizer

    s = VITA_SIZES
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = clip_tokenizer()
    text = dict(hidden_size=s["hidden"], intermediate_size=128, num_hidden_layers=s["text_layers"], num_attention_heads=4,
                num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=4096, rope_theta=1000000.0,
                rms_norm_eps=1e-6, tie_word_embeddings=False)
    torch.manual_seed(seed)
    language = Qwen2ForCausalLM(Qwen2Config(**text)).state_dict()  # model.*, lm_head.weight: VITAQwen2ForCausalLM's names
    shapes = _Shapes()
    vision, width = "model.vision_tower.vision_tower.", s["vision_width"]
    shapes[vision + "embeddings.class_embedding"] = (1, 1, width)
    shapes[vision + "embeddings.patch_embedding.weight"] = (width, 3, s["patch"], s["patch"])
    shapes[vision + "embeddings.patch_embedding.bias"] = (width,)
    shapes[vision + "embeddings.position_embedding"] = (1, (s["image"] // s["patch"]) ** 2 + 1, width)
    for i in range(s["vision_layers"]):
        layer = f"{vision}encoder.layers.{i}."
        shapes.linear(layer + "attn.qkv", 3 * width, width)
        shapes.linear(layer + "attn.proj", width, width)
        shapes.linear(layer + "mlp.fc1", 4 * width, width)
        shapes.linear(layer + "mlp.fc2", width, 4 * width)
        shapes.norm(layer + "norm1", width)
        shapes.norm(layer + "norm2", width)
        shapes[layer + "ls1"] = (width,)
        shapes[layer + "ls2"] = (width,)
    shapes.linear("model.mm_projector.0", s["hidden"], 4 * width)
    shapes.linear("model.mm_projector.2", s["hidden"], s["hidden"])
    shapes.linear("model.audio_encoder.encoder.layer0", 16, 8)
    shapes.linear("model.audio_mm_projector.0", s["hidden"], 16)
    tensors = {**{k: v.clone() for k, v in language.items()}, **_random(shapes, seed)}
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2], "model-00002-of-00002.safetensors": names[len(names) // 2 :]}
    from safetensors.torch import save_file

    for file, part in halves.items():
        save_file({name: tensors[name].contiguous() for name in part}, str(directory / file), metadata={"format": "pt"})
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": {name: file for file, part in halves.items() for name in part}})
    )
    config = {"architectures": ["VITAQwen2ForCausalLM"], "model_type": "vita-Qwen2", **text, "mm_vision_tower": "InternViT-tiny",
              "mm_projector_type": "mlp2x_gelu", "mm_hidden_size": 4 * width, "mm_audio_encoder": "audio-encoder-tiny",
              "torch_dtype": "float32", "tune_mm_mlp_adapter": False, "image_aspect_ratio": "square"}
    (directory / "config.json").write_text(json.dumps(config))
    tower = directory / "InternViT-tiny"
    tower.mkdir()
    (tower / "config.json").write_text(json.dumps(dict(
        architectures=["InternVisionModel"], hidden_size=width, intermediate_size=4 * width, num_attention_heads=s["vision_heads"],
        num_hidden_layers=s["vision_layers"], image_size=s["image"], patch_size=s["patch"], qkv_bias=True, qk_normalization=False,
        norm_type="layer_norm", layer_norm_eps=1e-6, hidden_act="gelu")))
    (tower / "preprocessor_config.json").write_text(json.dumps(dict(
        crop_size=s["image"], size=s["image"], image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
        image_processor_type="CLIPImageProcessor")))
    tokenizer.save_pretrained(directory)
    return tensors


def vita_image_features(pixels: torch.Tensor, vita: dict) -> torch.Tensor:
    """VITA-1.5's ``encode_images``: InternViT (last layer, CLS dropped), × 0.5, pixel shuffle
    (InternViTVisionTower.pixel_shuffle), mlp2x_gelu projector."""
    s, prefix = VITA_SIZES, "model.vision_tower.vision_tower."
    x = F.conv2d(pixels, vita[prefix + "embeddings.patch_embedding.weight"], vita[prefix + "embeddings.patch_embedding.bias"], stride=s["patch"])
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([vita[prefix + "embeddings.class_embedding"].expand(x.shape[0], -1, -1), x], dim=1) + vita[prefix + "embeddings.position_embedding"]
    heads, width = s["vision_heads"], s["vision_width"]
    for i in range(s["vision_layers"]):
        name = f"{prefix}encoder.layers.{i}."
        h = F.layer_norm(x, (width,), vita[name + "norm1.weight"], vita[name + "norm1.bias"], 1e-6)
        q, k, v = F.linear(h, vita[name + "attn.qkv.weight"], vita[name + "attn.qkv.bias"]).view(x.shape[0], x.shape[1], 3, heads, -1).permute(2, 0, 3, 1, 4)
        attended = (((q * (width // heads) ** -0.5) @ k.transpose(-1, -2)).softmax(-1) @ v).transpose(1, 2).reshape(x.shape)
        x = x + F.linear(attended, vita[name + "attn.proj.weight"], vita[name + "attn.proj.bias"]) * vita[name + "ls1"]
        h = F.layer_norm(x, (width,), vita[name + "norm2.weight"], vita[name + "norm2.bias"], 1e-6)
        h = F.linear(F.gelu(F.linear(h, vita[name + "mlp.fc1.weight"], vita[name + "mlp.fc1.bias"])), vita[name + "mlp.fc2.weight"], vita[name + "mlp.fc2.bias"])
        x = x + h * vita[name + "ls2"]
    features = x[:, 1:]
    side = int(features.shape[1] ** 0.5)
    features = features.reshape(features.shape[0], side, side, -1) * 0.5
    n, w, h, c = features.shape
    features = features.view(n, w, h // 2, c * 2).permute(0, 2, 1, 3).contiguous()
    features = features.view(n, h // 2, w // 2, c * 4).permute(0, 2, 1, 3).contiguous()
    features = features.reshape(n, -1, c * 4)
    hidden = F.gelu(F.linear(features, vita["model.mm_projector.0.weight"], vita["model.mm_projector.0.bias"]))
    return F.linear(hidden, vita["model.mm_projector.2.weight"], vita["model.mm_projector.2.bias"])
