"""PVA's two learned parts: the prompt learner (text side) and the visual aligner (image to image).

:class:`PromptLearner` puts learnable tokens in front of each domain's description in CLIP's
text encoder: ``[start] [global x G] [domain x D] description. [end]``. The global tokens are
shared, the domain tokens belong to one domain, and a small meta-network turns an image's CLIP
feature into a bias added to every prompt token (instance-conditional, as in CoCoOp).

:class:`Aligner` is a small U-Net mapping an image in any domain to the canonical one; its output
is a residual in logit space, initialised to the identity.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vitabench.api.config import read_json
from vitabench.api.errors import VitabenchError
from vitabench.pva.clip import Clip


@dataclass(frozen=True)
class PromptConfig:
    domain_names: tuple[str, ...]
    descriptions: tuple[str, ...]
    n_global: int = 4
    n_domain: int = 4
    canonical: str = "canonical"


class PromptLearner(nn.Module):
    """Learnable global, domain-specific and instance-conditional prompt tokens for a frozen CLIP."""

    def __init__(self, clip: Clip, config: PromptConfig) -> None:
        super().__init__()
        if config.canonical not in config.domain_names:
            raise VitabenchError(f"prompt domains {list(config.domain_names)} lack the canonical domain {config.canonical!r}")
        self.config = config
        self.clip = clip
        token_embedding = clip.model.text_model.embeddings.token_embedding
        width = token_embedding.embedding_dim
        embed_dim = clip.model.config.projection_dim
        n_ctx = config.n_global + config.n_domain
        self.global_ctx = nn.Parameter(torch.randn(config.n_global, width) * 0.02)
        self.domain_ctx = nn.Parameter(torch.randn(len(config.domain_names), config.n_domain, width) * 0.02)
        self.meta_net = nn.Sequential(nn.Linear(embed_dim, max(16, embed_dim // 4)), nn.ReLU(), nn.Linear(max(16, embed_dim // 4), width))
        nn.init.zeros_(self.meta_net[2].weight)
        nn.init.zeros_(self.meta_net[2].bias)
        prompts = [" ".join(["X"] * n_ctx) + " " + d.rstrip(".") + "." for d in config.descriptions]
        ids = clip.tokenize(prompts)
        with torch.no_grad():
            embedded = token_embedding(ids)
        self.register_buffer("token_ids", ids, persistent=False)
        self.register_buffer("prefix", embedded[:, :1], persistent=False)
        self.register_buffer("suffix", embedded[:, 1 + n_ctx :], persistent=False)

    @property
    def canonical_index(self) -> int:
        return self.config.domain_names.index(self.config.canonical)

    def forward(self, image_features: torch.Tensor | None = None) -> torch.Tensor:
        """Prompt embeddings: ``[D, E]`` without images, ``[B, D, E]`` conditioned on ``[B, E]`` features."""
        n_domains = len(self.config.domain_names)
        ctx = torch.cat([self.global_ctx.expand(n_domains, -1, -1), self.domain_ctx], dim=1)  # [D, n_ctx, W]
        if image_features is None:
            return self._encode(ctx)
        bias = self.meta_net(image_features)  # [B, W]
        ctx = ctx[None] + bias[:, None, None, :]  # [B, D, n_ctx, W]
        batch = ctx.shape[0]
        encoded = self._encode(ctx.reshape(batch * n_domains, *ctx.shape[2:]), repeat=batch)
        return encoded.view(batch, n_domains, -1)

    def _encode(self, ctx: torch.Tensor, repeat: int = 1) -> torch.Tensor:
        prefix, suffix, ids = (t.repeat(repeat, *([1] * (t.dim() - 1))) for t in (self.prefix, self.suffix, self.token_ids))
        return self.clip.encode_token_embeddings(torch.cat([prefix, ctx, suffix], dim=1), ids)

    def logits(self, image_features: torch.Tensor) -> torch.Tensor:
        """Domain logits ``[B, D]`` of L2-normalised image features (CLIP's temperature)."""
        prompts = self(image_features)
        scale = self.clip.model.logit_scale.exp().detach()
        return scale * torch.einsum("be,bde->bd", image_features, prompts)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("clip.")}
        torch.save(state, path / "prompts.pt")
        (path / "prompts.json").write_text(json.dumps(asdict(self.config), indent=2))

    @classmethod
    def load(cls, path: Path, clip: Clip) -> PromptLearner:
        if not (path / "prompts.json").exists():
            raise VitabenchError(f"{str(path)!r} holds no prompts.json; accepted: a directory written by vitabench pva tune-prompts")
        data = read_json(path / "prompts.json", "prompt file")
        config = PromptConfig(**{**data, "domain_names": tuple(data["domain_names"]), "descriptions": tuple(data["descriptions"])})
        learner = cls(clip, config)
        learner.load_state_dict(torch.load(path / "prompts.pt", weights_only=True), strict=False)
        return learner


@dataclass(frozen=True)
class AlignerConfig:
    width: int = 16


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.GroupNorm(4, c_out), nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(4, c_out), nn.SiLU(),
    )


class Aligner(nn.Module):
    """A small U-Net: float images ``[B, 3, H, W]`` in [0, 1] -> aligned images, same shape."""

    def __init__(self, config: AlignerConfig = AlignerConfig()) -> None:
        super().__init__()
        w = config.width
        self.config = config
        self.enc1, self.enc2, self.enc3 = _block(3, w), _block(w, 2 * w, 2), _block(2 * w, 4 * w, 2)
        self.dec2 = _block(4 * w + 2 * w, 2 * w)
        self.dec1 = _block(2 * w + w, w)
        self.head = nn.Conv2d(w, 3, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        pad = ((-height) % 4, (-width) % 4)
        x = F.pad(images, (0, pad[1], 0, pad[0]), mode="replicate") if any(pad) else images
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat([F.interpolate(e3, size=e2.shape[-2:], mode="nearest"), e2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, size=e1.shape[-2:], mode="nearest"), e1], dim=1))
        logit = torch.logit(x.clamp(1e-3, 1 - 1e-3))
        return torch.sigmoid(logit + self.head(d1))[..., :height, :width]

    def save(self, path: Path, extra: dict[str, Any] | None = None) -> None:
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path / "aligner.pt")
        (path / "aligner.json").write_text(json.dumps({"config": asdict(self.config), **(extra or {})}, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> Aligner:
        path = Path(path)
        if not (path / "aligner.json").exists() or not (path / "aligner.pt").exists():
            raise VitabenchError(f"aligner directory {str(path)!r} lacks aligner.json/aligner.pt; accepted: a directory written by vitabench pva align")
        meta = read_json(path / "aligner.json", "aligner file")
        aligner = cls(AlignerConfig(**meta["config"]))
        aligner.load_state_dict(torch.load(path / "aligner.pt", weights_only=True))
        return aligner.eval()


def sobel_edges(images: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude of the luminance ``[B, 1, H, W]``: the scene's structure, not its colours."""
    luminance = (images * torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=images.device).view(1, 1, 3, 3)
    gx = F.conv2d(luminance, kx, padding=1)
    gy = F.conv2d(luminance, kx.transpose(-1, -2), padding=1)
    magnitude = torch.sqrt(gx * gx + gy * gy + 1e-6)
    return magnitude / magnitude.mean(dim=(-2, -1), keepdim=True).clamp_min(1e-3)
