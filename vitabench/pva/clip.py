"""CLIP for PVA: loading from a local directory, a small CLIP built from a config, the real BPE vocabulary.

No pretrained CLIP can be downloaded on this machine, so :func:`build_clip` writes an untrained
small :class:`transformers.CLIPModel` (and a tokenizer over the real CLIP vocabulary) to a
directory that :func:`load_clip` reads back with ``from_pretrained``, exactly like a real
checkpoint (e.g. ``openai/clip-vit-base-patch32`` downloaded elsewhere). The vocabulary comes
from ``bpe_simple_vocab_16e6.txt.gz`` in the ``open-clip-torch`` wheel (installed with
``--no-deps``; open_clip itself is never imported).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitabench.api.errors import VitabenchError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ClipSize:
    """The size of a small CLIP built from scratch."""

    image_size: int = 64
    patch_size: int = 8
    width: int = 64
    layers: int = 2
    heads: int = 2
    embed_dim: int = 64
    context_length: int = 40


CLIP_SIZES: dict[str, ClipSize] = {
    "tiny": ClipSize(image_size=32, patch_size=8, width=32, layers=1, heads=2, embed_dim=32, context_length=32),
    "small": ClipSize(),
}


def save_tokenizer(path: Path) -> None:
    """Write ``vocab.json`` and ``merges.txt`` (the files ``CLIPTokenizer`` reads) to ``path``."""
    from vitabench.models.common import clip_vocabulary

    vocab, merges = clip_vocabulary()
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def build_clip(path: str | Path, size: str = "small", seed: int = 0) -> Path:
    """Write an untrained CLIPModel of ``size`` and the real CLIP tokenizer files to ``path``."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    if size not in CLIP_SIZES:
        raise VitabenchError(f"unknown CLIP size {size!r}; accepted: {', '.join(CLIP_SIZES)}")
    s = CLIP_SIZES[size]
    config = CLIPConfig(
        text_config=dict(
            vocab_size=49408, hidden_size=s.width, intermediate_size=4 * s.width, num_hidden_layers=s.layers,
            num_attention_heads=s.heads, max_position_embeddings=s.context_length, eos_token_id=49407,
            bos_token_id=49406, pad_token_id=49407,
        ),
        vision_config=dict(
            image_size=s.image_size, patch_size=s.patch_size, hidden_size=s.width, intermediate_size=4 * s.width,
            num_hidden_layers=s.layers, num_attention_heads=s.heads,
        ),
        projection_dim=s.embed_dim,
    )
    torch.manual_seed(seed)
    path = Path(path)
    CLIPModel(config).save_pretrained(path)
    save_tokenizer(path)
    return path


@dataclass
class Clip:
    """A CLIP model with its tokenizer; images are uint8 ``[B, H, W, 3]`` or float ``[B, 3, H, W]`` in [0, 1]."""

    model: Any
    tokenizer: Any
    path: str

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    @property
    def context_length(self) -> int:
        return int(self.model.config.text_config.max_position_embeddings)

    def tokenize(self, texts: list[str]) -> Any:
        """Token ids ``[B, context_length]`` (start, text, end, end-padding)."""
        out = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.context_length, return_tensors="pt")
        return out["input_ids"]

    def preprocess(self, images: Any) -> Any:
        """Float images in [0, 1] ``[B, 3, H, W]`` -> CLIP input (resized, normalised); differentiable."""
        import torch
        import torch.nn.functional as F

        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(CLIP_MEAN, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std

    def encode_images(self, images: Any) -> Any:
        """L2-normalised image embeddings of float images ``[B, 3, H, W]`` in [0, 1]."""
        pooled = self.model.vision_model(pixel_values=self.preprocess(images)).pooler_output
        return _normalise(self.model.visual_projection(pooled))

    def encode_token_embeddings(self, embeddings: Any, input_ids: Any) -> Any:
        """L2-normalised text embeddings from token embeddings ``[B, L, W]`` (learnable prompts go here).

        ``input_ids`` gives the end-of-text position, where CLIP pools.
        """
        import torch
        from transformers.masking_utils import create_causal_mask

        text = self.model.text_model
        hidden = text.embeddings(inputs_embeds=embeddings)
        no_cache = {_cache_keyword(): None}
        mask = create_causal_mask(config=text.config, inputs_embeds=hidden, attention_mask=None, **no_cache)
        hidden = text.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True).last_hidden_state
        hidden = text.final_layer_norm(hidden)
        eos = (input_ids == text.config.eos_token_id).int().argmax(dim=-1)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), eos]
        return _normalise(self.model.text_projection(pooled))

    def encode_texts(self, texts: list[str]) -> Any:
        ids = self.tokenize(texts)
        return self.encode_token_embeddings(self.model.text_model.embeddings.token_embedding(ids), ids)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        self.model.save_pretrained(path)
        save_tokenizer(path)
        return path


def load_clip(path: str | Path) -> Clip:
    """A CLIP model and tokenizer from a local directory (``from_pretrained``)."""
    from transformers import CLIPModel, CLIPTokenizer

    path = Path(path)
    if not (path / "config.json").exists():
        raise VitabenchError(
            f"CLIP directory {str(path)!r} holds no config.json; accepted: a directory written by save_pretrained "
            "(e.g. vitabench pva train-clip --out DIR)"
        )
    model = CLIPModel.from_pretrained(path)
    if (path / "vocab.json").exists():
        tokenizer = CLIPTokenizer(vocab=str(path / "vocab.json"), merges=str(path / "merges.txt"))
    else:
        tokenizer = CLIPTokenizer.from_pretrained(path)
    return Clip(model=model, tokenizer=tokenizer, path=str(path))


@functools.lru_cache(maxsize=1)
def _cache_keyword() -> str:
    """``create_causal_mask``'s name for the KV cache: ``cache`` from transformers 5.25 (which
    deprecates ``past_key_values``, to be removed in 5.40), ``past_key_values`` before."""
    import inspect

    from transformers.masking_utils import create_causal_mask

    return "cache" if "cache" in inspect.signature(create_causal_mask).parameters else "past_key_values"


def _normalise(x: Any) -> Any:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-6)
