"""Parts both models share: state encoder, action decoder, action loss, tokenizer, devices."""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vitabench.api.errors import VitabenchError

#: Arm state: end-effector xyz + its orientation; gripper state: the two finger positions.
GRIPPER_STATE_DIM = 2
ARM_ACTION_DIM = 6
#: How a model reads the end-effector orientation, and how many values it takes: ``euler``
#: (VITA-VLA's xyz Euler angles; roll jumps between ±π when the gripper points down) or
#: ``rot6d`` (two columns of the rotation matrix: continuous).
STATE_ROTATIONS: dict[str, int] = {"euler": 3, "rot6d": 6}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def check_state_rotation(rotation: str) -> int:
    """The number of orientation values of ``rotation``; an unknown name raises naming the accepted ones."""
    if rotation not in STATE_ROTATIONS:
        raise VitabenchError(f"state_rotation={rotation!r}; accepted: {', '.join(STATE_ROTATIONS)}")
    return STATE_ROTATIONS[rotation]


def state_dim(rotation: str) -> int:
    """Length of the model state vector: xyz, orientation, two fingers."""
    return 3 + check_state_rotation(rotation) + GRIPPER_STATE_DIM


def model_state(ee_pos: np.ndarray, ee_quat: np.ndarray, gripper_qpos: np.ndarray, rotation: str) -> np.ndarray:
    """The state vector ``[..., state_dim]`` a model reads: eef xyz, orientation as ``rotation``
    asks (from an ``xyzw`` quaternion), the two finger positions."""
    from vitabench.geometry import quat_to_euler_xyz, quat_to_rot6d

    check_state_rotation(rotation)
    orientation = quat_to_euler_xyz(ee_quat) if rotation == "euler" else quat_to_rot6d(ee_quat)
    parts = [np.asarray(ee_pos, dtype=np.float64), orientation, np.asarray(gripper_qpos, dtype=np.float64)]
    return np.concatenate(parts, axis=-1).astype(np.float32)


class StateEncoder(nn.Module):
    """One token per frame: Linear(arm→H) on xyz + orientation, Linear(2→H) on the gripper, concat,
    Linear(2H→H). No nonlinearity, as in VITA-VLA (whose arm input is xyz + Euler: 6 values)."""

    def __init__(self, hidden: int, rotation: str = "euler") -> None:
        super().__init__()
        self.arm_dim = 3 + check_state_rotation(rotation)
        self.arm = nn.Linear(self.arm_dim, hidden)
        self.gripper = nn.Linear(GRIPPER_STATE_DIM, hidden)
        self.project = nn.Linear(2 * hidden, hidden)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """``state [..., arm + 2]`` (arm, then the two fingers) → ``[..., H]``."""
        arm, gripper = state.split([self.arm_dim, GRIPPER_STATE_DIM], dim=-1)
        return self.project(torch.cat([self.arm(arm), self.gripper(gripper)], dim=-1))


@dataclass
class ActionOutput:
    """Decoded actions for every frame and chunk step: ``arm [..., 6]`` in [-1, 1] (in units of
    ``arm_scale`` when the decoder is normalised), ``gripper_logit [..., 1]``."""

    arm: torch.Tensor
    gripper_logit: torch.Tensor
    arm_scale: torch.Tensor | None = None

    def actions(self) -> torch.Tensor:
        """7-D actions: arm (back in action units), then gripper thresholded at probability 0.5 to ±1 (+1 closes)."""
        gripper = torch.where(self.gripper_logit > 0, 1.0, -1.0).to(self.arm.dtype)
        arm = self.arm if self.arm_scale is None else self.arm * self.arm_scale.to(self.arm.dtype)
        return torch.cat([arm, gripper], dim=-1)

    def arm_target(self, target: torch.Tensor) -> torch.Tensor:
        """Arm actions ``target [..., 7]`` in the units the arm head predicts (clipped to [-1, 1])."""
        arm = target[..., :ARM_ACTION_DIM]
        if self.arm_scale is None:
            return arm
        return (arm / self.arm_scale.to(arm.dtype)).clamp(-1.0, 1.0)


class ActionDecoder(nn.Module):
    """The teacher's action decoder: Linear(D→D/2), ReLU, Linear(D/2→D/2), ReLU; arm head 6 + tanh,
    gripper head 1 (logit; sigmoid > 0.5 closes). ``normalized`` adds the buffer ``arm_scale``
    (set from the training data): the arm head then predicts actions divided by it."""

    def __init__(self, latent: int, normalized: bool = False) -> None:
        super().__init__()
        half = latent // 2
        self.trunk = nn.Sequential(nn.Linear(latent, half), nn.ReLU(), nn.Linear(half, half), nn.ReLU())
        self.arm_head = nn.Linear(half, ARM_ACTION_DIM)
        self.gripper_head = nn.Linear(half, 1)
        self.arm_scale: torch.Tensor | None
        if normalized:
            self.register_buffer("arm_scale", torch.ones(ARM_ACTION_DIM))
        else:
            self.arm_scale = None

    def forward(self, latent: torch.Tensor) -> ActionOutput:
        features = self.trunk(latent)
        return ActionOutput(arm=torch.tanh(self.arm_head(features)), gripper_logit=self.gripper_head(features),
                            arm_scale=self.arm_scale)


def action_loss(output: ActionOutput, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """VITA-VLA's stage-2 loss: smooth-L1 on the 6 arm dims ×1.0 + BCE on the gripper ×0.01.

    ``target [..., 7]`` holds gripper -1 (open) / +1 (close); ``mask [...]`` selects the entries
    that count (all when None). A normalised decoder is compared in its own units.
    """
    arm_loss = F.smooth_l1_loss(output.arm, output.arm_target(target), reduction="none").mean(-1)
    closed = (target[..., ARM_ACTION_DIM:] > 0).to(output.gripper_logit.dtype)
    gripper_loss = F.binary_cross_entropy_with_logits(output.gripper_logit, closed, reduction="none").mean(-1)
    loss = arm_loss + 0.01 * gripper_loss
    if mask is None:
        return loss.mean()
    weights = mask.to(loss.dtype)
    return (loss * weights).sum() / weights.sum().clamp(min=1.0)


def normalize_images(images: torch.Tensor, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` → float ``[N, 3, size, size]``, resized (bilinear) and normalized."""
    pixels = images.permute(0, 3, 1, 2).float() / 255.0
    if pixels.shape[-1] != size or pixels.shape[-2] != size:
        pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean_t = torch.tensor(mean, device=pixels.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=pixels.device).view(1, 3, 1, 1)
    return (pixels - mean_t) / std_t


def resolve_device(device: str) -> tuple[torch.device, torch.dtype]:
    """``auto`` → CUDA in bf16 when available, else CPU in fp32; ``cpu``/``cuda[:i]`` as given."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise VitabenchError(f"device={device!r}; accepted: auto, cpu, cuda, cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise VitabenchError(f"device={device!r} but no CUDA GPU is available; accepted here: auto, cpu")
    return resolved, (torch.bfloat16 if resolved.type == "cuda" else torch.float32)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte → printable unicode map used by byte-level BPE vocabularies."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def clip_bpe_file() -> Path:
    """The CLIP BPE merges shipped in the ``open-clip-torch`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"
        if path.exists():
            return path
    raise VitabenchError(
        "the CLIP tokenizer vocabulary (bpe_simple_vocab_16e6.txt.gz) was not found; install it with "
        "'pip install --no-deps open-clip-torch' or pass a checkpoint/text_encoder directory holding a tokenizer"
    )


@functools.lru_cache(maxsize=1)
def clip_vocabulary() -> tuple[dict[str, int], tuple[str, ...]]:
    """CLIP's 49408-token vocabulary and its BPE merge lines, built as open_clip builds them."""
    lines = gzip.open(clip_bpe_file()).read().decode("utf-8").split("\n")
    merges = tuple(lines[1 : 49152 - 256 - 2 + 1])
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}, merges


@functools.lru_cache(maxsize=1)
def clip_tokenizer() -> Any:
    """The real CLIP BPE tokenizer (49408 tokens) as a ``transformers.CLIPTokenizer``."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocabulary()
    return CLIPTokenizer(vocab=vocab, merges=[tuple(m.split()) for m in merges])


#: The files a transformers tokenizer is read from (what a VITA-1.5 conversion copies, too).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "tokenizer.model",
                   "special_tokens_map.json", "added_tokens.json", "chat_template.jinja")


def load_tokenizer(directory: str | Path) -> Any:
    """``AutoTokenizer.from_pretrained(directory)``, parsed once per process for the same files.

    A checkpoint's CLIP tokenizer is 3.6 MB of JSON and takes ~0.15 s to parse; every checkpoint of
    a teacher or student carries one. Loads of byte-identical tokenizer files (the same checkpoint
    again, or another with the same tokenizer) share the parsed one: models only call it.
    """
    from transformers import AutoTokenizer

    path = Path(directory)
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        if (path / name).is_file():
            digest.update(name.encode() + b"\0" + (path / name).read_bytes() + b"\0")
    key = digest.hexdigest()
    if key not in _PARSED_TOKENIZERS:
        if len(_PARSED_TOKENIZERS) >= 8:
            _PARSED_TOKENIZERS.pop(next(iter(_PARSED_TOKENIZERS)))  # the oldest
        _PARSED_TOKENIZERS[key] = AutoTokenizer.from_pretrained(path)
    return _PARSED_TOKENIZERS[key]


#: load_tokenizer's tokenizers by the digest of their files (at most 8, oldest first).
_PARSED_TOKENIZERS: dict[str, Any] = {}


def quiet_transformers() -> None:
    """Silence transformers' progress bars and info logging while models are built and loaded."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@dataclass
class FrameBatch:
    """A batch of frame histories, the input of both models.

    ``images[camera]``: uint8 ``[B, T, H, W, 3]``; ``state``: float ``[B, T, 8]`` (eef xyz, Euler
    xyz, two finger positions); ``frame_mask``: bool ``[B, T]``, True for real frames, which come
    first (oldest → newest) and are followed by padding; ``instructions``: one string per row.
    ``image_tokens``, when given, replaces ``images``: the model's ``encode_images`` output for
    the real frames in row-major order ``[N, tokens, hidden]`` (a policy caches it per frame).
    ``frame_index``, when given, says ``images`` holds distinct frames ``[U, H, W, 3]`` and the
    real frame ``n`` (row-major) shows distinct frame ``frame_index[n]``: overlapping training
    windows then encode each frame once.
    """

    images: dict[str, torch.Tensor]
    state: torch.Tensor
    frame_mask: torch.Tensor
    instructions: list[str]
    image_tokens: torch.Tensor | None = None
    frame_index: torch.Tensor | None = None

    def real_image_tokens(self, model: Any) -> torch.Tensor:
        """``[N, tokens, hidden]`` for the real frames: the given tokens, else encoded now."""
        if self.image_tokens is not None:
            return self.image_tokens
        if self.frame_index is not None:
            return model.encode_images(self.images)[self.frame_index]
        return model.encode_images({camera: frames[self.frame_mask] for camera, frames in self.images.items()})

    @property
    def newest(self) -> torch.Tensor:
        """Index ``[B]`` of each row's newest real frame."""
        return self.frame_mask.sum(dim=1) - 1


@dataclass
class ModelOutput:
    """Per frame and chunk step: ``action_features [B, T, chunk, D]`` (the teacher's transformer
    outputs at its action queries; the student's mapper output, matched to them in stage 1) and
    the decoded actions; padded frames hold zeros."""

    action_features: torch.Tensor
    actions: ActionOutput

    def newest_actions(self, batch: FrameBatch) -> torch.Tensor:
        """7-D actions ``[B, chunk, 7]`` predicted at each row's newest frame."""
        rows = torch.arange(batch.frame_mask.shape[0], device=batch.frame_mask.device)
        return self.actions.actions()[rows, batch.newest]


def scatter_frames(values: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Place ``values [N, ...]`` computed for the real frames into ``[B, T, ...]`` (zeros elsewhere)."""
    out = values.new_zeros(*frame_mask.shape, *values.shape[1:])
    out[frame_mask] = values
    return out
