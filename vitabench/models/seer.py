"""The Seer architecture as a vitabench teacher (``TeacherConfig.architecture = "seer"``).

Seer (Tian et al. 2024, "Predictive Inverse Dynamics Models are Scalable Learners for Robotic
Manipulation"), as its public code builds it (OpenRobotLab/Seer: ``models/seer_model.py``,
``models/perceiver_resampler.py``, ``models/gpt2.py``, ``models/vit_mae.py``, run on LIBERO by
``scripts/LIBERO_LONG/Seer/finetune.sh``), written anew for vitabench:

- every camera image goes through one MAE ViT (frozen once pretrained); its patch tokens through ONE perceiver
  resampler shared by the cameras (Flamingo's layout: latents attend to [patches; latents],
  bias-free projections), its CLS token through a projection of its own; each camera has its own
  projections into the transformer width;
- the text is CLIP's projected text embedding (frozen once pretrained), the state one token (arm + gripper);
- a frame is ``[text, state, resampled tokens per camera, CLS per camera]`` followed by the
  foresight tokens (observation prediction, per camera) and the action queries. Context tokens
  attend to every context token of their frame and of earlier frames; nothing attends to the
  foresight tokens and action queries, except a frame's action queries to its foresight tokens;
- one learned embedding per timestep (shared by a frame's tokens), then a LayerNorm, then GPT-2
  blocks (dropout 0.1) and GPT-2's final LayerNorm;
- the foresight tokens of a frame feed an image decoder that predicts the (per-patch normalised)
  pixels of each camera ``foresight_steps`` steps later: the image-prediction loss, weighted 0.1.

The observation images are preprocessed as Seer's CLIP image processor does: resized to the ViT's
size (torch's antialiased bicubic, within 0.002 mean absolute of PIL's) and normalised with CLIP's
mean and std. Seer's training settings (optimizer, schedule, clipping) are not part of the model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vitabench.api.errors import VitabenchError
from vitabench.models.common import (
    CLIP_MEAN,
    CLIP_STD,
    ActionDecoder,
    FrameBatch,
    ModelOutput,
    StateEncoder,
    clip_tokenizer,
    load_tokenizer,
    quiet_transformers,
    scatter_frames,
    state_dim,
)

#: GPT2Config's default dropout (embeddings, attention weights, residual branches), which Seer keeps.
TRANSFORMER_DROPOUT = 0.1
FORESIGHT_DECODER_LAYERS = 2
FORESIGHT_DECODER_HEADS = 16
#: Seer's weight of the image-prediction loss (``utils/train_utils.py``: ``+ 0.1 * loss_image``).
FORESIGHT_LOSS_WEIGHT = 0.1
#: The encoders a config may freeze.
ENCODERS = ("image", "text")

#: transformers config fields a Seer teacher records of its encoders (enough to rebuild them).
VIT_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "image_size",
              "patch_size", "num_channels", "hidden_act", "layer_norm_eps", "qkv_bias")
CLIP_TEXT_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers",
                    "num_attention_heads", "max_position_embeddings", "hidden_act", "layer_norm_eps",
                    "bos_token_id", "eos_token_id", "pad_token_id")


@dataclass(frozen=True)
class SeerLayout:
    """Token positions within one frame: ``context`` tokens (text, state, resampled images, CLS
    tokens), then ``foresight`` tokens, then ``chunk`` action queries."""

    cameras: int
    queries: int
    foresight: int
    chunk: int

    @property
    def context(self) -> int:
        return 2 + self.cameras * (self.queries + 1)

    @property
    def per_frame(self) -> int:
        return self.context + self.foresight + self.chunk

    def attention(self, frames: int, device: torch.device | None = None) -> torch.Tensor:
        """``[S, S]`` booleans (True: the row may attend to the column) for ``frames`` frames."""
        index = torch.arange(frames * self.per_frame, device=device)
        frame, slot = index // self.per_frame, index % self.per_frame
        is_context = slot < self.context
        is_action = slot >= self.context + self.foresight
        is_foresight = ~is_context & ~is_action
        allowed = (frame[None, :] <= frame[:, None]) & is_context[None, :]
        return allowed | (is_action[:, None] & is_foresight[None, :] & (frame[:, None] == frame[None, :]))


def seer_layout(config: Any) -> SeerLayout:
    foresight = len(config.cameras) * config.foresight_tokens if config.foresight else 0
    return SeerLayout(len(config.cameras), config.resampler_queries, foresight, config.chunk)


class PreNormBlock(nn.Module):
    """A pre-LayerNorm transformer block: attention (fused qkv projection) and a 4x MLP, each added
    to the residual stream. ``gelu_approximate="tanh"`` is GPT-2's GELU; ``dropout`` is applied to
    the attention weights and both residual branches (GPT-2's attn/resid dropout)."""

    def __init__(self, dim: int, heads: int, gelu_approximate: str = "none", dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.norm_attention = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate=gelu_approximate), nn.Linear(4 * dim, dim))
        self.residual_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.norm_attention(x)).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        dropout = self.dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout)
        x = x + self.residual_dropout(self.out(attended.transpose(1, 2).reshape(batch, length, dim)))
        return x + self.residual_dropout(self.mlp(self.norm_mlp(x)))


class SeerResamplerLayer(nn.Module):
    """Latents attend to [image tokens; latents] (a LayerNorm on each, bias-free projections,
    ``heads × head_dim`` wide), then a bias-free 4x feed-forward; both residual."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads = heads
        inner = heads * head_dim
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, inner, bias=False)
        self.key_value = nn.Linear(dim, 2 * inner, bias=False)
        self.out = nn.Linear(inner, dim, bias=False)
        self.feed_forward = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, 4 * dim, bias=False), nn.GELU(), nn.Linear(4 * dim, dim, bias=False)
        )

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        normed = self.norm_latents(latents)
        keys, values = self.key_value(torch.cat([self.norm_media(media), normed], dim=1)).chunk(2, dim=-1)

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(x.shape[0], x.shape[1], self.heads, -1).transpose(1, 2)

        attended = F.scaled_dot_product_attention(heads(self.query(normed)), heads(keys), heads(values))
        latents = latents + self.out(attended.transpose(1, 2).flatten(2))
        return latents + self.feed_forward(latents)


class SeerResampler(nn.Module):
    """``[N, P, dim]`` image tokens → ``[N, queries, dim]`` through learned latents (one resampler
    for every camera)."""

    def __init__(self, dim: int, queries: int, layers: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(queries, dim))
        self.layers = nn.ModuleList(SeerResamplerLayer(dim, heads, head_dim) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, media: torch.Tensor) -> torch.Tensor:
        latents = self.latents.expand(media.shape[0], -1, -1)
        for layer in self.layers:
            latents = layer(media, latents)
        return self.norm(latents)


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """MAE's fixed 2-D sine-cosine positions ``[grid², dim]`` (cells row by row): the first half of
    the channels encodes the column, the second the row, each ``[sin, cos]`` of the coordinate
    times ``1 / 10000^(i / (dim/4))``, ``i < dim/4``."""
    quarter = dim // 4
    frequencies = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, columns = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")

    def encode(coordinate: torch.Tensor) -> torch.Tensor:
        angles = coordinate.reshape(-1, 1).double() * frequencies
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(columns), encode(rows)], dim=1).float()


class ForesightDecoder(nn.Module):
    """Seer's image decoder, per camera: the frame's ``tokens`` foresight outputs (projected)
    followed by one mask token per image patch, with fixed sine-cosine positions (the tokens' own
    √tokens grid, then the patch grid), through two ViT blocks; the patch positions' outputs,
    normalised, predict each patch's ``patch² × 3`` (normalised) pixels."""

    def __init__(self, dim: int, tokens: int, patches_per_side: int, patch_size: int) -> None:
        super().__init__()
        self.projection = nn.Linear(dim, dim)
        self.mask_token = nn.Parameter(torch.randn(dim) * 0.02)
        positions = torch.cat([sincos_2d(dim, math.isqrt(tokens)), sincos_2d(dim, patches_per_side)])
        self.register_buffer("positions", positions, persistent=False)
        self.patches = patches_per_side**2
        self.blocks = nn.ModuleList(PreNormBlock(dim, FORESIGHT_DECODER_HEADS) for _ in range(FORESIGHT_DECODER_LAYERS))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, patch_size * patch_size * 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[M, tokens, dim]`` → ``[M, patches, patch² × 3]``."""
        masks = self.mask_token.expand(tokens.shape[0], self.patches, -1)
        x = torch.cat([self.projection(tokens), masks], dim=1) + self.positions.to(tokens.dtype)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, -self.patches :]))


def seer_pixels(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` → ``[N, 3, size, size]`` as Seer's CLIP image processor makes them:
    bicubic resize (clipped to [0, 1]), CLIP mean and std."""
    pixels = images.permute(0, 3, 1, 2).float() / 255.0
    if pixels.shape[-2:] != (size, size):
        pixels = F.interpolate(pixels, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    mean = torch.tensor(CLIP_MEAN, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=pixels.device).view(1, 3, 1, 1)
    return (pixels - mean) / std


def patch_targets(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """``[N, 3, H, W]`` → ``[N, (H/p)(W/p), p·p·3]`` (patches row by row, each ``(row, column,
    channel)``), every patch normalised to zero mean and unit (unbiased) variance: MAE's
    ``patchify`` + Seer's ``normalize_patchfied_image``."""
    n, channels, height, width = pixels.shape
    patches = pixels.reshape(n, channels, height // patch, patch, width // patch, patch)
    patches = patches.permute(0, 2, 4, 3, 5, 1).reshape(n, (height // patch) * (width // patch), patch * patch * channels)
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + 1e-6).sqrt()


@dataclass
class SeerPrediction:
    """A forward pass: the teacher's :class:`ModelOutput`, and (when asked) the predicted future
    image patches ``[N real frames, cameras, patches, patch² × 3]``."""

    output: ModelOutput
    images: torch.Tensor | None = None


class SeerTeacherModel(nn.Module):
    """The Seer architecture; the same interface as :class:`TeacherModel` (``encode_images``,
    ``forward`` → :class:`ModelOutput`, ``set_normalization``, saving), plus ``predict`` and
    ``foresight_loss`` for the image-prediction objective."""

    kind = "teacher"

    def __init__(self, config: Any, tokenizer: Any, text_encoder: nn.Module | None = None,
                 image_encoder: nn.Module | None = None) -> None:
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection, ViTConfig, ViTModel

        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.layout = seer_layout(config)
        self.image_encoder = image_encoder or ViTModel(ViTConfig(**config.vit), add_pooling_layer=False)
        vit = self.image_encoder.config
        self.image_size, self.patch_size = int(vit.image_size), int(vit.patch_size)
        self.text_encoder = text_encoder or CLIPTextModelWithProjection(CLIPTextConfig(**config.text))
        width, hidden = vit.hidden_size, config.hidden
        self.text_projection = nn.Linear(self.text_encoder.config.projection_dim, hidden)
        self.state_encoder = StateEncoder(hidden, config.state_rotation)
        self.state_mean: torch.Tensor | None
        self.state_std: torch.Tensor | None
        if config.normalize:
            self.register_buffer("state_mean", torch.zeros(state_dim(config.state_rotation)))
            self.register_buffer("state_std", torch.ones(state_dim(config.state_rotation)))
        else:
            self.state_mean = self.state_std = None
        self.resampler = SeerResampler(width, config.resampler_queries, config.resampler_layers, config.resampler_heads,
                                       config.resampler_head_dim)
        self.image_projections = nn.ModuleDict({camera: nn.Linear(width, hidden) for camera in config.cameras})
        self.cls_projections = nn.ModuleDict({camera: nn.Linear(width, hidden) for camera in config.cameras})
        if config.foresight:
            self.foresight_queries = nn.Parameter(torch.zeros(self.layout.foresight, hidden))
            self.foresight_decoder = ForesightDecoder(hidden, config.foresight_tokens, self.image_size // self.patch_size,
                                                      self.patch_size)
        self.action_queries = nn.Parameter(torch.zeros(config.chunk, hidden))
        self.timestep_embedding = nn.Parameter(torch.randn(config.history, hidden) * 0.02)
        self.embedding_norm = nn.LayerNorm(hidden)
        self.embedding_dropout = nn.Dropout(TRANSFORMER_DROPOUT)
        self.blocks = nn.ModuleList(
            PreNormBlock(hidden, config.heads, gelu_approximate="tanh", dropout=TRANSFORMER_DROPOUT)
            for _ in range(config.layers)
        )
        self.final_norm = nn.LayerNorm(hidden)
        self.action_decoder = ActionDecoder(hidden, normalized=config.normalize)
        self._initialize()
        if "image" in config.frozen_encoders:
            self.image_encoder.requires_grad_(False)
        if "text" in config.frozen_encoders:
            self.text_encoder.requires_grad_(False)

    def _initialize(self) -> None:
        """Seer's initialisation: Xavier-uniform linear layers with zero biases outside the
        encoders; GPT-2's normal(0.02) in the transformer blocks (output projections scaled by
        1/√(2·layers))."""
        encoders = {id(m) for part in (self.image_encoder, self.text_encoder) for m in part.modules()}
        in_blocks = {id(m) for m in self.blocks.modules()}
        for module in self.modules():
            if isinstance(module, nn.Linear) and id(module) not in encoders and id(module) not in in_blocks:
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        residual_std = 0.02 / math.sqrt(2 * len(self.blocks))
        for block in self.blocks:
            for linear in (block.qkv, block.out, block.mlp[0], block.mlp[2]):
                nn.init.normal_(linear.weight, std=residual_std if linear in (block.out, block.mlp[2]) else 0.02)
                nn.init.zeros_(linear.bias)

    def set_normalization(self, state_mean: torch.Tensor, state_std: torch.Tensor, arm_scale: torch.Tensor) -> None:
        """Store the training data's statistics (a ``normalize`` config only)."""
        if not self.config.normalize:
            raise VitabenchError("this teacher config has normalize=false: it keeps no statistics")
        self.state_mean.copy_(state_mean)
        self.state_std.copy_(state_std)
        self.action_decoder.arm_scale.copy_(arm_scale)

    # -- encoders -----------------------------------------------------------------------------
    def encode_text(self, instructions: list[str]) -> torch.Tensor:
        """CLIP's projected text embedding of each instruction, projected: ``[B, hidden]``."""
        unique = sorted(set(instructions))
        tokens = self.tokenizer(
            unique, padding=True, truncation=True, max_length=self.config.max_text_tokens, return_tensors="pt"
        ).to(self.action_queries.device)
        projected = self.text_projection(self.text_encoder(**tokens).text_embeds)
        return projected[torch.tensor([unique.index(text) for text in instructions], device=projected.device)]

    def encode_images(self, images: dict[str, torch.Tensor]) -> torch.Tensor:
        """uint8 ``[N, H, W, 3]`` per camera → ``[N, cameras × (queries + 1), hidden]``: every
        camera's resampled tokens, then every camera's CLS token."""
        resampled, cls_tokens = [], []
        for camera in self.config.cameras:
            pixels = seer_pixels(images[camera], self.image_size).to(self.action_queries.dtype)
            features = self.image_encoder(pixel_values=pixels).last_hidden_state
            resampled.append(self.image_projections[camera](self.resampler(features[:, 1:])))
            cls_tokens.append(self.cls_projections[camera](features[:, :1]))
        return torch.cat(resampled + cls_tokens, dim=1)

    # -- forward ------------------------------------------------------------------------------
    def forward(self, batch: FrameBatch) -> ModelOutput:
        return self.predict(batch).output

    def predict(self, batch: FrameBatch, foresight: bool = False) -> SeerPrediction:
        """The actions of every frame; with ``foresight`` also the predicted future image patches."""
        config, layout = self.config, self.layout
        mask = batch.frame_mask
        n_rows, n_frames = mask.shape
        if n_frames > config.history:
            raise VitabenchError(f"teacher got {n_frames} frames; its history is {config.history}")
        if foresight and not config.foresight:
            raise VitabenchError("this teacher config has foresight=false: it predicts no images")
        dtype = self.action_queries.dtype
        text = self.encode_text(batch.instructions)[:, None, None].expand(-1, n_frames, 1, -1)
        state = batch.state.to(dtype)
        if self.state_mean is not None:
            state = (state - self.state_mean) / self.state_std
        state = self.state_encoder(state)[:, :, None]
        images = scatter_frames(batch.real_image_tokens(self), mask)
        learned = [self.foresight_queries, self.action_queries] if config.foresight else [self.action_queries]
        queries = torch.cat(learned).expand(n_rows, n_frames, -1, -1)
        tokens = torch.cat([text, state, images, queries], dim=2) + self.timestep_embedding[:n_frames, None]
        x = self.embedding_dropout(self.embedding_norm(tokens.flatten(1, 2)))
        allowed = layout.attention(n_frames, device=x.device)
        for block in self.blocks:
            x = block(x, allowed)
        x = self.final_norm(x).view(n_rows, n_frames, layout.per_frame, -1)
        features = x[:, :, -config.chunk :] * mask[:, :, None, None]
        output = ModelOutput(action_features=features, actions=self.action_decoder(features))
        if not foresight:
            return SeerPrediction(output)
        cameras = len(config.cameras)
        predicted = x[:, :, layout.context : layout.context + layout.foresight][mask]  # [N, cameras × tokens, hidden]
        patches = self.foresight_decoder(predicted.reshape(-1, config.foresight_tokens, predicted.shape[-1]))
        return SeerPrediction(output, patches.view(predicted.shape[0], cameras, *patches.shape[1:]))

    def foresight_loss(self, predicted: torch.Tensor, future: dict[str, torch.Tensor], valid: torch.Tensor) -> torch.Tensor:
        """Seer's image-prediction loss: the mean over cameras of the MSE between ``predicted``
        (``predict(..., foresight=True).images``) and the per-patch normalised pixels of the
        ``future`` images (uint8 ``[N, H, W, 3]`` per camera, one per real frame), over the frames
        that have one (``valid [N]``)."""
        if not bool(valid.any()):
            return predicted.sum() * 0.0
        losses = []
        for index, camera in enumerate(self.config.cameras):
            target = patch_targets(seer_pixels(future[camera][valid], self.image_size), self.patch_size)
            losses.append(F.mse_loss(predicted[valid, index].float(), target))
        return torch.stack(losses).mean()

    # -- building and saving ------------------------------------------------------------------
    @classmethod
    def build(cls, config: Any, text_encoder_dir: str | None = None, image_encoder_dir: str | None = None) -> SeerTeacherModel:
        """A new (untrained) Seer teacher; a pretrained CLIP text encoder (``text_encoder_dir``)
        or ViT / MAE image encoder (``image_encoder_dir``) is loaded and frozen, as Seer does."""
        tokenizer, text_encoder, image_encoder = clip_tokenizer(), None, None
        frozen = set(config.frozen_encoders)
        if text_encoder_dir is not None:
            text_encoder, tokenizer = load_clip_text(text_encoder_dir)
            config = dataclasses.replace(config, text=encoder_fields(text_encoder.config, CLIP_TEXT_FIELDS))
            frozen.add("text")
        if image_encoder_dir is not None:
            image_encoder = load_vit(image_encoder_dir)
            config = dataclasses.replace(config, vit=encoder_fields(image_encoder.config, VIT_FIELDS))
            frozen.add("image")
        config = dataclasses.replace(config, frozen_encoders=tuple(e for e in ENCODERS if e in frozen))
        return cls(config, tokenizer, text_encoder, image_encoder)

    def save_extras(self, directory: Path) -> None:
        """What the weights file does not hold: the tokenizer."""
        self.tokenizer.save_pretrained(directory / "tokenizer")

    @classmethod
    def from_saved(cls, config: Any, directory: Path) -> SeerTeacherModel:
        """The skeleton of a saved Seer teacher (weights are loaded by the caller)."""
        quiet_transformers()
        return cls(config, load_tokenizer(directory / "tokenizer"))


def encoder_fields(config: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The ``names`` of a transformers config, as a teacher config records them."""
    values = config.to_dict()
    return {name: values[name] for name in names if name in values}


def load_clip_text(directory: str | Path) -> tuple[nn.Module, Any]:
    """A CLIP text encoder with its projection, and its tokenizer, from a local transformers
    directory (a ``CLIPModel`` or ``CLIPTextModelWithProjection``)."""
    from transformers import AutoConfig, CLIPTextModelWithProjection

    quiet_transformers()
    path = Path(directory)
    if not (path / "config.json").is_file():
        raise VitabenchError(f"text encoder {str(directory)!r} holds no config.json; accepted: a local CLIP model directory")
    try:
        config = AutoConfig.from_pretrained(path)
        if config.model_type == "clip":  # a full CLIP model: its text tower with the model's projection width
            config = config.text_config
            config.projection_dim = AutoConfig.from_pretrained(path).projection_dim
        return CLIPTextModelWithProjection.from_pretrained(path, config=config), load_tokenizer(path)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise VitabenchError(f"text encoder {str(directory)!r} cannot be loaded as a CLIP text model: {exc}") from None


def load_vit(directory: str | Path) -> nn.Module:
    """A ViT image encoder (no pooler) from a local transformers ``ViTModel`` or ``ViTMAEModel``
    directory; an MAE's weights go into a plain ViT (the encoder without masking)."""
    from transformers import AutoConfig, AutoModel, ViTConfig, ViTModel

    quiet_transformers()
    path = Path(directory)
    if not (path / "config.json").is_file():
        raise VitabenchError(f"image encoder {str(directory)!r} holds no config.json; accepted: a local ViT or ViT-MAE directory")
    model_type = AutoConfig.from_pretrained(path).model_type
    if model_type not in ("vit", "vit_mae"):
        raise VitabenchError(f"image encoder {str(directory)!r} holds a {model_type!r} model; accepted: vit, vit_mae")
    try:
        loaded = AutoModel.from_pretrained(path)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise VitabenchError(f"image encoder {str(directory)!r} cannot be loaded: {exc}") from None
    vit = ViTModel(ViTConfig(**encoder_fields(loaded.config, VIT_FIELDS)), add_pooling_layer=False)
    weights = {name: tensor for name, tensor in loaded.state_dict().items() if not name.startswith("pooler.")}
    missing, unexpected = vit.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise VitabenchError(f"image encoder {str(directory)!r} does not fit a ViT: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return vit
