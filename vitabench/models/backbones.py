"""The VLM families a student takes as its backbone (``--backbone DIR`` / ``vlm=DIR``), loaded
through transformers' own ``from_pretrained``:

- ``llava``: ``LlavaForConditionalGeneration`` (CLIP-style vision tower + MLP projector + LM);
- ``internvl``: ``InternVLForConditionalGeneration`` (InternViT + pixel shuffle + MLP projector +
  Qwen2), VITA-1.5's family (``vitabench convert vita15`` writes one). A ``config.json`` with
  ``projector_layer_norm: false`` (VITA's projector has no LayerNorm) gets its projector's
  LayerNorm removed.

A directory's image size, mean and std come from its image-processor config
(``preprocessor_config.json``, or ``processor_config.json``'s ``image_processor``); without one,
the size is the vision tower's ``image_size`` (an int or a square ``[h, w]``) and the student
config's mean and std stand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from vitabench.api.config import read_json
from vitabench.api.errors import VitabenchError
from vitabench.models.common import load_tokenizer, quiet_transformers

#: model_type in config.json → the transformers class it loads as.
FAMILIES = {"llava": "LlavaForConditionalGeneration", "internvl": "InternVLForConditionalGeneration"}
#: config.json key: false when the projector has no LayerNorm (a converted VITA-1.5 directory).
PROJECTOR_LAYER_NORM = "projector_layer_norm"
PROCESSOR_FILE = "preprocessor_config.json"


@dataclass(frozen=True)
class ImageInput:
    """How a backbone wants its images: a square ``size``; ``mean``/``std`` when its processor
    config names them (None: the student config's)."""

    size: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def to_processor_config(self, mean: tuple[float, ...], std: tuple[float, ...]) -> dict[str, Any]:
        return {"size": {"height": self.size, "width": self.size}, "image_mean": list(mean), "image_std": list(std)}


def family(directory: Path) -> str:
    """The family of a local VLM directory; another family, or none, raises naming the accepted ones."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise VitabenchError(f"vlm={str(directory)!r} holds no config.json; accepted: a local transformers VLM directory")
    model_type = str(read_json(config_path, f"vlm={str(directory)!r}: config").get("model_type", ""))
    if model_type in FAMILIES:
        return model_type
    hint = " (VITA-1.5: convert it first with 'vitabench convert vita15 DIR OUT')" if model_type.lower().startswith("vita") else ""
    accepted = ", ".join(f"{name} ({cls})" for name, cls in FAMILIES.items())
    raise VitabenchError(f"vlm={str(directory)!r} holds a {model_type or 'untyped'!r} model; accepted families: {accepted}{hint}")


def square_size(value: Any, what: str) -> int:
    """An image size given as an int or ``[h, w]`` / ``{height, width}``; it must be square."""
    if isinstance(value, Mapping):
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
        value = (value.get("height"), value.get("width"))
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise VitabenchError(f"{what} image size {list(value)}; accepted: a square size")
        return int(value[0])
    return int(value)


def vision_size(vlm_config: Any) -> int:
    """The vision tower's own input size."""
    return square_size(vlm_config.vision_config.image_size, "the vision tower's")


def image_input(directory: Path, vlm_config: Any) -> ImageInput:
    """What ``directory``'s image-processor config says (size: ``crop_size`` when it center-crops,
    else ``size``), else the vision tower's size."""
    settings = _processor_settings(directory)
    if settings is None:
        return ImageInput(vision_size(vlm_config))
    what = f"{directory / PROCESSOR_FILE}'s"
    entry = settings.get("crop_size") if settings.get("do_center_crop") and "crop_size" in settings else settings.get("size")
    size = square_size(entry, what) if entry is not None else vision_size(vlm_config)
    mean, std = settings.get("image_mean"), settings.get("image_std")
    return ImageInput(size, None if mean is None else tuple(map(float, mean)), None if std is None else tuple(map(float, std)))


def _processor_settings(directory: Path) -> dict[str, Any] | None:
    for name, key in ((PROCESSOR_FILE, None), ("processor_config.json", "image_processor")):
        path = directory / name
        if path.is_file():
            data = read_json(path, "image-processor config")
            settings = data.get(key) if key else data
            if isinstance(settings, dict):
                return settings
    return None


def adapt(vlm: nn.Module) -> nn.Module:
    """Apply what the config says transformers' class does not model: no projector LayerNorm."""
    if getattr(vlm.config, PROJECTOR_LAYER_NORM, True) is False:
        vlm.model.multi_modal_projector.layer_norm = nn.Identity()
    return vlm


def load_backbone(directory: str | Path) -> tuple[nn.Module, Any, ImageInput]:
    """A VLM of an accepted family, its tokenizer and its image input, through ``from_pretrained``."""
    from transformers import AutoModelForImageTextToText

    quiet_transformers()
    path = Path(directory)
    family(path)
    try:
        vlm = AutoModelForImageTextToText.from_pretrained(path)
        tokenizer = load_tokenizer(path)
    except (OSError, ValueError, KeyError) as exc:
        raise VitabenchError(f"vlm={str(directory)!r} cannot be loaded as an image-text-to-text model: {exc}") from None
    return adapt(vlm), tokenizer, image_input(path, vlm.config)


def from_config(vlm_config: Any) -> nn.Module:
    """An untrained VLM of ``vlm_config`` (a saved student's skeleton), adapted as its directory was."""
    from transformers import AutoModelForImageTextToText

    quiet_transformers()
    return adapt(AutoModelForImageTextToText.from_config(vlm_config))
