"""PVA's training stages on :class:`DomainImages`, each writing a directory and returning its loss history.

0. :func:`train_clip` (only without a pretrained CLIP): a small CLIP trained contrastively on the
   rendered images and their domains' descriptions (random crops, so patches carry domain cues).
1. :func:`tune_prompts`: CLIP frozen; global, domain and instance-conditional prompt tokens
   trained so each image's feature is closest to its own domain's prompt embedding
   (cross-entropy over domains at CLIP's temperature).
2. :func:`train_aligner`: CLIP and prompts frozen; the aligner is trained so CLIP's embedding of
   the aligned image matches the canonical prompt embedding (conditioned on the input image):
   a global loss on the whole image and a patch loss on random crops (each ``1 - cos`` plus
   cross-entropy towards the canonical domain among all domain prompts), a content loss (the
   luminance edges of aligned and input image agree) and an identity loss on canonical images.

Stage 3 is evaluation: ``vitabench run --policy pva`` or ``vitabench pva evaluate``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from vitabench.api.errors import VitabenchError
from vitabench.pva.clip import Clip, build_clip, load_clip
from vitabench.pva.data import DomainImages
from vitabench.pva.models import Aligner, AlignerConfig, PromptConfig, PromptLearner, sobel_edges

Log = Callable[[str], None]


@dataclass
class StageResult:
    """A finished stage: where it wrote, its total loss per step and each loss component per step."""

    out: Path
    losses: list[float]
    components: dict[str, list[float]] = field(default_factory=dict)


def to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` -> float ``[B, 3, H, W]`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(255.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255.0).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def random_crops(images: torch.Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.4, 0.7)) -> torch.Tensor:
    """One random square crop per image (side a random fraction of the image), same size for the batch."""
    height, width = images.shape[-2:]
    fraction = float(torch.empty(1).uniform_(*scale, generator=generator))
    side = max(4, int(round(min(height, width) * fraction)))
    tops = torch.randint(0, height - side + 1, (len(images),), generator=generator)
    lefts = torch.randint(0, width - side + 1, (len(images),), generator=generator)
    return torch.stack([img[:, t : t + side, l : l + side] for img, t, l in zip(images, tops.tolist(), lefts.tolist())])


def _check_data(data: DomainImages, canonical: str) -> None:
    data.index_of(canonical)
    if len(data.domain_names) < 2:
        raise VitabenchError(f"PVA needs images of at least two domains; the data holds {list(data.domain_names)}")


def _frozen(clip: Clip) -> Clip:
    clip.model.eval()
    for parameter in clip.model.parameters():
        parameter.requires_grad_(False)
    return clip


def train_clip(
    data: DomainImages, out: str | Path, *, size: str = "small", steps: int = 300, batch: int = 64,
    lr: float = 1e-3, seed: int = 0, log: Log | None = None,
) -> StageResult:
    """Stage 0: a small CLIP from scratch, contrastive between images and their domains' descriptions."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    clip = load_clip(build_clip(out, size, seed))
    clip.model.train()
    ids = clip.tokenize(list(data.descriptions))
    optimiser = torch.optim.AdamW(clip.model.parameters(), lr=lr, weight_decay=0.01)
    labels_all = torch.from_numpy(data.domain)
    losses: list[float] = []
    for step in range(steps):
        index = rng.choice(len(data), size=min(batch, len(data)), replace=False)
        images = to_float(data.images[index])
        if step % 2:
            images = random_crops(images, generator, (0.5, 0.9))
        labels = labels_all[index]
        image_features = clip.encode_images(images)
        text_features = clip.encode_token_embeddings(clip.model.text_model.embeddings.token_embedding(ids), ids)
        logits = clip.model.logit_scale.exp() * image_features @ text_features.T  # [B, D]
        image_loss = F.cross_entropy(logits, labels)
        present = torch.unique(labels)
        targets = (labels[None, :] == present[:, None]).float()
        text_loss = -(targets / targets.sum(1, keepdim=True) * F.log_softmax(logits.T[present], dim=1)).sum(1).mean()
        loss = (image_loss + text_loss) / 2
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            clip.model.logit_scale.clamp_(0, np.log(100.0))
        losses.append(loss.item())
        if log is not None and (step % 50 == 0 or step == steps - 1):
            log(f"train-clip step {step}: loss {loss.item():.4f}")
    clip.save(out)
    _write_history(Path(out), "train_clip", losses, {})
    return StageResult(Path(out), losses)


def tune_prompts(
    data: DomainImages, clip_dir: str | Path, out: str | Path, *, canonical: str = "canonical", steps: int = 200,
    batch: int = 64, lr: float = 2e-3, n_global: int = 4, n_domain: int = 4, seed: int = 0, log: Log | None = None,
) -> StageResult:
    """Stage 1: prompt tokens for each domain in ``data``; CLIP (copied into ``out/clip``) stays frozen."""
    _check_data(data, canonical)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    out = Path(out)
    clip = _frozen(load_clip(clip_dir))
    clip.save(out / "clip")
    learner = PromptLearner(clip, PromptConfig(data.domain_names, data.descriptions, n_global, n_domain, canonical))
    with torch.no_grad():
        features = torch.cat([clip.encode_images(to_float(data.images[i : i + 256])) for i in range(0, len(data), 256)])
    labels_all = torch.from_numpy(data.domain)
    parameters = [p for n, p in learner.named_parameters() if not n.startswith("clip.")]
    optimiser = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    losses: list[float] = []
    accuracy: list[float] = []
    for step in range(steps):
        index = torch.from_numpy(rng.choice(len(data), size=min(batch, len(data)), replace=False))
        logits = learner.logits(features[index])
        loss = F.cross_entropy(logits, labels_all[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        accuracy.append(float((logits.argmax(1) == labels_all[index]).float().mean()))
        if log is not None and (step % 50 == 0 or step == steps - 1):
            log(f"tune-prompts step {step}: loss {loss.item():.4f}, domain accuracy {accuracy[-1]:.2f}")
    learner.save(out)
    _write_history(out, "tune_prompts", losses, {"accuracy": accuracy})
    return StageResult(out, losses, {"accuracy": accuracy})


@dataclass(frozen=True)
class AlignWeights:
    global_: float = 1.0
    patch: float = 0.5
    content: float = 2.0
    identity: float = 10.0


def train_aligner(
    data: DomainImages, prompts_dir: str | Path, out: str | Path, *, steps: int = 300, batch: int = 32,
    lr: float = 2e-3, width: int = 16, n_crops: int = 2, weights: AlignWeights = AlignWeights(), seed: int = 0,
    log: Log | None = None,
) -> StageResult:
    """Stage 2: the aligner, against the canonical domain's prompt embedding (CLIP and prompts frozen)."""
    prompts_dir = Path(prompts_dir)
    clip = _frozen(load_clip(prompts_dir / "clip"))
    learner = PromptLearner.load(prompts_dir, clip)
    for parameter in learner.parameters():
        parameter.requires_grad_(False)
    canonical = learner.canonical_index
    data_canonical = data.index_of(learner.config.canonical)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    aligner = Aligner(AlignerConfig(width=width))
    optimiser = torch.optim.AdamW(aligner.parameters(), lr=lr, weight_decay=0.0)
    scale = clip.model.logit_scale.exp()
    components: dict[str, list[float]] = {k: [] for k in ("global", "patch", "content", "identity")}
    losses: list[float] = []
    target_labels = torch.full((batch,), canonical, dtype=torch.long)

    def semantic(features: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        cosine = (features * prompts[:, canonical]).sum(-1)
        logits = scale * torch.einsum("be,bde->bd", features, prompts)
        return (1.0 - cosine).mean() + F.cross_entropy(logits, target_labels[: len(features)])

    for step in range(steps):
        index = rng.choice(len(data), size=min(batch, len(data)), replace=False)
        images = to_float(data.images[index])
        with torch.no_grad():
            prompts = learner(clip.encode_images(images))  # [B, D, E], conditioned on the input image
        aligned = aligner(images)
        parts = {
            "global": semantic(clip.encode_images(aligned), prompts),
            "patch": sum(semantic(clip.encode_images(random_crops(aligned, generator)), prompts) for _ in range(n_crops)) / n_crops,
            "content": F.l1_loss(sobel_edges(aligned), sobel_edges(images)),
        }
        is_canonical = torch.from_numpy(data.domain[index] == data_canonical)
        parts["identity"] = (
            F.l1_loss(aligned[is_canonical], images[is_canonical]) if bool(is_canonical.any()) else aligned.sum() * 0.0
        )
        loss = (
            weights.global_ * parts["global"] + weights.patch * parts["patch"]
            + weights.content * parts["content"] + weights.identity * parts["identity"]
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        for name, value in parts.items():
            components[name].append(value.item())
        if log is not None and (step % 50 == 0 or step == steps - 1):
            log(f"align step {step}: loss {loss.item():.4f} " + " ".join(f"{k} {v[-1]:.4f}" for k, v in components.items()))
    out = Path(out)
    aligner.save(out, {"prompts": str(prompts_dir), "domains": list(data.domain_names), "canonical": learner.config.canonical})
    _write_history(out, "align", losses, components)
    return StageResult(out, losses, components)


def alignment_report(aligner: Aligner, data: DomainImages, canonical: str = "canonical") -> list[dict[str, object]]:
    """Per domain: mean absolute pixel error (0-255) to the canonical render of the same scene, before and after alignment."""
    reference = {(int(s), str(c)): i for i, (s, c, d) in enumerate(zip(data.state_id, data.camera, data.domain)) if d == data.index_of(canonical)}
    rows = []
    with torch.no_grad():
        for index, name in enumerate(data.domain_names):
            members = [i for i in np.flatnonzero(data.domain == index) if (int(data.state_id[i]), str(data.camera[i])) in reference]
            if not members:
                continue
            targets = data.images[[reference[(int(data.state_id[i]), str(data.camera[i]))] for i in members]].astype(np.float32)
            before = data.images[members].astype(np.float32)
            after = np.concatenate([to_uint8(aligner(to_float(data.images[members[i : i + 64]]))) for i in range(0, len(members), 64)]).astype(np.float32)
            rows.append({
                "domain": name, "set": data.domain_sets[index], "images": len(members),
                "error_before": float(np.abs(before - targets).mean()), "error_after": float(np.abs(after - targets).mean()),
            })
    return rows


def _write_history(out: Path, stage: str, losses: list[float], components: dict[str, list[float]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stage}_losses.json").write_text(json.dumps({"loss": losses, **components}))

