"""Privileged simulator state for experts (e.g. the scripted policy): object poses from the sim."""

from __future__ import annotations

from typing import Any

import numpy as np


def object_poses(libero_env: Any) -> dict[str, np.ndarray]:
    """World pose ``[x, y, z, qw, qx, qy, qz]`` of every object and fixture body of the scene."""
    inner = libero_env.env
    sim = inner.sim
    poses: dict[str, np.ndarray] = {}
    for name, obj in {**inner.fixtures_dict, **inner.objects_dict}.items():
        body_id = sim.model.body_name2id(obj.root_body)
        poses[name] = np.concatenate([sim.data.body_xpos[body_id], sim.data.body_xquat[body_id]]).astype(np.float32)
    return poses


def privileged_state(libero_env: Any) -> dict[str, Any]:
    """Everything an expert may read beyond the policy's cameras and proprioception."""
    return {"objects": object_poses(libero_env)}
