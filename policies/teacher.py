"""``teacher``: the Seer-style action model VITA-VLA distils from, as a batched policy.

Arguments (``--policy-arg K=V``): ``checkpoint=NAME|DIR`` (a shipped checkpoint, see
``vitabench list checkpoints``, or a directory) or ``preset=tiny|paper|cpu|seer|seer_tiny``
(untrained); ``text_encoder=DIR`` (a local CLIP model, for presets), ``image_encoder=DIR`` (a
local ViT / MAE, for the seer presets); ``device=auto|cpu|cuda``; ``seed``;
``history``, ``cameras`` (for presets; checked against a checkpoint); ``protocol`` (checked
against the one a checkpoint was trained under); ``resolution``; ``ensemble`` (temporal
ensembling weight m; default ``none``: the raw 3-step chunk, which the runner executes whole
before the next observation reaches the history).
"""

from __future__ import annotations

from typing import Any

from vitabench.api.policy import Policy
from vitabench.models.runtime import make_model_policy, parse_cameras, parse_int, with_ensembling


def make(
    checkpoint: str | None = None,
    preset: str | None = None,
    text_encoder: str | None = None,
    image_encoder: str | None = None,
    device: str = "auto",
    seed: Any = 0,
    history: Any = None,
    cameras: Any = None,
    protocol: str | None = None,
    resolution: Any = None,
    ensemble: Any = None,
) -> Policy:
    """The teacher policy: the raw 3-step chunk, or one ensembled action per step with ``ensemble=m``."""
    from vitabench.models.teacher import TEACHER_PRESETS, TeacherConfig, TeacherModel

    overrides: dict[str, Any] = {}
    if history is not None:
        overrides["history"] = parse_int(history, "history")
    if cameras is not None:
        overrides["cameras"] = parse_cameras(cameras)
    policy = make_model_policy(
        kind=TeacherModel.kind,
        config_class=TeacherConfig,
        presets=TEACHER_PRESETS,
        build=lambda config, _preset: TeacherModel.build(config, text_encoder, image_encoder),
        from_saved=TeacherModel.from_saved,
        checkpoint=checkpoint,
        preset=preset,
        overrides=overrides,
        device=device,
        seed=seed,
        resolution=resolution,
        protocol=protocol,
    )
    return with_ensembling(policy, ensemble)
