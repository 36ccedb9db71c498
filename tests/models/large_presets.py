"""The paper-sized teacher presets (200M+ parameters) for tests of their shapes and forward pass.

Their default random initialisation costs 4-5 CPU-s each (kaiming-uniform for every layer, then
transformers' normal init again), which those tests do not need: ``build_cheaply`` skips it
(transformers' ``no_init_weights``) and fills every parameter from one seeded uniform draw.
Buffers (position ids, sine-cosine positions) are computed as in a normal build.
"""

from __future__ import annotations

import torch

from vitabench.models.teacher import TeacherConfig, TeacherModel


def build_cheaply(config: TeacherConfig, seed: int = 0) -> TeacherModel:
    """``TeacherModel.build(config)`` in eval mode, its parameters uniform in [-0.02, 0.02]."""
    from transformers.initialization import no_init_weights

    with no_init_weights():
        model = TeacherModel.build(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(-0.02, 0.02, generator=generator)
    return model.eval()
