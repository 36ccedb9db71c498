"""``vita_vla``: the VITA-VLA student (a VLM + action token + state encoder + mapper + the
teacher's action decoder), with temporal ensembling of its 3-step chunks.

Arguments (``--policy-arg K=V``): ``checkpoint=NAME|DIR`` (a shipped checkpoint, see ``vitabench
list checkpoints``, or a directory) or ``preset=tiny|cpu|small|paper`` (untrained; ``paper``
needs ``vlm=DIR``, a local transformers VLM with H=3584); ``vlm=DIR`` (a LLaVA or InternVL
directory; ``vitabench convert vita15`` turns a VITA-1.5 one into InternVL);
ablations ``state_encoder``, ``action_token``, ``freeze_vlm`` (true/false); ``latent`` (D);
``history``; ``cameras``; ``protocol``; ``ensemble`` (the ensembling weight m, 0.01; ``none``
returns the raw chunks); ``device=auto|cpu|cuda``; ``seed``; ``resolution``.
"""

from __future__ import annotations

from typing import Any

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import Policy
from vitabench.models.runtime import make_model_policy, parse_bool, parse_cameras, parse_int, with_ensembling


def make(
    checkpoint: str | None = None,
    preset: str | None = None,
    vlm: str | None = None,
    state_encoder: Any = None,
    action_token: Any = None,
    freeze_vlm: Any = None,
    latent: Any = None,
    history: Any = None,
    cameras: Any = None,
    protocol: str | None = None,
    ensemble: Any = 0.01,
    device: str = "auto",
    seed: Any = 0,
    resolution: Any = None,
) -> Policy:
    """The student policy, wrapped in temporal ensembling unless ``ensemble=none``."""
    from vitabench.models.student import STUDENT_PRESETS, StudentConfig, StudentModel

    overrides: dict[str, Any] = {}
    for name, value in (("state_encoder", state_encoder), ("action_token", action_token), ("freeze_vlm", freeze_vlm)):
        if value is not None:
            overrides[name] = parse_bool(value, name)
    for name, value in (("latent", latent), ("history", history)):
        if value is not None:
            overrides[name] = parse_int(value, name)
    if cameras is not None:
        overrides["cameras"] = parse_cameras(cameras)
    if preset == "paper" and vlm is None:
        raise VitabenchError("vita_vla preset=paper needs vlm=DIR, a local transformers VLM with hidden size 3584")
    policy = make_model_policy(
        kind=StudentModel.kind,
        config_class=StudentConfig,
        presets=STUDENT_PRESETS,
        build=lambda config, name: StudentModel.build(config, vlm, name),
        from_saved=StudentModel.from_saved,
        checkpoint=checkpoint,
        preset=preset,
        overrides=overrides,
        device=device,
        seed=seed,
        resolution=resolution,
        protocol=protocol,
    )
    return with_ensembling(policy, ensemble)
