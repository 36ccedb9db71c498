"""``pva``: any registered policy behind a PVA visual aligner.

Every camera image of every observation goes through the aligner (``vitabench pva align``) before
the inner policy sees it; everything else passes through unchanged.

Arguments (``--policy-arg K=V``): ``aligner=DIR`` (required); ``inner=NAME`` (a registered
policy, default ``vita_vla``); ``inner_args`` (the inner policy's arguments as a JSON object,
e.g. ``--policy-arg 'inner_args={"checkpoint": "runs/distill/teacher"}'``; a TOML
``--policy-config`` file can give it as a table); ``device=cpu|cuda``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from vitabench.api.errors import VitabenchError
from vitabench.api.policy import Observation, Policy, Provenance, policy_provenance
from vitabench.policy_wrappers import PolicyWrapper


class PvaPolicy(PolicyWrapper):
    """``inner`` seeing every camera image through ``aligner`` (a :class:`vitabench.pva.models.Aligner`).

    Its provenance is the inner policy's (trained protocol included), with a checkpoint hash over
    both the inner weights and the aligner's, and the aligner in the lineage.
    """

    def __init__(self, inner: Policy, aligner: Any, aligner_hash: str, device: str = "cpu") -> None:
        super().__init__(inner)
        self.aligner = aligner.to(device)
        self.device = device
        self.aligner_hash = aligner_hash

    @property
    def provenance(self) -> Provenance:
        inner = policy_provenance(self.inner)
        combined = hashlib.sha256(f"{inner.checkpoint_hash or 'none'}:{self.aligner_hash}".encode()).hexdigest()[:16]
        return Provenance(
            checkpoint_hash=combined,
            trained_protocol=inner.trained_protocol,
            lineage={"aligner": self.aligner_hash, "inner": inner.to_dict()},
        )

    def align(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``[..., H, W, 3]`` -> aligned uint8, same shape; one batched forward pass."""
        import torch

        from vitabench.pva.train import to_float, to_uint8

        flat = images.reshape(-1, *images.shape[-3:])
        with torch.no_grad():
            aligned = to_uint8(self.aligner(to_float(flat).to(self.device)))
        return aligned.reshape(images.shape)

    def act(self, observations: Sequence[Observation], slots: Sequence[int] | None = None) -> np.ndarray:
        keys = [(row, camera) for row, obs in enumerate(observations) for camera in (obs.get("images") or {})]
        if not keys:
            return self.inner.act(observations, slots)
        stacked = [np.asarray(observations[row]["images"][camera]) for row, camera in keys]
        shapes = {image.shape for image in stacked}
        if len(shapes) == 1:
            aligned = list(self.align(np.stack(stacked)))
        else:  # cameras at different resolutions: one pass per image
            aligned = [self.align(image) for image in stacked]
        images: list[dict[str, np.ndarray]] = [dict(obs.get("images") or {}) for obs in observations]
        for (row, camera), image in zip(keys, aligned):
            images[row][camera] = image
        return self.inner.act([{**obs, "images": imgs} for obs, imgs in zip(observations, images)], slots)


def _inner_args(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, Mapping):
        raise VitabenchError(f"pva inner_args={value!r}; accepted: a JSON object, e.g. inner_args='{{\"preset\": \"tiny\"}}'")
    return dict(value)


def make(aligner: str | None = None, inner: str = "vita_vla", inner_args: Any = None, device: str = "cpu") -> Policy:
    """The ``inner`` policy (built with ``inner_args``) behind the aligner in directory ``aligner``."""
    from vitabench.pva.models import Aligner
    from vitabench.plugins import POLICIES, make_policy

    if aligner is None:
        raise VitabenchError("policy pva needs --policy-arg aligner=DIR (a directory written by vitabench pva align)")
    if POLICIES.canonical(inner) == "pva":
        raise VitabenchError("pva inner=pva: the inner policy must be another policy")
    arguments = _inner_args(inner_args)
    model = Aligner.load(aligner)
    aligner_hash = hashlib.sha256((Path(aligner) / "aligner.pt").read_bytes()).hexdigest()[:16]
    return PvaPolicy(make_policy(inner, **arguments), model, aligner_hash, device)
