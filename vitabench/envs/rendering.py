"""Headless rendering setup: MuJoCo's GL backend must be chosen before mujoco is imported."""

from __future__ import annotations

import os

from vitabench.api.errors import VitabenchError

DEFAULT_GL = "egl"


class RenderingError(VitabenchError):
    """Offscreen rendering could not start; the message names MUJOCO_GL."""


def ensure_gl_backend() -> str:
    """Set ``MUJOCO_GL=egl`` (and PyOpenGL's platform to match) when unset; return the backend."""
    backend = os.environ.setdefault("MUJOCO_GL", DEFAULT_GL)
    if backend in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


def rendering_error(exc: BaseException) -> RenderingError:
    """Wrap a renderer failure in a message that names ``MUJOCO_GL`` and how to fix it."""
    backend = os.environ.get("MUJOCO_GL", "<unset>")
    return RenderingError(
        f"offscreen rendering failed with MUJOCO_GL={backend} ({type(exc).__name__}: {exc}); "
        "accepted: MUJOCO_GL=egl (needs libEGL, e.g. Mesa) or MUJOCO_GL=osmesa (needs libOSMesa)"
    )
