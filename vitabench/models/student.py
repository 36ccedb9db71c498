"""The VITA-VLA student: a transformers VLM kept as it is, plus one learnable action token, a state
encoder, an action mapper into the teacher's action space, and the teacher's action decoder."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitabench.api.errors import VitabenchError
from vitabench.models import backbones
from vitabench.models.common import (
    CLIP_MEAN,
    CLIP_STD,
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
from vitabench.models.teacher import LIBERO_CAMERAS


@dataclass(frozen=True)
class StudentConfig:
    """The parts VITA-VLA adds to a VLM. ``latent`` is D, the teacher's hidden size.

    Ablations: ``state_encoder=False`` drops the state token; ``action_token=False`` reads the
    last position of each frame's prompt instead of three action slots (one action per frame,
    repeated over the chunk); ``freeze_vlm=True`` freezes the language model (otherwise only the
    vision tower, projector and LM head are frozen, as in stage 2; a head tied to the token
    embedding freezes that embedding too). ``state_rotation`` and ``normalize`` follow the
    teacher's (its statistics are copied with its decoder).

    ``train_vision=True`` makes the vision tower and projector trainable (in stage 2, and in
    stage 1 too: see :meth:`StudentModel.freeze_for_alignment`). This departs from the paper,
    which keeps a pretrained VLM's vision frozen throughout: with a random-initialised backbone
    (the ``tiny``/``cpu`` presets) a frozen vision tower cannot see the scene. It combines with
    ``freeze_vlm`` (the LM stays frozen, vision and projector train). The LM head (and a token
    embedding tied to it) stays frozen either way. Checkpoints written before this field load
    with it False.
    """

    cameras: tuple[str, ...] = LIBERO_CAMERAS
    latent: int = 64
    history: int = 7
    chunk: int = 3
    state_encoder: bool = True
    action_token: bool = True
    freeze_vlm: bool = False
    image_mean: tuple[float, ...] = CLIP_MEAN
    image_std: tuple[float, ...] = CLIP_STD
    hidden: int | None = None  # H, required of the VLM when set (the paper preset)
    state_rotation: str = "euler"
    normalize: bool = False
    train_vision: bool = False

    def __post_init__(self) -> None:
        check_state_rotation(self.state_rotation)


#: The paper's student: VITA-1.5 (InternViT-300M + Qwen2.5-7B, H=3584) with the LIBERO teacher's D=384.
#: It needs ``vlm=DIR``, a local transformers VLM of that hidden size.
STUDENT_PRESETS: dict[str, StudentConfig] = {
    "tiny": StudentConfig(latent=64),
    "small": StudentConfig(latent=384),
    # the shipped cpu teacher's student (D=128, rot6d state, normalised); its random backbone
    # must learn to see, so its vision tower and projector train
    "cpu": StudentConfig(latent=128, state_rotation="rot6d", normalize=True, train_vision=True),
    "paper": StudentConfig(latent=384, hidden=3584),
}




def _vlm_config(preset: str) -> Any:
    """LLaVA-style configs built from scratch: CLIP vision tower + MLP projector + Qwen2 LM."""
    from transformers import CLIPVisionConfig, LlavaConfig, Qwen2Config

    sizes = {
        # about 3.5M parameters (mostly the token embedding), 16 tokens per image
        "tiny": (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      image_size=56, patch_size=14),
                 dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2)),
        # trained from scratch on a CPU (train_vision): about 8.3M parameters, 6.3M of them the
        # tied token embedding; 128 px (LIBERO's render size) in 32 px patches → 16 tokens per
        # image, so 7 frames x (2 x 16 image + instruction + state + 3 action) ≈ 330 LM positions,
        # which dominate a step's time (hence the LM's narrow MLP)
        "cpu": (dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                     image_size=128, patch_size=32),
                dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                     num_key_value_heads=4)),
        # about 200M parameters, 49 tokens per image (the paper's 200 px → 49 tokens)
        "small": (dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=12, num_attention_heads=6,
                       image_size=98, patch_size=14),
                  dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=16, num_attention_heads=12,
                       num_key_value_heads=4)),
    }
    if preset not in sizes:
        raise VitabenchError(f"no VLM is built for preset {preset!r}; accepted: {', '.join(sizes)} (or pass vlm=DIR)")
    vision, text = sizes[preset]
    tokenizer = clip_tokenizer()
    return LlavaConfig(
        vision_config=CLIPVisionConfig(**vision),
        text_config=Qwen2Config(**text, vocab_size=len(tokenizer), max_position_embeddings=4096,
                                tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id),
        image_token_id=tokenizer.eos_token_id,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        tie_word_embeddings=True,
    )


def build_vlm_dir(preset: str, directory: Path) -> None:
    """Save a freshly initialised VLM of ``preset`` and its tokenizer to ``directory``."""
    from transformers import AutoModelForImageTextToText

    quiet_transformers()
    AutoModelForImageTextToText.from_config(_vlm_config(preset)).save_pretrained(directory)
    clip_tokenizer().save_pretrained(directory)


class StudentModel(nn.Module):
    """VITA-VLA. Per frame the LM reads ``[image tokens per camera, instruction, state, action × 3]``;
    the last-layer hidden states at the three action slots go through the mapper into the teacher's
    action space (``action_features``, matched to the teacher's in stage 1) and its decoder.
    Frames are concatenated as embeddings without a chat template (the released code wraps each
    frame in a user/assistant turn); the LM head is never run."""

    kind = "vita_vla"

    def __init__(self, config: StudentConfig, vlm: nn.Module, tokenizer: Any, image_size: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.vlm = vlm
        self.tokenizer = tokenizer
        hidden = vlm.config.get_text_config().hidden_size
        if config.hidden is not None and config.hidden != hidden:
            raise VitabenchError(f"the VLM's hidden size is {hidden}; this student config needs H={config.hidden}")
        self.image_size = backbones.vision_size(vlm.config) if image_size is None else image_size
        if config.action_token:
            self.action_token = nn.Parameter(torch.randn(hidden) * 0.02)
        if config.state_encoder:
            self.state_encoder = StateEncoder(hidden, config.state_rotation)
        self.state_mean: torch.Tensor | None
        self.state_std: torch.Tensor | None
        if config.normalize:
            self.register_buffer("state_mean", torch.zeros(state_dim(config.state_rotation)))
            self.register_buffer("state_std", torch.ones(state_dim(config.state_rotation)))
        else:
            self.state_mean = self.state_std = None
        latent = config.latent
        self.mapper = nn.Sequential(
            nn.Linear(hidden, latent), nn.GELU(), nn.Linear(latent, latent), nn.GELU(), nn.Linear(latent, latent)
        )
        self.action_decoder = ActionDecoder(latent, normalized=config.normalize)
        self._instruction_ids: dict[str, list[int]] = {}
        self.vlm.requires_grad_(False)
        self.language_model.requires_grad_(not config.freeze_vlm)
        for module in self.vision_modules():
            module.requires_grad_(config.train_vision)
        self.vlm.get_output_embeddings().requires_grad_(False)

    @property
    def language_model(self) -> nn.Module:
        """The VLM's causal LM body (no LM head): its last hidden states are read out."""
        return self.vlm.get_decoder()

    def vision_modules(self) -> tuple[nn.Module, nn.Module]:
        """The vision tower and the projector (both families keep them on ``vlm.model``)."""
        return self.vlm.model.vision_tower, self.vlm.model.multi_modal_projector

    def vlm_trainable(self) -> list[str]:
        """Names of the VLM parameters that train: the LM's unless ``freeze_vlm`` (never the LM
        head or a token embedding tied to it), the vision tower's and projector's when ``train_vision``."""
        return [name for name, p in self.vlm.named_parameters() if p.requires_grad]

    def freeze_for_alignment(self) -> None:
        """Stage 1's trainable set: the action token, state encoder and mapper, plus the vision
        tower and projector when ``train_vision`` (a departure from the paper, whose pretrained
        VLM stays frozen: a random backbone's vision must learn to see). The LM, its head and
        the action decoder stay frozen."""
        self.requires_grad_(False)
        modules = [self.mapper, getattr(self, "state_encoder", None)]
        if self.config.train_vision:
            modules.extend(self.vision_modules())
        for module in modules:
            if module is not None:
                module.requires_grad_(True)
        if self.config.action_token:
            self.action_token.requires_grad_(True)

    def _instruction(self, text: str) -> list[int]:
        if text not in self._instruction_ids:
            self._instruction_ids[text] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._instruction_ids[text]

    def forward(self, batch: FrameBatch) -> ModelOutput:
        mask = batch.frame_mask
        inputs, readouts = self._sequences(batch)
        # right padding under the LM's causal mask: no real position attends to a padded one, so
        # no attention mask is passed (the LM's plain causal attention is the faster kernel)
        position_ids = torch.arange(inputs.shape[1], device=mask.device).expand(inputs.shape[0], -1)
        hidden = self.language_model(inputs_embeds=inputs, position_ids=position_ids).last_hidden_state
        rows = mask.nonzero()[:, 0]  # the row of every real frame, in order
        features = scatter_frames(self.mapper(hidden[rows[:, None], readouts]), mask)
        return ModelOutput(action_features=features, actions=self.action_decoder(features))

    def _sequences(self, batch: FrameBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded input embeddings ``[B, S, H]`` (zeros after each row's sequence) and, for
        every real frame, the ``chunk`` positions read out ``[N, chunk]``.

        A row is its real frames in order, each ``[image tokens, instruction, state, action × chunk]``.
        Every position is one row of a single source ``[image tokens; each row's instruction
        tokens; states; action token; zeros]`` (padding reads the zero row), gathered in one
        ``index_select``."""
        config = self.config
        mask = batch.frame_mask
        device = mask.device
        images = batch.real_image_tokens(self)  # [N, tokens, H] for the real frames in order
        n_frames, n_tokens, hidden = images.shape
        instructions = [self._instruction(text) for text in batch.instructions]
        embed = self.language_model.get_input_embeddings()
        words = embed(torch.tensor([i for ids in instructions for i in ids], device=device, dtype=torch.long))
        source = [images.reshape(-1, hidden), words]
        if config.state_encoder:
            state = batch.state[mask].to(images.dtype)
            if self.state_mean is not None:
                state = (state - self.state_mean) / self.state_std
            source.append(self.state_encoder(state))
        if config.action_token:
            source.append(self.action_token[None])
        source.append(images.new_zeros(1, hidden))
        source = torch.cat(source)

        # a frame of row b, frame_length[b] positions: image tokens [0, n_tokens), instruction
        # [n_tokens, prompt[b]), then n_state state and n_action action positions
        n_words = torch.tensor([len(ids) for ids in instructions], device=device)
        n_state, n_action = int(config.state_encoder), config.chunk if config.action_token else 0
        prompt = n_tokens + n_words[:, None]
        frame_length = prompt + n_state + n_action  # [B, 1]
        counts = mask.sum(dim=1)
        lengths = counts * frame_length[:, 0]
        position = torch.arange(int(lengths.max()), device=device)[None]
        within = position % frame_length
        frame = (counts.cumsum(0) - counts)[:, None] + position // frame_length  # its index among the real frames
        word_start = n_frames * n_tokens + n_words.cumsum(0) - n_words
        states_start = n_frames * n_tokens + int(n_words.sum())
        index = torch.where(within < n_tokens, frame * n_tokens + within, word_start[:, None] + within - n_tokens)
        index = torch.where(within < prompt, index, states_start + frame)
        index = torch.where(within < prompt + n_state, index, source.shape[0] - 2)  # the action token (only with it)
        index = torch.where(position < lengths[:, None], index, source.shape[0] - 1)
        inputs = source.index_select(0, index.flatten()).view(*index.shape, hidden)

        row, step = mask.nonzero().unbind(1)
        ends = (step[:, None] + 1) * frame_length[row]  # [N, 1]: one past each real frame's last position
        if config.action_token:
            readouts = ends - n_action + torch.arange(n_action, device=device)
        else:  # the frame's last prompt position, once per chunk step
            readouts = (ends - 1).expand(-1, config.chunk)
        return inputs, readouts

    def encode_images(self, images: dict[str, torch.Tensor]) -> torch.Tensor:
        """uint8 ``[N, H, W, 3]`` per camera → the VLM's projected image tokens ``[N, tokens, H]``."""
        tokens = []
        for camera in self.config.cameras:
            pixels = normalize_images(images[camera], self.image_size, self.config.image_mean, self.config.image_std)
            features = self.vlm.get_image_features(pixel_values=pixels.to(self.mapper[0].weight.dtype)).pooler_output
            tokens.append(torch.stack(list(features)) if isinstance(features, (list, tuple)) else features)
        return torch.cat(tokens, dim=1)

    # -- building and saving ------------------------------------------------------------------
    @classmethod
    def build(cls, config: StudentConfig, vlm_dir: str | Path | None = None, preset: str = "tiny") -> StudentModel:
        """A new student around the VLM in ``vlm_dir`` (a family of :mod:`backbones`; its image
        size, mean and std from its image-processor config), or around a fresh VLM of ``preset``
        (saved to a temporary directory and loaded back through the Auto classes)."""
        if vlm_dir is not None:
            return cls._around(config, *backbones.load_backbone(vlm_dir))
        with tempfile.TemporaryDirectory(prefix="vitabench-vlm-") as directory:
            build_vlm_dir(preset, Path(directory))
            return cls._around(config, *backbones.load_backbone(directory))

    @classmethod
    def _around(cls, config: StudentConfig, vlm: nn.Module, tokenizer: Any, image: backbones.ImageInput) -> StudentModel:
        config = dataclasses.replace(config, image_mean=image.mean or config.image_mean, image_std=image.std or config.image_std)
        return cls(config, vlm, tokenizer, image.size)

    def save_extras(self, directory: Path) -> None:
        """What the weights file does not hold: the VLM's config and tokenizer, and its image input."""
        self.vlm.config.save_pretrained(directory / "vlm")
        self.tokenizer.save_pretrained(directory / "vlm")
        image = backbones.ImageInput(self.image_size).to_processor_config(self.config.image_mean, self.config.image_std)
        (directory / "vlm" / backbones.PROCESSOR_FILE).write_text(json.dumps(image, indent=2))

    @classmethod
    def from_saved(cls, config: StudentConfig, directory: Path) -> StudentModel:
        """The skeleton of a saved student (weights are loaded by the caller)."""
        from transformers import AutoConfig

        quiet_transformers()
        vlm_config = AutoConfig.from_pretrained(directory / "vlm")
        image = backbones.image_input(directory / "vlm", vlm_config)
        return cls(config, backbones.from_config(vlm_config), load_tokenizer(directory / "vlm"), image.size)
