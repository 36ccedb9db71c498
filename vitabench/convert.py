"""Released weights into vitabench.

``convert_seer``: a Seer checkpoint (``torch.save({"model_state_dict": ...})`` of a DDP-wrapped
``SeerAgent``: ``module.`` prefixes, GPT-2 ``Conv1D`` weights stored ``[in, out]``) becomes a
vitabench teacher checkpoint of the seer architecture. Seer saves only trainable tensors, so its
frozen encoders come from their own files: MAE's ``mae_pretrain_vit_base.pth`` (or a transformers
ViT / ViT-MAE directory) and OpenAI's ``ViT-B-32.pt`` (or a transformers CLIP directory).

``convert_vita15``: a VITA-1.5 directory (its ``VITAQwen2ForCausalLM`` tensor names: InternViT
vision tower, 0.5 pre-scale + pixel shuffle + ``mlp2x_gelu`` projector, Qwen2 LM) becomes a
transformers InternVL directory (``InternVLForConditionalGeneration``): the pre-scale is folded
into the projector's first linear layer, and since VITA's projector has no LayerNorm (InternVL's
has), ``config.json`` says ``projector_layer_norm: false``, which vitabench's backbone loader
honours (:mod:`vitabench.models.backbones`).

Every source tensor is placed, dropped as unused by the source model's own forward pass (listed),
or (fixed tensors) checked against vitabench's; every target tensor is filled; anything else is a
one-line error and nothing is written. Names mirrored (no code copied) from OpenRobotLab/Seer
(``models/seer_model.py``, ``models/gpt2.py``, ``models/perceiver_resampler.py``,
``models/vit_mae.py``, ``train.py``/``utils/train_utils.py`` ``get_checkpoint``), openai/CLIP
(``clip/model.py``) and VITA-MLLM/VITA (``vita/model/vita_arch.py``,
``vita/model/language_model/vita_qwen2.py``, ``vita/model/multimodal_encoder/internvit/``,
``vita/model/multimodal_projector/builder.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from vitabench.api.config import read_json
from vitabench.api.errors import VitabenchError
from vitabench.models.common import TOKENIZER_FILES

REPORT_FILE = "conversion.json"


class ConversionError(VitabenchError):
    """Input that cannot be converted as asked."""


@dataclass
class ConversionReport:
    """Where every source tensor went: ``placed`` (target ← sources), ``dropped`` (source →
    why), ``checked`` (fixed source tensors equal to vitabench's own), ``folded`` (targets
    rescaled on the way)."""

    source: str
    placed: dict[str, list[str]] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)
    folded: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        return (f"{len(self.placed)} tensors placed, {len(self.dropped)} dropped (unused by the source model), "
                f"{len(self.checked)} checked")


# ---------------------------------------------------------------------------------------------
# rename rules: (source pattern, rule(match, tensor) -> [(target, tensor)]) ; first match wins
# ---------------------------------------------------------------------------------------------
Rule = Callable[["re.Match[str]", Any], list[tuple[str, Any]]]


def _to(template: str, transform: Callable[[Any], Any] | None = None) -> Rule:
    """One target named by ``template`` (``\\1``... from the match), optionally transformed."""
    return lambda match, tensor: [(match.expand(template), tensor if transform is None else transform(tensor))]


def _split(templates: tuple[str, ...]) -> Rule:
    """A fused tensor cut into equal parts along dim 0 (q, k, v)."""
    return lambda match, tensor: [(match.expand(t), part.contiguous()) for t, part in zip(templates, tensor.chunk(len(templates)))]


def _transposed(tensor: Any) -> Any:
    return tensor.t().contiguous()


def _apply(rules: list[tuple[str, Rule]], name: str, tensor: Any) -> list[tuple[str, Any]] | None:
    for pattern, rule in rules:
        match = re.fullmatch(pattern, name)
        if match:
            return rule(match, tensor)
    return None


def _dropped(patterns: list[tuple[str, str]], name: str) -> str | None:
    for pattern, reason in patterns:
        if re.fullmatch(pattern, name):
            return reason
    return None


# ---------------------------------------------------------------------------------------------
# Seer
# ---------------------------------------------------------------------------------------------
#: Seer's camera names → vitabench's (Seer's LIBERO loop: primary = agentview, wrist = eye-in-hand).
SEER_CAMERAS = {"primary": "agentview", "wrist": "robot0_eye_in_hand"}
#: What every Seer checkpoint holds (its model_state_dict, ``module.`` removed).
SEER_REQUIRED = ("text_projector.weight", "arm_state_encoder.weight", "perceiver_resampler.latents",
                 "transformer_backbone.h.0.attn.c_attn.weight", "transformer_backbone_position_embedding",
                 "action_pred_token", "action_decoder.0.weight")

SEER_RULES: list[tuple[str, Rule]] = [
    (r"text_projector\.(weight|bias)", _to(r"text_projection.\1")),
    (r"arm_state_encoder\.(weight|bias)", _to(r"state_encoder.arm.\1")),
    (r"gripper_state_encoder\.(weight|bias)", _to(r"state_encoder.gripper.\1")),
    (r"state_projector\.(weight|bias)", _to(r"state_encoder.project.\1")),
    (r"perceiver_resampler\.latents", _to("resampler.latents")),
    (r"perceiver_resampler\.layers\.(\d+)\.0\.(norm_media|norm_latents)\.(weight|bias)", _to(r"resampler.layers.\1.\2.\3")),
    (r"perceiver_resampler\.layers\.(\d+)\.0\.to_q\.weight", _to(r"resampler.layers.\1.query.weight")),
    (r"perceiver_resampler\.layers\.(\d+)\.0\.to_kv\.weight", _to(r"resampler.layers.\1.key_value.weight")),
    (r"perceiver_resampler\.layers\.(\d+)\.0\.to_out\.weight", _to(r"resampler.layers.\1.out.weight")),
    (r"perceiver_resampler\.layers\.(\d+)\.1\.0\.(weight|bias)", _to(r"resampler.layers.\1.feed_forward.0.\2")),
    (r"perceiver_resampler\.layers\.(\d+)\.1\.(1|3)\.weight", _to(r"resampler.layers.\1.feed_forward.\2.weight")),
    (r"perceiver_resampler\.norm\.(weight|bias)", _to(r"resampler.norm.\1")),
    (r"image_primary_projector\.(weight|bias)", _to(r"image_projections.agentview.\1")),
    (r"image_wrist_projector\.(weight|bias)", _to(r"image_projections.robot0_eye_in_hand.\1")),
    (r"cls_token_primary_projector\.(weight|bias)", _to(r"cls_projections.agentview.\1")),
    (r"cls_token_wrist_projector\.(weight|bias)", _to(r"cls_projections.robot0_eye_in_hand.\1")),
    (r"action_pred_token", _to("action_queries", lambda t: t.reshape(t.shape[-2], t.shape[-1]))),
    (r"obs_tokens", _to("foresight_queries", lambda t: t.reshape(t.shape[-2], t.shape[-1]))),
    (r"transformer_backbone_position_embedding", _to("timestep_embedding", lambda t: t.reshape(t.shape[1], t.shape[-1]))),
    (r"embedding_layer_norm\.(weight|bias)", _to(r"embedding_norm.\1")),
    (r"transformer_backbone\.h\.(\d+)\.ln_1\.(weight|bias)", _to(r"blocks.\1.norm_attention.\2")),
    (r"transformer_backbone\.h\.(\d+)\.ln_2\.(weight|bias)", _to(r"blocks.\1.norm_mlp.\2")),
    (r"transformer_backbone\.h\.(\d+)\.attn\.c_attn\.weight", _to(r"blocks.\1.qkv.weight", _transposed)),
    (r"transformer_backbone\.h\.(\d+)\.attn\.c_attn\.bias", _to(r"blocks.\1.qkv.bias")),
    (r"transformer_backbone\.h\.(\d+)\.attn\.c_proj\.weight", _to(r"blocks.\1.out.weight", _transposed)),
    (r"transformer_backbone\.h\.(\d+)\.attn\.c_proj\.bias", _to(r"blocks.\1.out.bias")),
    (r"transformer_backbone\.h\.(\d+)\.mlp\.c_fc\.weight", _to(r"blocks.\1.mlp.0.weight", _transposed)),
    (r"transformer_backbone\.h\.(\d+)\.mlp\.c_fc\.bias", _to(r"blocks.\1.mlp.0.bias")),
    (r"transformer_backbone\.h\.(\d+)\.mlp\.c_proj\.weight", _to(r"blocks.\1.mlp.2.weight", _transposed)),
    (r"transformer_backbone\.h\.(\d+)\.mlp\.c_proj\.bias", _to(r"blocks.\1.mlp.2.bias")),
    (r"transformer_backbone\.ln_f\.(weight|bias)", _to(r"final_norm.\1")),
    (r"action_decoder\.(0|2)\.(weight|bias)", _to(r"action_decoder.trunk.\1.\2")),
    (r"arm_action_decoder\.0\.(weight|bias)", _to(r"action_decoder.arm_head.\1")),
    (r"gripper_action_decoder\.0\.(weight|bias)", _to(r"action_decoder.gripper_head.\1")),
    (r"image_decoder_obs_pred_projector\.(weight|bias)", _to(r"foresight_decoder.projection.\1")),
    (r"mask_token", _to("foresight_decoder.mask_token", lambda t: t.reshape(t.shape[-1]))),
    (r"image_decoder\.(\d+)\.norm1\.(weight|bias)", _to(r"foresight_decoder.blocks.\1.norm_attention.\2")),
    (r"image_decoder\.(\d+)\.norm2\.(weight|bias)", _to(r"foresight_decoder.blocks.\1.norm_mlp.\2")),
    (r"image_decoder\.(\d+)\.attn\.qkv\.(weight|bias)", _to(r"foresight_decoder.blocks.\1.qkv.\2")),
    (r"image_decoder\.(\d+)\.attn\.proj\.(weight|bias)", _to(r"foresight_decoder.blocks.\1.out.\2")),
    (r"image_decoder\.(\d+)\.mlp\.fc1\.(weight|bias)", _to(r"foresight_decoder.blocks.\1.mlp.0.\2")),
    (r"image_decoder\.(\d+)\.mlp\.fc2\.(weight|bias)", _to(r"foresight_decoder.blocks.\1.mlp.2.\2")),
    (r"image_decoder_norm\.(weight|bias)", _to(r"foresight_decoder.norm.\1")),
    (r"image_decoder_pred\.(weight|bias)", _to(r"foresight_decoder.head.\1")),
]
#: MAE's ViT (timm names; Seer's ``vision_encoder``) → transformers' ViTModel.
MAE_RULES: list[tuple[str, Rule]] = [
    (r"cls_token", _to("image_encoder.embeddings.cls_token")),
    (r"pos_embed", _to("image_encoder.embeddings.position_embeddings")),
    (r"patch_embed\.proj\.(weight|bias)", _to(r"image_encoder.embeddings.patch_embeddings.projection.\1")),
    (r"blocks\.(\d+)\.norm1\.(weight|bias)", _to(r"image_encoder.layers.\1.layernorm_before.\2")),
    (r"blocks\.(\d+)\.norm2\.(weight|bias)", _to(r"image_encoder.layers.\1.layernorm_after.\2")),
    (r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", _split(tuple(rf"image_encoder.layers.\1.attention.{p}_proj.\2" for p in "qkv"))),
    (r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", _to(r"image_encoder.layers.\1.attention.o_proj.\2")),
    (r"blocks\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", _to(r"image_encoder.layers.\1.mlp.\2.\3")),
    (r"norm\.(weight|bias)", _to(r"image_encoder.layernorm.\1")),
]
#: OpenAI CLIP's text tower (Seer's ``clip_model``) → transformers' CLIPTextModelWithProjection.
CLIP_RULES: list[tuple[str, Rule]] = [
    (r"token_embedding\.weight", _to("text_encoder.text_model.embeddings.token_embedding.weight")),
    (r"positional_embedding", _to("text_encoder.text_model.embeddings.position_embedding.weight")),
    (r"transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)",
     _split(tuple(rf"text_encoder.text_model.encoder.layers.\1.self_attn.{p}_proj.\2" for p in "qkv"))),
    (r"transformer\.resblocks\.(\d+)\.attn\.out_proj\.(weight|bias)", _to(r"text_encoder.text_model.encoder.layers.\1.self_attn.out_proj.\2")),
    (r"transformer\.resblocks\.(\d+)\.ln_1\.(weight|bias)", _to(r"text_encoder.text_model.encoder.layers.\1.layer_norm1.\2")),
    (r"transformer\.resblocks\.(\d+)\.ln_2\.(weight|bias)", _to(r"text_encoder.text_model.encoder.layers.\1.layer_norm2.\2")),
    (r"transformer\.resblocks\.(\d+)\.mlp\.c_fc\.(weight|bias)", _to(r"text_encoder.text_model.encoder.layers.\1.mlp.fc1.\2")),
    (r"transformer\.resblocks\.(\d+)\.mlp\.c_proj\.(weight|bias)", _to(r"text_encoder.text_model.encoder.layers.\1.mlp.fc2.\2")),
    (r"ln_final\.(weight|bias)", _to(r"text_encoder.text_model.final_layer_norm.\1")),
    (r"text_projection", _to("text_encoder.text_projection.weight", _transposed)),
]
SEER_UNUSED: list[tuple[str, str]] = [
    (r"(action_pose_encoder|action_gripper_position_encoder|action_projector)\.(weight|bias)",
     "Seer's action encoder: built, never called by SeerAgent.forward"),
    (r"(recon_state_decoder\.(0|2)|recon_arm_state_decoder\.0|recon_gripper_state_decoder\.0)\.(weight|bias)",
     "Seer's state-reconstruction decoder: built, never called by SeerAgent.forward"),
]
MAE_UNUSED: list[tuple[str, str]] = [
    (r"(decoder_embed|decoder_norm|decoder_pred)\.(weight|bias)|mask_token|decoder_pos_embed|decoder_blocks\..*",
     "MAE's pixel decoder: Seer runs only forward_encoder"),
]
CLIP_UNUSED: list[tuple[str, str]] = [
    (r"visual\..*|logit_scale", "CLIP's image tower: Seer encodes only text with CLIP"),
    (r"input_resolution|context_length|vocab_size", "OpenAI's archive metadata"),
]


def _torch_load(path: Path, what: str) -> Any:
    """A PyTorch file's contents (tensors and plain containers only; a TorchScript archive's state dict)."""
    import torch

    if not path.is_file():
        raise ConversionError(f"{what} {str(path)!r}: no such file")
    try:
        if zipfile.is_zipfile(path) and any(n.endswith("constants.pkl") for n in zipfile.ZipFile(path).namelist()):
            return torch.jit.load(str(path), map_location="cpu").state_dict()
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file: whatever torch raises, one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"{what} {str(path)!r} cannot be read as a PyTorch checkpoint: {first}") from None


def read_seer_checkpoint(path: Path) -> dict[str, Any]:
    """The tensors of a Seer checkpoint, ``module.`` prefixes removed; anything else raises
    naming what it lacks."""
    data = _torch_load(path, "Seer checkpoint")
    if not isinstance(data, Mapping) or not isinstance(data.get("model_state_dict"), Mapping):
        held = ", ".join(sorted(map(str, data))[:6]) if isinstance(data, Mapping) else type(data).__name__
        raise ConversionError(f"not a Seer checkpoint: {path} lacks model_state_dict (it holds: {held or 'nothing'})")
    state = {name.removeprefix("module."): tensor for name, tensor in data["model_state_dict"].items()}
    missing = [name for name in SEER_REQUIRED if name not in state]
    if missing:
        raise ConversionError(f"not a Seer checkpoint: {path}'s model_state_dict lacks {', '.join(missing)}")
    return state


def _count(state: Mapping[str, Any], pattern: str) -> int:
    return len({m.group(1) for name in state if (m := re.fullmatch(pattern, name))})


def _mae_tensors(state: dict[str, Any], mae: Path | None) -> dict[str, Any] | None:
    """MAE's encoder tensors (timm names): from the checkpoint's ``vision_encoder.*`` or ``mae``
    (a ``{"model": ...}`` file); None when ``mae`` is a transformers directory."""
    inside = {name.removeprefix("vision_encoder."): state.pop(name) for name in list(state) if name.startswith("vision_encoder.")}
    if inside:
        return inside
    if mae is None:
        raise ConversionError("the Seer checkpoint holds no vision_encoder (Seer saves only trainable tensors); "
                              "accepted: --mae mae_pretrain_vit_base.pth or a transformers ViT / ViT-MAE directory")
    if mae.is_dir():
        return None
    data = _torch_load(mae, "MAE checkpoint")
    weights = data.get("model", data) if isinstance(data, Mapping) else None
    if not isinstance(weights, Mapping) or "pos_embed" not in weights:
        raise ConversionError(f"--mae {mae} is not an MAE ViT checkpoint: it lacks model / pos_embed")
    return dict(weights)


def _clip_tensors(state: dict[str, Any], clip: Path | None) -> dict[str, Any] | None:
    """OpenAI CLIP's tensors: from the checkpoint's ``clip_model.*`` or ``clip`` (``ViT-B-32.pt``
    or a state dict); None when ``clip`` is a transformers directory."""
    inside = {name.removeprefix("clip_model."): state.pop(name) for name in list(state) if name.startswith("clip_model.")}
    if inside:
        return inside
    if clip is None:
        raise ConversionError("the Seer checkpoint holds no clip_model (Seer saves only trainable tensors); "
                              "accepted: --clip ViT-B-32.pt (OpenAI's) or a transformers CLIP directory")
    if clip.is_dir():
        return None
    data = _torch_load(clip, "CLIP checkpoint")
    if not isinstance(data, Mapping) or "token_embedding.weight" not in data or "text_projection" not in data:
        raise ConversionError(f"--clip {clip} is not OpenAI CLIP: it lacks token_embedding.weight / text_projection")
    return dict(data)


def seer_config(state: Mapping[str, Any], mae: Mapping[str, Any] | None, clip: Mapping[str, Any] | None, heads: int) -> Any:
    """The teacher config a Seer checkpoint's shapes describe (``heads``: the GPT-2 heads, which
    shapes do not tell; Seer-Large on LIBERO: 12). The encoders' heads follow their widths
    (64-wide heads, as ViT-B and CLIP's text tower have)."""
    from vitabench.models.teacher import CLIP_TEXT_IDS, TEACHER_PRESETS

    hidden = int(state["text_projector.weight"].shape[0])
    changes: dict[str, Any] = dict(
        hidden=hidden,
        heads=heads,
        layers=_count(state, r"transformer_backbone\.h\.(\d+)\.ln_1\.weight"),
        history=int(state["transformer_backbone_position_embedding"].shape[1]),
        chunk=int(state["action_pred_token"].shape[-2]),
        resampler_queries=int(state["perceiver_resampler.latents"].shape[0]),
        resampler_layers=_count(state, r"perceiver_resampler\.layers\.(\d+)\.0\.to_q\.weight"),
        resampler_heads=int(state["perceiver_resampler.layers.0.0.to_q.weight"].shape[0]) // 64,
        resampler_head_dim=64,
        foresight="obs_tokens" in state,
        frozen_encoders=("image", "text"),
    )
    if changes["foresight"]:
        changes["foresight_tokens"] = int(state["obs_tokens"].shape[-2]) // len(SEER_CAMERAS)
    if mae is not None:
        width, patch = int(mae["cls_token"].shape[-1]), int(mae["patch_embed.proj.weight"].shape[-1])
        side = round((int(mae["pos_embed"].shape[1]) - 1) ** 0.5)
        changes["vit"] = dict(hidden_size=width, num_hidden_layers=_count(mae, r"blocks\.(\d+)\.norm1\.weight"),
                              num_attention_heads=width // 64, intermediate_size=int(mae["blocks.0.mlp.fc1.weight"].shape[0]),
                              image_size=side * patch, patch_size=patch, layer_norm_eps=1e-6)
    if clip is not None:
        width = int(clip["token_embedding.weight"].shape[1])
        changes["text"] = dict(hidden_size=width, intermediate_size=int(clip["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
                               num_hidden_layers=_count(clip, r"transformer\.resblocks\.(\d+)\.ln_1\.weight"),
                               num_attention_heads=width // 64, max_position_embeddings=int(clip["positional_embedding"].shape[0]),
                               projection_dim=int(clip["text_projection"].shape[1]), hidden_act="quick_gelu",
                               **{**CLIP_TEXT_IDS, "vocab_size": int(clip["token_embedding.weight"].shape[0])})
    try:
        return dataclasses.replace(TEACHER_PRESETS["seer"], **changes)
    except VitabenchError as exc:
        raise ConversionError(f"the Seer checkpoint's shapes give no valid teacher: {exc}") from None


def convert_seer(
    checkpoint: Path,
    out: Path,
    *,
    mae: Path | None = None,
    clip: Path | None = None,
    heads: int = 12,
    protocol: str = "vita_vla_paper",
    resolution: int = 128,
) -> ConversionReport:
    """Write the teacher checkpoint of the Seer ``checkpoint`` to ``out`` (a new directory);
    ``protocol`` and ``resolution`` record what it was trained under (Seer's LIBERO loop:
    128 px renders, 600 steps, 5 settle steps, seed 42: ``vita_vla_paper``)."""
    from vitabench.api.policy import PolicySpec
    from vitabench.api.protocol import load_protocol
    from vitabench.models.checkpoint import save_checkpoint
    from vitabench.models.common import clip_tokenizer
    from vitabench.models.runtime import MODEL_STATE_KEYS
    from vitabench.models.seer import SeerTeacherModel, load_clip_text, load_vit

    _check_new_directory(out)
    trained = load_protocol(protocol)
    state = read_seer_checkpoint(checkpoint)
    mae_state, clip_state = _mae_tensors(state, mae), _clip_tensors(state, clip)
    config = seer_config(state, mae_state, clip_state, heads)
    tokenizer, text_encoder, image_encoder = clip_tokenizer(), None, None
    if clip_state is None:
        text_encoder, tokenizer = load_clip_text(clip)
    if mae_state is None:
        image_encoder = load_vit(mae)
    if text_encoder is not None or image_encoder is not None:  # the directories' own sizes
        from vitabench.models.seer import CLIP_TEXT_FIELDS, VIT_FIELDS, encoder_fields

        config = dataclasses.replace(
            config,
            text=encoder_fields(text_encoder.config, CLIP_TEXT_FIELDS) if text_encoder is not None else config.text,
            vit=encoder_fields(image_encoder.config, VIT_FIELDS) if image_encoder is not None else config.vit,
        )
    model = SeerTeacherModel(config, tokenizer, text_encoder, image_encoder)
    report = ConversionReport(source=str(checkpoint))
    weights: dict[str, Any] = {}
    _place(report, weights, state, SEER_RULES, SEER_UNUSED, "", _seer_fixed(model))
    if mae_state is not None:
        _place(report, weights, mae_state, MAE_RULES, MAE_UNUSED, "vision_encoder.", {})
    else:
        _place_module(report, weights, image_encoder, "image_encoder.", str(mae))
    if clip_state is not None:
        _place(report, weights, clip_state, CLIP_RULES, CLIP_UNUSED, "clip_model.", {})
    else:
        _place_module(report, weights, text_encoder, "text_encoder.", str(clip))
    _load_exactly(model, weights, f"Seer checkpoint {checkpoint}")
    spec = PolicySpec(cameras=tuple(config.cameras), resolution=resolution, state_keys=MODEL_STATE_KEYS,
                      history=config.history, chunk=config.chunk)
    with _staged(out) as staging:
        weights_hash = save_checkpoint(model.float(), staging, spec, trained)
        (staging / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2))
        sources = {"checkpoint": checkpoint, "mae": mae, "clip": clip}
        _write_conversion_lineage(staging, "seer", sources, {"heads": heads, "protocol": trained.ref, "resolution": resolution},
                                  weights_hash)
    return report


def _write_conversion_lineage(directory: Path, source: str, files: Mapping[str, Path | None], options: Mapping[str, Any],
                              weights_hash: str) -> None:
    """``lineage.json`` of a converted teacher: one ``convert`` stage naming its source files (and
    their sha256), so distillation and continued training read it like a trained teacher's."""
    import time

    from vitabench.training.data import file_sha256
    from vitabench.training.lineage import write_lineage

    inputs = [{"role": role, "path": str(path), "sha256": file_sha256(path) if path.is_file() else None}
              for role, path in files.items() if path is not None]
    stage = {"stage": "convert", "source": source, "inputs": inputs, "options": dict(options), "data": [],
             "weights_hash": weights_hash, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_lineage(directory, kind="teacher", variant="teacher", stages=[stage])


def _seer_fixed(model: Any) -> dict[str, Callable[[Any], bool]]:
    """Seer tensors that vitabench computes rather than loads, with their check: the attention
    layout (additive, ``0`` where allowed) and the image decoder's sine-cosine positions."""
    import torch

    def same_layout(mask: Any) -> bool:
        frames = mask.shape[-1] // model.layout.per_frame
        return bool(torch.equal(mask.reshape(mask.shape[-2:]) == 0, model.layout.attention(frames)))

    checks: dict[str, Callable[[Any], bool]] = {"attention_mask": same_layout}
    if model.config.foresight:
        expected = model.foresight_decoder.positions
        checks["image_decoder_position_embedding"] = lambda t: bool(torch.allclose(t.reshape(expected.shape).float(), expected, atol=1e-5))
    return checks


def _place(report: ConversionReport, weights: dict[str, Any], source: Mapping[str, Any], rules: list[tuple[str, Rule]],
           unused: list[tuple[str, str]], prefix: str, fixed: Mapping[str, Callable[[Any], bool]]) -> None:
    """Map every tensor of ``source`` (reported as ``prefix + name``) by ``rules``; a tensor no
    rule, drop or check accounts for raises."""
    for name, tensor in source.items():
        shown = prefix + name
        if name in fixed:
            if not fixed[name](tensor):
                raise ConversionError(f"{shown} differs from vitabench's computed one: the layouts disagree")
            report.checked.append(shown)
            continue
        reason = _dropped(unused, name)
        if reason is not None:
            report.dropped[shown] = reason
            continue
        targets = _apply(rules, name, tensor)
        if targets is None:
            raise ConversionError(f"unexpected tensor {shown} {list(tensor.shape)}: no vitabench tensor takes it")
        for target, value in targets:
            if target in weights:
                raise ConversionError(f"{shown} and {report.placed[target]} both map to {target}")
            weights[target] = value
            report.placed[target] = [shown]


def _place_module(report: ConversionReport, weights: dict[str, Any], module: Any, prefix: str, source: str) -> None:
    for name, tensor in module.state_dict().items():
        weights[prefix + name] = tensor
        report.placed[prefix + name] = [f"{source}:{name}"]


def _load_exactly(model: Any, weights: Mapping[str, Any], what: str) -> None:
    """Load ``weights`` into ``model``: every model tensor filled, of its shape, nothing more."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise ConversionError(f"{what} does not fill the teacher: missing {missing[:3]} ({len(missing)}), "
                              f"unplaced {extra[:3]} ({len(extra)})")
    wrong = [f"{n} {list(weights[n].shape)} vs {list(expected[n].shape)}" for n in expected if weights[n].shape != expected[n].shape]
    if wrong:
        raise ConversionError(f"{what} has {len(wrong)} tensor(s) of another shape than its config gives, e.g. {'; '.join(wrong[:2])}")
    model.load_state_dict({name: tensor.to(expected[name].dtype) for name, tensor in weights.items()}, strict=True)


# ---------------------------------------------------------------------------------------------
# VITA-1.5 → InternVL
# ---------------------------------------------------------------------------------------------
VITA_MODEL_TYPES = ("vita-qwen2",)
#: VITA-1.5 config entries that are not the language model's.
VITA_ONLY_FIELDS = ("architectures", "auto_map", "model_type", "_name_or_path", "transformers_version", "torch_dtype", "dtype")
VITA_ONLY_PREFIXES = ("mm_", "freeze_mm", "tune_mm", "unfreeze_mm")
#: OpenGVLab/InternViT-300M-448px's published config and image processor, for a VITA-1.5
#: directory that names that tower without shipping it.
INTERNVIT_300M = dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24,
                      image_size=448, patch_size=14, qkv_bias=True, qk_normalization=False, norm_type="layer_norm",
                      layer_norm_eps=1e-6, hidden_act="gelu")
INTERNVIT_300M_PROCESSOR = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], crop_size=448, size=448)
_V = "model.vision_tower."
VITA_RULES: list[tuple[str, Rule]] = [
    (r"model\.embed_tokens\.weight", _to("model.language_model.embed_tokens.weight")),
    (r"model\.layers\.(\d+)\.(.+)", _to(r"model.language_model.layers.\1.\2")),
    (r"model\.norm\.weight", _to("model.language_model.norm.weight")),
    (r"lm_head\.weight", _to("lm_head.weight")),
    (r"model\.vision_tower\.vision_tower\.embeddings\.class_embedding", _to(_V + "embeddings.cls_token")),
    (r"model\.vision_tower\.vision_tower\.embeddings\.patch_embedding\.(weight|bias)", _to(_V + r"embeddings.patch_embeddings.projection.\1")),
    (r"model\.vision_tower\.vision_tower\.embeddings\.position_embedding", _to(_V + "embeddings.position_embeddings")),
    (r"model\.vision_tower\.vision_tower\.encoder\.layers\.(\d+)\.attn\.qkv\.(weight|bias)",
     _split(tuple(_V + rf"encoder.layer.\1.attention.{p}_proj.\2" for p in "qkv"))),
    (r"model\.vision_tower\.vision_tower\.encoder\.layers\.(\d+)\.attn\.proj\.(weight|bias)", _to(_V + r"encoder.layer.\1.attention.projection_layer.\2")),
    (r"model\.vision_tower\.vision_tower\.encoder\.layers\.(\d+)\.attn\.(q_norm|k_norm)\.weight", _to(_V + r"encoder.layer.\1.attention.\2.weight")),
    (r"model\.vision_tower\.vision_tower\.encoder\.layers\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", _to(_V + r"encoder.layer.\1.mlp.\2.\3")),
    (r"model\.vision_tower\.vision_tower\.encoder\.layers\.(\d+)\.norm1\.(weight|bias)", _to(_V + r"encoder.layer.\1.layernorm_before.\2")),
    (r"model\.vision_tower\.vision_tower\.encoder\.layers\.(\d+)\.norm2\.(weight|bias)", _to(_V + r"encoder.layer.\1.layernorm_after.\2")),
    (r"model\.vision_tower\.vision_tower\.encoder\.layers\.(\d+)\.ls1", _to(_V + r"encoder.layer.\1.lambda_1")),
    (r"model\.vision_tower\.vision_tower\.encoder\.layers\.(\d+)\.ls2", _to(_V + r"encoder.layer.\1.lambda_2")),
    (r"model\.mm_projector\.0\.weight", _to("model.multi_modal_projector.linear_1.weight", lambda t: (t.float() * 0.5).to(t.dtype))),
    (r"model\.mm_projector\.0\.bias", _to("model.multi_modal_projector.linear_1.bias")),
    (r"model\.mm_projector\.2\.(weight|bias)", _to(r"model.multi_modal_projector.linear_2.\1")),
]
VITA_UNUSED: list[tuple[str, str]] = [
    (r"model\.audio_encoder\..*|model\.audio_mm_projector\..*", "VITA's audio encoder: the student reads no audio"),
]


def _vita_shards(directory: Path) -> list[Path]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index, "weight index", ConversionError).get("weight_map", {})
        return [directory / name for name in sorted(set(weight_map.values()))]
    if (directory / "model.safetensors").is_file():
        return [directory / "model.safetensors"]
    raise ConversionError(f"VITA-1.5 directory {directory} holds no model.safetensors(.index.json); accepted: safetensors weights")


def _vision_tower(directory: Path, config: Mapping[str, Any], vision_tower: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The InternViT config and image-processor settings VITA-1.5 names (``mm_vision_tower``)."""
    name = str(config.get("mm_vision_tower", ""))
    candidates = [vision_tower] if vision_tower is not None else [directory / Path(name).name, directory / name, Path(name)]
    for candidate in candidates:
        if name and candidate is not None and (candidate / "config.json").is_file():
            processor = candidate / "preprocessor_config.json"
            processor_settings = read_json(processor, "image processor", ConversionError) if processor.is_file() else INTERNVIT_300M_PROCESSOR
            return read_json(candidate / "config.json", "vision tower config", ConversionError), processor_settings
    if vision_tower is None and Path(name).name == "InternViT-300M-448px":
        return dict(INTERNVIT_300M), dict(INTERNVIT_300M_PROCESSOR)
    raise ConversionError(
        f"the VITA-1.5 vision tower {name or '(none named)'} is not found; accepted: --vision-tower DIR, the InternViT directory with its config.json"
    )


def _size(value: Any) -> int:
    """An image processor's size entry (an int or ``{height, width}`` / ``{shortest_edge}``)."""
    if isinstance(value, Mapping):
        return int(value.get("height", value.get("shortest_edge", 0)))
    return int(value)


def internvl_config(vita: Mapping[str, Any], vision: Mapping[str, Any]) -> Any:
    """The InternVL config of a VITA-1.5 config (its Qwen2 fields; transformers reads the legacy
    ones, e.g. ``rope_theta``) and its InternViT config."""
    from transformers import InternVLConfig, Qwen2Config

    qwen = {key: value for key, value in vita.items() if key not in VITA_ONLY_FIELDS and not key.startswith(VITA_ONLY_PREFIXES)}
    text = Qwen2Config(**qwen)
    image_size = vision.get("image_size", 448)
    vision_config = dict(
        hidden_size=vision["hidden_size"], intermediate_size=vision["intermediate_size"],
        num_attention_heads=vision["num_attention_heads"], num_hidden_layers=vision["num_hidden_layers"],
        image_size=image_size, patch_size=vision.get("patch_size", 14), attention_bias=bool(vision.get("qkv_bias", True)),
        use_qk_norm=bool(vision.get("qk_normalization", False)), norm_type=vision.get("norm_type", "layer_norm"),
        layer_norm_eps=vision.get("layer_norm_eps", 1e-6), hidden_act=vision.get("hidden_act", "gelu"),
        use_mean_pooling=True,  # InternViT has no final LayerNorm
    )
    vocab = int(text.vocab_size)
    return InternVLConfig(
        vision_config=vision_config, text_config=text, downsample_ratio=0.5,
        projector_hidden_act="gelu", vision_feature_layer=-1, vision_feature_select_strategy="default",
        image_token_id=min(151667, vocab - 1), tie_word_embeddings=bool(vita.get("tie_word_embeddings", False)),
    )


def convert_vita15(directory: Path, out: Path, *, vision_tower: Path | None = None, image_size: int | None = None) -> ConversionReport:
    """Write the InternVL directory of the VITA-1.5 ``directory`` to ``out`` (a new directory),
    shard by shard. ``image_size``: what the student resizes images to (VITA-VLA: 200, 49
    tokens an image; default: the tower's processor, 448)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import InternVLForConditionalGeneration

    from vitabench.models.backbones import PROJECTOR_LAYER_NORM

    _check_new_directory(out)
    if not (directory / "config.json").is_file():
        raise ConversionError(f"not a VITA-1.5 directory: {directory} holds no config.json")
    vita = read_json(directory / "config.json", "VITA-1.5 config", ConversionError)
    model_type = str(vita.get("model_type", ""))
    if model_type.lower() not in VITA_MODEL_TYPES:
        raise ConversionError(f"not a VITA-1.5 directory: {directory}/config.json has model_type {model_type!r}; accepted: vita-Qwen2")
    if vita.get("mm_projector_type", "mlp2x_gelu") != "mlp2x_gelu":
        raise ConversionError(f"VITA-1.5 mm_projector_type={vita['mm_projector_type']!r}; accepted: mlp2x_gelu")
    vision, processor = _vision_tower(directory, vita, vision_tower)
    config = internvl_config(vita, vision)
    with torch.device("meta"):
        skeleton = InternVLForConditionalGeneration(config)
    expected = {name: tuple(t.shape) for name, t in skeleton.state_dict().items() if ".multi_modal_projector.layer_norm." not in name}
    if config.tie_word_embeddings:
        expected.pop("lm_head.weight", None)
    shards = _vita_shards(directory)
    report = ConversionReport(source=str(directory))
    report.folded["model.multi_modal_projector.linear_1.weight"] = "x 0.5: VITA's pixel-shuffle pre-scale (InternViTVisionTower.scale_pix_shuffle)"
    with _staged(out) as staging:
        weight_map: dict[str, str] = {}
        for number, shard in enumerate(shards, start=1):
            converted: dict[str, Any] = {}
            with safe_open(str(shard), framework="pt") as handle:
                _place(report, converted, {name: handle.get_tensor(name) for name in handle.keys()}, VITA_RULES, VITA_UNUSED, "", {})
            wrong = [f"{n} {list(t.shape)} vs {list(expected[n])}" for n, t in converted.items() if n in expected and tuple(t.shape) != expected[n]]
            if wrong:
                raise ConversionError(f"VITA-1.5 tensors do not fit the InternVL config of {directory}: {'; '.join(wrong[:2])}")
            name = "model.safetensors" if len(shards) == 1 else f"model-{number:05d}-of-{len(shards):05d}.safetensors"
            save_file(converted, str(staging / name), metadata={"format": "pt"})
            weight_map.update({tensor: name for tensor in converted})
        missing = sorted(set(expected) - set(weight_map))
        unplaced = sorted(set(weight_map) - set(expected))
        if missing or unplaced:
            raise ConversionError(f"VITA-1.5 directory {directory} does not fill InternVL: missing {missing[:3]} ({len(missing)}), "
                                  f"unplaced {unplaced[:3]} ({len(unplaced)})")
        if len(shards) > 1:
            (staging / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2))
        config_dict = config.to_dict()
        config_dict[PROJECTOR_LAYER_NORM] = False
        (staging / "config.json").write_text(json.dumps(config_dict, indent=2))
        _write_image_processor(staging, processor, image_size)
        copied = [name for name in TOKENIZER_FILES if (directory / name).is_file()]
        if not any(name in copied for name in ("tokenizer.json", "tokenizer_config.json")):
            raise ConversionError(f"VITA-1.5 directory {directory} holds no tokenizer (tokenizer.json / tokenizer_config.json)")
        for name in copied:
            shutil.copy2(directory / name, staging / name)
        (staging / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2))
    return report


def _write_image_processor(directory: Path, settings: Mapping[str, Any], image_size: int | None) -> None:
    """An InternVL-style image processor config: resize to a square, rescale, normalise."""
    size = image_size or _size(settings.get("crop_size", settings.get("size", 448)))
    processor = {
        "image_processor_type": "GotOcr2ImageProcessor", "size": {"height": size, "width": size},
        "image_mean": list(settings.get("image_mean", INTERNVIT_300M_PROCESSOR["image_mean"])),
        "image_std": list(settings.get("image_std", INTERNVIT_300M_PROCESSOR["image_std"])),
        "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
        "resample": 3, "crop_to_patches": False,
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))


# ---------------------------------------------------------------------------------------------
# output directories
# ---------------------------------------------------------------------------------------------
def _check_new_directory(out: Path) -> None:
    if out.exists():
        raise ConversionError(f"{out} exists; accepted: a new directory (nothing is overwritten)")


@contextlib.contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """A staging directory beside ``out``, moved into place only when everything is written
    (removed on any error)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield staging
        _check_new_directory(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def iter_report_lines(report: ConversionReport) -> Iterator[str]:
    """The dropped tensors, grouped by reason (what a user may want to know)."""
    reasons: dict[str, int] = {}
    for reason in report.dropped.values():
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items()):
        yield f"  dropped {count}: {reason}"
