"""Images of LIBERO scenes rendered in several visual domains: the data every PVA stage trains on.

The scripted expert drives each episode (so frames look like what a policy sees: the arm
reaching, grasping, carrying); every ``every`` steps the current state is rendered again in each
domain. The same ``state_id`` across domains therefore means the same physical scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vitabench.api.errors import VitabenchError


@dataclass(frozen=True)
class DomainImages:
    """``images[i]`` (uint8 ``[H, W, 3]``) shows scene state ``state_id[i]`` in domain ``domain[i]``."""

    images: np.ndarray
    domain: np.ndarray
    state_id: np.ndarray
    camera: np.ndarray
    domain_names: tuple[str, ...]
    descriptions: tuple[str, ...]
    domain_sets: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise VitabenchError(f"domain images of shape {self.images.shape} ({self.images.dtype}); accepted: uint8 [N, H, W, 3]")
        if not len(self.domain) == len(self.state_id) == len(self.camera) == n:
            raise VitabenchError("domain images: images, domain, state_id and camera must have one entry per image")

    def __len__(self) -> int:
        return len(self.images)

    def index_of(self, name: str) -> int:
        try:
            return self.domain_names.index(name)
        except ValueError:
            raise VitabenchError(f"domain {name!r} is not in this data; it holds: {', '.join(self.domain_names)}") from None

    def select(self, mask: np.ndarray) -> DomainImages:
        return DomainImages(
            self.images[mask], self.domain[mask], self.state_id[mask], self.camera[mask],
            self.domain_names, self.descriptions, self.domain_sets,
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path, images=self.images, domain=self.domain, state_id=self.state_id, camera=self.camera,
            domain_names=np.array(self.domain_names), descriptions=np.array(self.descriptions),
            domain_sets=np.array(self.domain_sets),
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> DomainImages:
        try:
            data = np.load(Path(path), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise VitabenchError(f"domain images {str(path)!r} cannot be read ({exc}); accepted: a file written by vitabench pva render") from None
        return cls(
            data["images"], data["domain"], data["state_id"], data["camera"],
            tuple(str(s) for s in data["domain_names"]), tuple(str(s) for s in data["descriptions"]),
            tuple(str(s) for s in data["domain_sets"]),
        )


def render_domain_images(
    suite: str,
    task_ids: Sequence[int],
    domains: Sequence[str],
    *,
    protocol: str = "distill_64",
    init_states: Sequence[int] = (0, 1, 2, 3),
    steps: int = 120,
    every: int = 15,
    progress: Callable[[str], None] | None = None,
) -> DomainImages:
    """Drive the scripted expert through ``init_states`` of each task; render every ``every`` steps in each domain."""
    import os

    os.environ.setdefault("MUJOCO_GL", "egl")
    from vitabench.api.policy import STATE_KEYS
    from vitabench.api.protocol import load_protocol
    from vitabench.envs.domains import resolve_domain
    from vitabench.envs.libero_env import LiberoEnv
    from vitabench.expert import ScriptedPolicy
    from vitabench.plugins import get_suite

    resolved = [resolve_domain(d) for d in domains]
    if len({d.name for d in resolved}) != len(resolved):
        raise VitabenchError(f"domains {list(domains)} name a domain twice")
    suite_obj, proto = get_suite(suite), load_protocol(protocol)
    images: list[np.ndarray] = []
    labels: list[tuple[int, int, str]] = []
    state = 0
    for task_id in task_ids:
        task = suite_obj.task(task_id)
        env = LiberoEnv(task, proto, cameras=proto.cameras, privileged=True, state_keys=STATE_KEYS, max_steps=steps)
        expert = ScriptedPolicy()
        try:
            for init_state in init_states:
                env.set_domain(None)
                obs, _ = env.reset(seed=proto.seed, options={"init_state": int(init_state)})
                expert.reset(task)
                for step in range(steps):
                    if step % every == 0:
                        for index, domain in enumerate(resolved):
                            env.set_domain(domain)
                            for camera, image in env.render_observation()["images"].items():
                                images.append(image)
                                labels.append((index, state, camera))
                        env.set_domain(None)
                        state += 1
                    obs, _, terminated, _, _ = env.step(expert.act([obs])[0, 0])
                    if terminated:
                        break
                if progress is not None:
                    progress(f"task {task_id} init state {init_state}: {state} scene states, {len(images)} images")
        finally:
            env.close()
    return DomainImages(
        images=np.stack(images),
        domain=np.array([l[0] for l in labels], dtype=np.int64),
        state_id=np.array([l[1] for l in labels], dtype=np.int64),
        camera=np.array([l[2] for l in labels]),
        domain_names=tuple(d.name for d in resolved),
        descriptions=tuple(d.description for d in resolved),
        domain_sets=tuple(d.set for d in resolved),
    )
