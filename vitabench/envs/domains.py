"""Visual domains: named, versioned, deterministic changes to how a LIBERO scene looks.

A :class:`Domain` changes lighting (intensity, colour, direction), surface colours (table,
floor, walls; optionally dropping their textures), object colours (a fixed jitter derived from
the domain), camera poses and sensor noise (blur, Gaussian noise drawn from the episode seed,
init state and step). It never touches physics: object poses are the same in every domain.

Domains live in ``suites/domains/*.toml`` (``vitabench list domains``) and are split into the
sets ``canonical``, ``seen`` (usable for training and tuning) and ``unseen`` (evaluation only).
A run under a domain uses :meth:`Protocol.with_domain`, so the domain's full parameters enter
the protocol hash. Only numpy and the standard library are imported at module level.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np

from vitabench.api.config import read_toml
from vitabench.api.errors import VitabenchError

DomainSet = Literal["canonical", "seen", "unseen"]
DOMAIN_SETS: tuple[str, ...] = ("canonical", "seen", "unseen")

#: Surface group -> the scene materials it recolours (materials absent from a scene are skipped).
SURFACE_MATERIALS: dict[str, tuple[str, ...]] = {
    "table": ("table_texture", "table_mat", "table_legs"),
    "floor": ("floorplane", "living_room"),
    "walls": ("walls_mat",),
}
#: Material name prefixes that belong to the robot, never to a manipulated object.
_ROBOT_PREFIXES = ("robot", "gripper", "mount")
_SCENE_MATERIALS = frozenset(m for names in SURFACE_MATERIALS.values() for m in names)
_MODEL_FIELDS = ("light_diffuse", "light_specular", "light_dir", "mat_rgba", "mat_texid", "cam_pos", "cam_quat")

Vec3 = tuple[float, float, float]


class DomainError(VitabenchError):
    """An unknown domain or set, or a domain file that cannot be used."""


@dataclass(frozen=True)
class Domain:
    """One visual domain; ``ref`` (``set/name@version``) names it on records."""

    name: str
    set: DomainSet
    version: str
    description: str
    light_scale: float = 1.0
    light_color: Vec3 = (1.0, 1.0, 1.0)
    light_direction: Vec3 | None = None
    headlight_scale: float = 1.0
    surfaces: Mapping[str, tuple[float, float, float, float]] = field(default_factory=dict)
    flat_surfaces: bool = False
    object_color_jitter: float = 0.0
    camera_names: tuple[str, ...] = ("agentview",)
    camera_offset: Vec3 = (0.0, 0.0, 0.0)
    camera_rotation_deg: Vec3 = (0.0, 0.0, 0.0)
    blur_sigma: float = 0.0
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if self.set not in DOMAIN_SETS:
            problems.append(f"set={self.set!r}, accepted: {', '.join(DOMAIN_SETS)}")
        unknown = sorted(set(self.surfaces) - set(SURFACE_MATERIALS))
        if unknown:
            problems.append(f"surfaces {', '.join(unknown)}, accepted: {', '.join(SURFACE_MATERIALS)}")
        if min(self.light_scale, self.headlight_scale, self.blur_sigma, self.noise_std, self.object_color_jitter) < 0:
            problems.append("light_scale, headlight_scale, blur_sigma, noise_std, object_color_jitter must be >= 0")
        if problems:
            raise DomainError(f"domain {self.name!r}: " + "; ".join(problems))

    @property
    def ref(self) -> str:
        return f"{self.set}/{self.name}@{self.version}"

    @property
    def has_sensor_noise(self) -> bool:
        return self.blur_sigma > 0 or self.noise_std > 0

    def to_dict(self) -> dict[str, Any]:
        """Every parameter, JSON-able; the inverse of :meth:`from_dict`."""
        data = dataclasses.asdict(self)
        data["surfaces"] = {k: list(v) for k, v in sorted(self.surfaces.items())}
        for key in ("light_color", "light_direction", "camera_names", "camera_offset", "camera_rotation_deg"):
            data[key] = None if data[key] is None else list(data[key])
        return data

    @property
    def seed(self) -> int:
        """A seed derived from every parameter (object jitter and sensor noise draw from it)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:4], "little")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Domain:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise DomainError(f"{source}: unknown domain field(s) {', '.join(unknown)}; accepted: {', '.join(sorted(names))}")
        values = dict(data)
        values["version"] = str(values.get("version", ""))
        for key in ("light_color", "light_direction", "camera_offset", "camera_rotation_deg"):
            if values.get(key) is not None:
                values[key] = tuple(float(v) for v in values[key])
        if "camera_names" in values:
            values["camera_names"] = tuple(values["camera_names"])
        values["surfaces"] = {k: tuple(float(c) for c in v) for k, v in dict(values.get("surfaces", {})).items()}
        try:
            return cls(**values)
        except TypeError as exc:
            raise DomainError(f"{source}: {exc}") from None


def domains_dir() -> Path:
    return Path(str(resources.files("vitabench.suites") / "domains"))


def all_domains() -> dict[str, Domain]:
    """Every shipped domain by name, in file order."""
    domains: dict[str, Domain] = {}
    for path in sorted(domains_dir().glob("*.toml")):
        for entry in read_toml(path, "domain file", DomainError).get("domain", []):
            domain = Domain.from_dict(entry, source=str(path))
            if domain.name in domains:
                raise DomainError(f"{path}: domain {domain.name!r} is defined twice")
            domains[domain.name] = domain
    return domains


def canonical_domain() -> Domain:
    return next(d for d in all_domains().values() if d.set == "canonical")


def resolve_domains(spec: str) -> list[Domain]:
    """``NAME``, ``SET/NAME`` or a whole ``SET`` (``seen``, ``unseen``, ``canonical``) -> domains."""
    domains = all_domains()
    if spec in DOMAIN_SETS:
        return [d for d in domains.values() if d.set == spec]
    set_name, _, name = spec.rpartition("/")
    domain = domains.get(name)
    if domain is None or (set_name and set_name != domain.set):
        accepted = ", ".join([*DOMAIN_SETS, *(f"{d.set}/{d.name}" for d in domains.values())])
        raise DomainError(f"unknown domain {spec!r}; accepted: {accepted}")
    return [domain]


def resolve_domain(spec: str) -> Domain:
    """Exactly one domain (a set name is refused)."""
    found = resolve_domains(spec)
    if len(found) != 1:
        raise DomainError(f"domain {spec!r} names a set of {len(found)} domains; give one as SET/NAME")
    return found[0]


# -- application to a MuJoCo model ---------------------------------------------------------------
class SceneDomain:
    """Applies domains to one MuJoCo model, always starting from the model as it was built."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self._baseline = {name: np.array(getattr(model, name), copy=True) for name in _MODEL_FIELDS}
        self._headlight = (np.array(model.vis.headlight.diffuse), np.array(model.vis.headlight.ambient))
        self.domain: Domain | None = None

    def restore(self) -> None:
        for name, value in self._baseline.items():
            getattr(self.model, name)[...] = value
        self.model.vis.headlight.diffuse[...] = self._headlight[0]
        self.model.vis.headlight.ambient[...] = self._headlight[1]
        self.domain = None

    def apply(self, domain: Domain | None) -> None:
        """Set the model's appearance to ``domain`` (``None``: as built)."""
        self.restore()
        if domain is None:
            return
        model = self.model
        tint = np.asarray(domain.light_color) * domain.light_scale
        model.light_diffuse[...] = self._baseline["light_diffuse"] * tint
        model.light_specular[...] = self._baseline["light_specular"] * tint
        if domain.light_direction is not None:
            direction = np.asarray(domain.light_direction, dtype=np.float64)
            model.light_dir[...] = direction / np.linalg.norm(direction)
        model.vis.headlight.diffuse[...] = self._headlight[0] * domain.headlight_scale
        model.vis.headlight.ambient[...] = self._headlight[1] * domain.headlight_scale
        materials = _names(model, "material", model.nmat)
        for group, rgba in domain.surfaces.items():
            for index, name in enumerate(materials):
                if name in SURFACE_MATERIALS[group]:
                    model.mat_rgba[index] = rgba
                    if domain.flat_surfaces:
                        model.mat_texid[index] = -1
        if domain.object_color_jitter > 0:
            for index, name in enumerate(materials):
                if name in _SCENE_MATERIALS or name.startswith(_ROBOT_PREFIXES):
                    continue
                rng = np.random.default_rng([domain.seed, _stable_int(name)])
                scale = 1.0 + domain.object_color_jitter * rng.uniform(-1.0, 1.0, 3)
                model.mat_rgba[index, :3] = np.clip(self._baseline["mat_rgba"][index, :3] * scale, 0.0, 1.0)
        cameras = _names(model, "camera", model.ncam)
        for camera in domain.camera_names:
            if camera not in cameras:
                continue
            index = cameras.index(camera)
            model.cam_pos[index] = self._baseline["cam_pos"][index] + np.asarray(domain.camera_offset)
            model.cam_quat[index] = _rotate_wxyz(self._baseline["cam_quat"][index], domain.camera_rotation_deg)
        self.domain = domain


def corrupt_image(image: np.ndarray, domain: Domain, key: tuple[int, ...]) -> np.ndarray:
    """Sensor noise of ``domain`` on a uint8 image; ``key`` (seed, init state, step, camera) fixes the draw."""
    if not domain.has_sensor_noise:
        return image
    out = image.astype(np.float32)
    if domain.blur_sigma > 0:
        from scipy.ndimage import gaussian_filter

        out = gaussian_filter(out, sigma=(domain.blur_sigma, domain.blur_sigma, 0.0), mode="nearest")
    if domain.noise_std > 0:
        rng = np.random.default_rng([domain.seed, *(int(k) & 0xFFFFFFFF for k in key)])
        out = out + rng.normal(0.0, domain.noise_std, out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _names(model: Any, kind: str, count: int) -> list[str]:
    import mujoco

    obj = {"material": mujoco.mjtObj.mjOBJ_MATERIAL, "camera": mujoco.mjtObj.mjOBJ_CAMERA}[kind]
    raw = getattr(model, "_model", model)
    return [mujoco.mj_id2name(raw, obj, i) or "" for i in range(count)]


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def _rotate_wxyz(quat: np.ndarray, degrees: Vec3) -> np.ndarray:
    """``quat`` (MuJoCo ``wxyz``) rotated by intrinsic x, y, z angles in the camera's own frame."""
    from scipy.spatial.transform import Rotation

    if not any(degrees):
        return np.asarray(quat)
    base = Rotation.from_quat([quat[1], quat[2], quat[3], quat[0]])
    x, y, z, w = (base * Rotation.from_euler("xyz", degrees, degrees=True)).as_quat()
    return np.array([w, x, y, z])
