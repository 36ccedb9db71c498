"""The teacher: a Seer-style action model (image encoder + perceiver resampler per camera, CLIP
text encoder, state encoder, GPT-2-style causal transformer over the frame history, learnable
action queries, action decoder), predicting a 3-step action chunk per frame.

The image encoder is a ViT (Seer's choice, pretrained in Seer) or, for training from scratch on
a CPU, a small convolutional stem; the state's orientation is read as Euler angles (VITA-VLA) or
as a continuous 6-D rotation; states and arm actions may be normalised with statistics of the
training data, stored in the checkpoint as buffers. Each is a field of :class:`TeacherConfig`,
so every checkpoint records its recipe and older checkpoints load as they were trained."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vitabench.api.errors import VitabenchError
from vitabench.models.common import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ActionDecoder,
    FrameBatch,
    ModelOutput,
    StateEncoder,
    check_state_rotation,
    clip_tokenizer,
    load_tokenizer,
    normalize_images,
    quiet_transformers,
    scatter_frames,
    state_dim,
)

LIBERO_CAMERAS = ("agentview", "robot0_eye_in_hand")
CLIP_TEXT_IDS = {"bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407, "vocab_size": 49408}


IMAGE_ENCODERS = ("vit", "conv")
#: ``vitabench``: the model of this module (every checkpoint before the field existed);
#: ``seer``: Seer's own architecture (:mod:`vitabench.models.seer`).
ARCHITECTURES = ("vitabench", "seer")


@dataclass(frozen=True)
class TeacherConfig:
    """Sizes and recipe of the teacher. ``vit`` and ``text`` are transformers ``ViTConfig`` /
    ``CLIPTextConfig`` fields; ``conv`` sizes the convolutional stem (``image_size``,
    ``channels``) when ``image_encoder="conv"``. ``state_rotation`` is ``euler`` or ``rot6d``;
    ``normalize`` adds state mean/std and arm-action scale buffers set from the training data.

    ``architecture="seer"`` builds Seer's architecture instead (a ViT image encoder is required);
    its fields: ``foresight`` (observation-prediction tokens, ``foresight_tokens`` per camera, a
    square, and the image-prediction loss on the frame ``foresight_steps`` ahead),
    ``resampler_head_dim``, and ``frozen_encoders`` (``image``, ``text``: encoders that do not
    train, which pretrained ones are). The defaults reproduce every earlier checkpoint."""

    cameras: tuple[str, ...] = LIBERO_CAMERAS
    vit: dict[str, Any] = field(default_factory=dict)
    text: dict[str, Any] = field(default_factory=dict)
    resampler_queries: int = 4
    resampler_layers: int = 1
    resampler_heads: int = 4
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    history: int = 7
    chunk: int = 3
    max_text_tokens: int = 77
    image_encoder: str = "vit"
    conv: dict[str, Any] = field(default_factory=dict)
    state_rotation: str = "euler"
    normalize: bool = False
    architecture: str = "vitabench"
    foresight: bool = False
    foresight_tokens: int = 9
    foresight_steps: int = 3
    resampler_head_dim: int = 64
    frozen_encoders: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise VitabenchError(f"teacher hidden={self.hidden} is not divisible by heads={self.heads}")
        if not self.cameras:
            raise VitabenchError("teacher cameras is empty; accepted: one or more of " + ", ".join(LIBERO_CAMERAS))
        if self.image_encoder not in IMAGE_ENCODERS:
            raise VitabenchError(f"teacher image_encoder={self.image_encoder!r}; accepted: {', '.join(IMAGE_ENCODERS)}")
        check_state_rotation(self.state_rotation)
        self._check_architecture()

    def _check_architecture(self) -> None:
        """The ``architecture`` and its fields; one line naming the first bad value."""
        from vitabench.models.seer import ENCODERS, FORESIGHT_DECODER_HEADS

        if self.architecture not in ARCHITECTURES:
            raise VitabenchError(f"teacher architecture={self.architecture!r}; accepted: {', '.join(ARCHITECTURES)}")
        unknown = [name for name in self.frozen_encoders if name not in ENCODERS]
        if unknown:
            raise VitabenchError(f"teacher frozen_encoders={list(self.frozen_encoders)!r}; accepted: any of {', '.join(ENCODERS)}")
        if self.architecture != "seer":
            if self.foresight:
                raise VitabenchError("teacher foresight=true needs architecture='seer'")
            return
        if self.image_encoder != "vit":
            raise VitabenchError(f"teacher architecture='seer' reads a ViT's CLS token; image_encoder={self.image_encoder!r}, accepted: vit")
        if self.foresight:
            root = int(self.foresight_tokens**0.5)
            if self.foresight_tokens < 1 or root * root != self.foresight_tokens:
                raise VitabenchError(f"teacher foresight_tokens={self.foresight_tokens}; accepted: a square (4, 9, 16, ...)")
            if self.foresight_steps < 1:
                raise VitabenchError(f"teacher foresight_steps={self.foresight_steps}; accepted: >= 1")
            if self.hidden % FORESIGHT_DECODER_HEADS:
                raise VitabenchError(
                    f"teacher hidden={self.hidden} with foresight; accepted: a multiple of {FORESIGHT_DECODER_HEADS} "
                    "(the heads of the image decoder)"
                )

    @property
    def tokens_per_frame(self) -> int:
        """text, state, resampled image tokens of every camera, action queries."""
        return 2 + len(self.cameras) * self.resampler_queries + self.chunk


TEACHER_PRESETS: dict[str, TeacherConfig] = {
    # CPU tests: about 4M parameters, most of them the CLIP token embedding.
    "tiny": TeacherConfig(
        vit=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                 image_size=64, patch_size=16),
        text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  max_position_embeddings=77, **CLIP_TEXT_IDS),
    ),
    # The LIBERO teacher of VITA-VLA (Seer-Large): MAE ViT-B/16, CLIP ViT-B/32 text, D=384, 24 layers.
    "paper": TeacherConfig(
        vit=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 image_size=224, patch_size=16),
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
                  max_position_embeddings=77, **CLIP_TEXT_IDS),
        resampler_queries=6,
        resampler_layers=3,
        resampler_heads=8,
        hidden=384,
        layers=24,
        heads=12,
        history=7,
    ),
    # Trained from scratch on this project's CPU: a conv stem over 128 px images (64 tokens per
    # camera), continuous orientation, normalised states and actions; about 4.5M parameters.
    "cpu": TeacherConfig(
        text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  max_position_embeddings=77, **CLIP_TEXT_IDS),
        image_encoder="conv",
        conv=dict(image_size=128, channels=[32, 64, 128]),
        resampler_queries=4,
        resampler_layers=1,
        resampler_heads=4,
        hidden=128,
        layers=4,
        heads=4,
        history=7,
        state_rotation="rot6d",
        normalize=True,
    ),
    # Seer-Large as Seer's LIBERO scripts run it (OpenRobotLab/Seer, scripts/LIBERO_LONG/Seer/
    # finetune.sh; models/seer_model.py): MAE ViT-B/16 at 224 px, CLIP ViT-B/32 text (512-d
    # projection), one resampler (768-d, 3 layers, 8 heads of 64, 6 queries), D=384, 24 GPT-2
    # layers of 12 heads, 7 frames, 3 action queries and 2 x 9 foresight tokens per frame,
    # image prediction 3 steps ahead, Euler state with both finger positions. Pretrained
    # encoders are frozen when given (build, vitabench convert seer).
    "seer": TeacherConfig(
        vit=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 image_size=224, patch_size=16, layer_norm_eps=1e-6),
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
                  max_position_embeddings=77, projection_dim=512, **CLIP_TEXT_IDS),
        resampler_queries=6,
        resampler_layers=3,
        resampler_heads=8,
        hidden=384,
        layers=24,
        heads=12,
        history=7,
        architecture="seer",
        foresight=True,
        foresight_tokens=9,
        foresight_steps=3,
    ),
    # The seer architecture at test size: about 4M parameters, most of them the CLIP token embedding.
    "seer_tiny": TeacherConfig(
        vit=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                 image_size=64, patch_size=16, layer_norm_eps=1e-6),
        text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  max_position_embeddings=77, projection_dim=64, **CLIP_TEXT_IDS),
        resampler_queries=4,
        resampler_layers=1,
        resampler_heads=2,
        resampler_head_dim=32,
        hidden=64,
        layers=2,
        heads=4,
        history=7,
        architecture="seer",
        foresight=True,
        foresight_tokens=4,
        foresight_steps=3,
    ),
}


class ConvImageEncoder(nn.Module):
    """A small convolutional stem for images learned from scratch: a 4x4 patchify convolution,
    then per scale a 3x3 convolution and a stride-2 3x3 convolution (GroupNorm + GELU after
    each), ending at 1/16 of the input size; a learned position embedding per output cell.
    ``[N, 3, S, S]`` → ``[N, (S/16)², channels[-1]]``."""

    def __init__(self, image_size: int, channels: list[int] | tuple[int, ...]) -> None:
        super().__init__()
        if image_size % 16 or len(channels) != 3:
            raise VitabenchError(f"conv image_size={image_size}, channels={list(channels)}; accepted: a multiple of 16 and 3 channel counts")

        def block(c_in: int, c_out: int, stride: int, kernel: int = 3) -> list[nn.Module]:
            padding = 0 if stride == kernel else kernel // 2
            return [nn.Conv2d(c_in, c_out, kernel, stride, padding), nn.GroupNorm(8, c_out), nn.GELU()]

        first, second, third = channels
        self.layers = nn.Sequential(
            *block(3, first, 4, kernel=4),
            *block(first, first, 1),
            *block(first, second, 2),
            *block(second, second, 1),
            *block(second, third, 2),
        )
        self.hidden_size = third
        self.position = nn.Parameter(torch.randn((image_size // 16) ** 2, third) * 0.02)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.layers(pixels)  # [N, C, S/16, S/16]
        return features.flatten(2).transpose(1, 2) + self.position


class ResamplerLayer(nn.Module):
    """Latents attend to [image features; latents], then a feed-forward (Flamingo's perceiver)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.feed_forward = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        queries = self.norm_latents(latents)
        keys = torch.cat([self.norm_media(media), queries], dim=1)
        latents = latents + self.attention(queries, keys, keys, need_weights=False)[0]
        return latents + self.feed_forward(latents)


class PerceiverResampler(nn.Module):
    """``[N, P, dim]`` image tokens → ``[N, queries, dim]`` through learned latent queries."""

    def __init__(self, dim: int, queries: int, layers: int, heads: int) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(queries, dim) * 0.02)
        self.layers = nn.ModuleList(ResamplerLayer(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, media: torch.Tensor) -> torch.Tensor:
        latents = self.latents.expand(media.shape[0], -1, -1)
        for layer in self.layers:
            latents = layer(media, latents)
        return self.norm(latents)


class CausalBlock(nn.Module):
    """A pre-LayerNorm GPT-2 block taking an explicit boolean attention mask ``[B, S, S]``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm_attention = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.norm_attention(x)).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])
        x = x + self.out(attended.transpose(1, 2).reshape(batch, length, dim))
        return x + self.mlp(self.norm_mlp(x))


class TeacherModel(nn.Module):
    """Seer-style action model. Each frame contributes ``[text, state, image tokens per camera,
    action queries × chunk]``; the action queries read out (no other token attends to them) and
    their transformer outputs are the ``action_features`` stage-1 distillation matches."""

    kind = "teacher"

    def __init__(self, config: TeacherConfig, tokenizer: Any, text_encoder: nn.Module | None = None) -> None:
        from transformers import CLIPTextConfig, CLIPTextModel, ViTConfig, ViTModel

        super().__init__()
        if config.architecture != "vitabench":
            raise VitabenchError(f"TeacherModel builds architecture 'vitabench', not {config.architecture!r}; use TeacherModel.build")
        self.config = config
        self.tokenizer = tokenizer
        self.image_encoder: nn.Module
        if config.image_encoder == "conv":
            self.image_size = int(config.conv["image_size"])
            self.image_encoder = ConvImageEncoder(self.image_size, config.conv["channels"])
            image_dim = self.image_encoder.hidden_size
        else:
            vit_config = ViTConfig(**config.vit)
            self.image_size = vit_config.image_size
            self.image_encoder = ViTModel(vit_config, add_pooling_layer=False)
            image_dim = vit_config.hidden_size
        self.text_encoder = text_encoder or CLIPTextModel(CLIPTextConfig(**config.text))
        self.resamplers = nn.ModuleDict(
            {
                camera: PerceiverResampler(image_dim, config.resampler_queries, config.resampler_layers, config.resampler_heads)
                for camera in config.cameras
            }
        )
        self.image_projection = nn.Linear(image_dim, config.hidden)
        self.text_projection = nn.Linear(self.text_encoder.config.hidden_size, config.hidden)
        self.state_encoder = StateEncoder(config.hidden, config.state_rotation)
        self.state_mean: torch.Tensor | None
        self.state_std: torch.Tensor | None
        if config.normalize:
            self.register_buffer("state_mean", torch.zeros(state_dim(config.state_rotation)))
            self.register_buffer("state_std", torch.ones(state_dim(config.state_rotation)))
        else:
            self.state_mean = self.state_std = None
        self.action_queries = nn.Parameter(torch.randn(config.chunk, config.hidden) * 0.02)
        self.frame_embedding = nn.Embedding(config.history, config.hidden)
        self.token_type_embedding = nn.Embedding(config.tokens_per_frame, config.hidden)
        self.blocks = nn.ModuleList(CausalBlock(config.hidden, config.heads) for _ in range(config.layers))
        self.final_norm = nn.LayerNorm(config.hidden)
        self.action_decoder = ActionDecoder(config.hidden, normalized=config.normalize)
        if "image" in config.frozen_encoders:
            self.image_encoder.requires_grad_(False)
        if "text" in config.frozen_encoders:
            self.text_encoder.requires_grad_(False)

    def set_normalization(self, state_mean: torch.Tensor, state_std: torch.Tensor, arm_scale: torch.Tensor) -> None:
        """Store the training data's statistics (a ``normalize`` config only)."""
        if not self.config.normalize:
            raise VitabenchError("this teacher config has normalize=false: it keeps no statistics")
        self.state_mean.copy_(state_mean)
        self.state_std.copy_(state_std)
        self.action_decoder.arm_scale.copy_(arm_scale)

    # -- encoders -----------------------------------------------------------------------------
    def encode_text(self, instructions: list[str]) -> torch.Tensor:
        """One pooled, projected CLIP text token per instruction: ``[B, hidden]``."""
        unique = sorted(set(instructions))
        tokens = self.tokenizer(
            unique, padding=True, truncation=True, max_length=self.config.max_text_tokens, return_tensors="pt"
        ).to(self.action_queries.device)
        pooled = self.text_encoder(**tokens).pooler_output
        projected = self.text_projection(pooled)
        return projected[torch.tensor([unique.index(text) for text in instructions], device=projected.device)]

    def encode_images(self, images: dict[str, torch.Tensor]) -> torch.Tensor:
        """uint8 ``[N, H, W, 3]`` per camera → ``[N, cameras × queries, hidden]`` (frame by frame)."""
        tokens = []
        for camera in self.config.cameras:
            pixels = normalize_images(images[camera], self.image_size, IMAGENET_MEAN, IMAGENET_STD).to(self.action_queries.dtype)
            if self.config.image_encoder == "conv":
                features = self.image_encoder(pixels)
            else:
                features = self.image_encoder(pixel_values=pixels).last_hidden_state
            tokens.append(self.image_projection(self.resamplers[camera](features)))
        return torch.cat(tokens, dim=1)

    # -- forward ------------------------------------------------------------------------------
    def forward(self, batch: FrameBatch) -> ModelOutput:
        config = self.config
        mask = batch.frame_mask
        n_rows, n_frames = mask.shape
        if n_frames > config.history:
            raise VitabenchError(f"teacher got {n_frames} frames; its history is {config.history}")
        dtype = self.action_queries.dtype
        text = self.encode_text(batch.instructions)[:, None, None].expand(-1, n_frames, 1, -1)
        state = batch.state.to(dtype)
        if self.state_mean is not None:
            state = (state - self.state_mean) / self.state_std
        state = self.state_encoder(state)[:, :, None]
        images = scatter_frames(batch.real_image_tokens(self), mask)
        queries = self.action_queries.expand(n_rows, n_frames, -1, -1)
        tokens = torch.cat([text, state, images, queries], dim=2)  # [B, T, K, hidden]
        tokens = tokens + self.frame_embedding.weight[:n_frames, None] + self.token_type_embedding.weight
        x = tokens.flatten(1, 2)
        allowed = self._attention_mask(mask)
        for block in self.blocks:
            x = block(x, allowed)
        x = self.final_norm(x).view(n_rows, n_frames, config.tokens_per_frame, -1)
        features = x[:, :, -config.chunk :] * mask[:, :, None, None]
        return ModelOutput(action_features=features, actions=self.action_decoder(features))

    def _attention_mask(self, frame_mask: torch.Tensor) -> torch.Tensor:
        """``[B, S, S]``: causal over real tokens; action queries are seen by no other token."""
        per_frame = self.config.tokens_per_frame
        length = frame_mask.shape[1] * per_frame
        device = frame_mask.device
        real = frame_mask.repeat_interleave(per_frame, dim=1)  # [B, S]
        is_query = (torch.arange(length, device=device) % per_frame) >= per_frame - self.config.chunk
        causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
        allowed = causal & ~is_query[None, :] & real[:, None, :]
        return allowed | torch.eye(length, dtype=torch.bool, device=device)

    # -- building and saving ------------------------------------------------------------------
    @classmethod
    def build(cls, config: TeacherConfig, text_encoder_dir: str | None = None, image_encoder_dir: str | None = None) -> Any:
        """A new (untrained) teacher of ``config.architecture``; ``text_encoder_dir`` loads a real
        CLIP text encoder and tokenizer, ``image_encoder_dir`` a ViT / MAE (the seer architecture,
        which freezes both, as Seer does)."""
        if config.architecture == "seer":
            from vitabench.models.seer import SeerTeacherModel

            return SeerTeacherModel.build(config, text_encoder_dir, image_encoder_dir)
        if image_encoder_dir is not None:
            raise VitabenchError("image_encoder_dir needs architecture='seer'; the vitabench teacher trains its image encoder")
        if text_encoder_dir is None:
            return cls(config, clip_tokenizer())
        from transformers import CLIPTextModel

        quiet_transformers()
        path = Path(text_encoder_dir)
        if not path.is_dir():
            raise VitabenchError(f"text_encoder={text_encoder_dir!r} is not a directory; accepted: a local CLIP model directory")
        try:
            text_encoder = CLIPTextModel.from_pretrained(path)
            tokenizer = load_tokenizer(path)
        except (OSError, ValueError) as exc:
            raise VitabenchError(f"text_encoder={text_encoder_dir!r} cannot be loaded as a CLIP text model: {exc}") from None
        text = {k: v for k, v in text_encoder.config.to_dict().items() if k in _TEXT_FIELDS}
        return cls(dataclasses.replace(config, text=text), tokenizer, text_encoder)

    def save_extras(self, directory: Path) -> None:
        """What the weights file does not hold: the tokenizer."""
        self.tokenizer.save_pretrained(directory / "tokenizer")

    @classmethod
    def from_saved(cls, config: TeacherConfig, directory: Path) -> Any:
        """The skeleton of a saved teacher of its recorded architecture (weights are loaded by the caller)."""
        if config.architecture == "seer":
            from vitabench.models.seer import SeerTeacherModel

            return SeerTeacherModel.from_saved(config, directory)
        quiet_transformers()
        return cls(config, load_tokenizer(directory / "tokenizer"))


_TEXT_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers", "num_attention_heads",
    "max_position_embeddings", "hidden_act", "layer_norm_eps", "bos_token_id", "eos_token_id", "pad_token_id",
)
