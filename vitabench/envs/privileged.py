"""Privileged simulator state for experts (e.g. the scripted policy), a pure function of the env.

``privileged_state(env)`` returns nested dicts of float32 arrays, all in the world frame:

- ``objects``: ``{name: [x, y, z, qx, qy, qz, qw]}`` root-body pose of every object and fixture;
- ``bboxes``: ``{name: [xmin, ymin, zmin, xmax, ymax, zmax]}`` axis-aligned box around the
  collision geoms of the object's whole body tree (drawers and doors included);
- ``extents``: ``{name: [hx, hy, hz, cx, cy, cz]}`` half-sizes and centre of the same geoms in the
  object's root-body frame (the object's own dimensions, independent of how it lies);
- ``geom_boxes``: ``{name: [G, 6]}`` the same kind of box around each collision geom of the
  object on its own (finer than ``bboxes``: the walls of an open drawer, a basket's rim);
- ``sites``: ``{name: [x, y, z, qx, qy, qz, qw, sx, sy, sz]}`` pose and half-size of every BDDL
  region site (``basket_1_contain_region``, ``wooden_cabinet_1_top_region``, ...);
- ``joints``: ``{name: qpos}`` positions of the hinge and slide joints of articulated objects
  (drawers, doors, knobs), in model order;
- ``joint_frames``: ``{"object/joint": [qpos, ax, ay, az, x, y, z]}`` each such joint's position,
  world axis and world anchor (``wooden_cabinet_1/top_level``, ``flat_stove_1/button``, ...), and
  the same under the name of a region site that joint moves (``wooden_cabinet_1_top_region``);
- ``joint_geoms``: ``{"object/joint": [G, 6]}`` world boxes of the collision geoms of the body
  that joint moves (a drawer with its handle, a knob);
- ``robot_base``: ``[x, y, z]`` of the robot's base (where the arm reaches from).

Quaternions are ``xyzw``, the project's one convention (:mod:`vitabench.geometry`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vitabench.geometry import matrix_to_quat, quat_wxyz_to_xyzw

_FREE_JOINT = 0
#: Corner signs of a box, for turning a geom's local AABB into its 8 corners.
_CORNER_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)


def _entities(inner: Any) -> dict[str, Any]:
    return {**inner.fixtures_dict, **inner.objects_dict}


def object_poses(libero_env: Any) -> dict[str, np.ndarray]:
    """World pose ``[x, y, z, qx, qy, qz, qw]`` of every object and fixture body of the scene."""
    inner = libero_env.env
    sim = inner.sim
    poses: dict[str, np.ndarray] = {}
    for name, obj in _entities(inner).items():
        body_id = sim.model.body_name2id(obj.root_body)
        poses[name] = np.concatenate([sim.data.body_xpos[body_id], quat_wxyz_to_xyzw(sim.data.body_xquat[body_id])]).astype(np.float32)
    return poses


def _geom_corners(sim: Any) -> tuple[np.ndarray, np.ndarray]:
    """World corners ``[G, 8, 3]`` of every collision geom's box, and each geom's top-level body."""
    model = sim.model._model
    data = sim.data._data
    collides = (model.geom_contype != 0) | (model.geom_conaffinity != 0)
    geoms = np.flatnonzero(collides)
    aabb = model.geom_aabb[geoms]  # [G, 6]: centre, half-size in the geom frame
    local = aabb[:, None, :3] + aabb[:, None, 3:] * _CORNER_SIGNS[None]  # [G, 8, 3]
    rotation = data.geom_xmat[geoms].reshape(-1, 3, 3)
    world = np.einsum("gij,gkj->gki", rotation, local) + data.geom_xpos[geoms][:, None, :]
    return world, model.body_rootid[model.geom_bodyid[geoms]]


def object_geometry(libero_env: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """World AABBs, root-frame extents and per-geom world boxes of every object (see module doc)."""
    inner = libero_env.env
    sim = inner.sim
    corners, roots = _geom_corners(sim)
    bboxes: dict[str, np.ndarray] = {}
    extents: dict[str, np.ndarray] = {}
    geom_boxes: dict[str, np.ndarray] = {}
    for name, obj in _entities(inner).items():
        body_id = sim.model.body_name2id(obj.root_body)
        mine = corners[roots == sim.model._model.body_rootid[body_id]]
        if len(mine) == 0:
            continue
        geom_boxes[name] = np.concatenate([mine.min(1), mine.max(1)], axis=1).astype(np.float32)
        points = mine.reshape(-1, 3)
        bboxes[name] = np.concatenate([points.min(0), points.max(0)]).astype(np.float32)
        rotation = sim.data.body_xmat[body_id].reshape(3, 3)
        # Points of a child body of a fixture belong to the fixture's top-level body; measure them
        # in this root body's frame (for a fixture that is its own top-level body, the same thing).
        local = (points - sim.data.body_xpos[body_id]) @ rotation
        low, high = local.min(0), local.max(0)
        extents[name] = np.concatenate([(high - low) / 2.0, (high + low) / 2.0]).astype(np.float32)
    return bboxes, extents, geom_boxes


def region_sites(libero_env: Any) -> dict[str, np.ndarray]:
    """Pose and half-size of every BDDL region site (see module doc)."""
    inner = libero_env.env
    sim = inner.sim
    sites: dict[str, np.ndarray] = {}
    for name, site in inner.object_sites_dict.items():
        site_id = sim.model.site_name2id(name)
        quat = matrix_to_quat(sim.data.site_xmat[site_id].reshape(3, 3))
        size = np.broadcast_to(np.asarray(site.size if site.size is not None else 0.0, dtype=np.float64), (3,))
        sites[name] = np.concatenate([sim.data.site_xpos[site_id], quat, size]).astype(np.float32)
    return sites


def _object_joints(inner: Any, obj: Any) -> list[int]:
    """Ids of an object's hinge and slide joints (drawers, doors, knobs), in model order."""
    model = inner.sim.model._model
    root = inner.sim.model.body_name2id(obj.root_body)
    ids = []
    for joint_id in range(model.njnt):
        if model.jnt_type[joint_id] != _FREE_JOINT and model.body_rootid[model.jnt_bodyid[joint_id]] == root:
            ids.append(joint_id)
    return ids


def articulation(libero_env: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Joint positions per object, and per joint its world frame and its moving geoms (module doc)."""
    inner = libero_env.env
    sim = inner.sim
    model = sim.model._model
    data = sim.data._data
    corners, _ = _geom_corners(sim)
    collides = np.flatnonzero((model.geom_contype != 0) | (model.geom_conaffinity != 0))
    joints: dict[str, np.ndarray] = {}
    frames: dict[str, np.ndarray] = {}
    moving: dict[str, np.ndarray] = {}
    for name, obj in _entities(inner).items():
        ids = _object_joints(inner, obj)
        if not ids:
            continue
        joints[name] = np.asarray([data.qpos[model.jnt_qposadr[j]] for j in ids], dtype=np.float32)
        for joint_id in ids:
            key = f"{name}/{sim.model.joint_id2name(joint_id).removeprefix(name + '_')}"
            qpos = data.qpos[model.jnt_qposadr[joint_id]]
            frames[key] = np.concatenate([[qpos], data.xaxis[joint_id], data.xanchor[joint_id]]).astype(np.float32)
            body = model.jnt_bodyid[joint_id]
            mine = corners[model.geom_bodyid[collides] == body]
            moving[key] = np.concatenate([mine.min(1), mine.max(1)], axis=1).astype(np.float32)
    for site_name, site in inner.object_sites_dict.items():  # a region inside a drawer: its joint
        for joint in getattr(site, "joints", None) or ():
            owner = site.parent_name
            key = f"{owner}/{joint.removeprefix(owner + '_')}"
            if key in frames:
                frames[site_name], moving[site_name] = frames[key], moving[key]
    return joints, frames, moving


def robot_base(libero_env: Any) -> np.ndarray:
    """World position of the (first) robot's base body."""
    inner = libero_env.env
    sim = inner.sim
    return np.asarray(sim.data.body_xpos[sim.model.body_name2id(inner.robots[0].robot_model.root_body)], dtype=np.float32)


def privileged_state(libero_env: Any) -> dict[str, Any]:
    """Everything an expert may read beyond the policy's cameras and proprioception."""
    bboxes, extents, geom_boxes = object_geometry(libero_env)
    joints, joint_frames, joint_geoms = articulation(libero_env)
    return {
        "objects": object_poses(libero_env),
        "bboxes": bboxes,
        "extents": extents,
        "geom_boxes": geom_boxes,
        "sites": region_sites(libero_env),
        "joints": joints,
        "joint_frames": joint_frames,
        "joint_geoms": joint_geoms,
        "robot_base": robot_base(libero_env),
    }
