"""How far each visual domain moves a shipped policy's image features from the canonical render of
the same scene, in units of the median distance between the features of different canonical scenes
(reports/transfer/README.md). Scenes: every third scene of the first 180 in a `vitabench pva render`
file, both cameras.

    .venv/bin/python scripts/feature_shift.py runs/pva/seen.npz teacher_libero_object vita_vla_libero_object
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from vitabench.models.checkpoint import shipped_cards
from vitabench.plugins import make_policy


def shifts(data: np.lib.npyio.NpzFile, checkpoint: str) -> dict[str, float]:
    """Domain name -> median feature distance to canonical over median between-scene distance."""
    names = [str(name) for name in data["domain_names"]]
    images, domain, scene, camera = data["images"], data["domain"], data["state_id"], data["camera"]
    policy_name = next(card["policy"] for card in shipped_cards() if card["name"] == checkpoint)
    policy = make_policy(policy_name, checkpoint=checkpoint, device="cpu")
    while not hasattr(policy, "model"):  # the model policy under its wrappers (temporal ensembling)
        policy = policy.inner
    model = policy.model
    cameras, scenes = sorted(set(camera)), sorted(set(scene))[::3][:60]

    def features(d: int) -> torch.Tensor:
        index = {c: [int(np.flatnonzero((domain == d) & (scene == s) & (camera == c))[0]) for s in scenes] for c in cameras}
        with torch.no_grad():
            return model.encode_images({c: torch.from_numpy(images[index[c]]) for c in cameras}).flatten(1).float()

    canonical = features(names.index("canonical"))
    between = torch.cdist(canonical, canonical)[~torch.eye(len(scenes), dtype=torch.bool)].median().item()
    return {name: (features(d) - canonical).norm(dim=1).median().item() / between for d, name in enumerate(names)}


if __name__ == "__main__":
    torch.set_num_threads(1)
    npz = np.load(sys.argv[1])
    for name in sys.argv[2:]:
        print(name, " | ".join(f"{domain} {value:.2f}" for domain, value in shifts(npz, name).items()))
