"""Hardware EGL rendering on an NVIDIA device (skipped on machines without one).

Each environment worker can render on a GPU with ``MUJOCO_GL=egl`` and
``MUJOCO_EGL_DEVICE_ID=<device index>``. The check runs in a fresh process (the GL backend is
fixed when MuJoCo is first imported): the renderer must be the NVIDIA device, not Mesa's
software llvmpipe, and the profile's frame times are printed for the README.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sim

HAS_NVIDIA_GPU = Path("/dev/nvidia0").exists() and shutil.which("nvidia-smi") is not None

PROFILE = """
import json
from vitabench.api.protocol import load_protocol
from vitabench.doctor import profile_steps
profile = profile_steps(load_protocol("standard"), steps=10, frames=10, rounds=10)
print(json.dumps({"gl": profile.gl, "render_ms": {f"{c} {r}": ms for (c, r), ms in profile.render_ms.items()},
                  "physics_ms": profile.physics_ms, "lines": profile.lines()}))
"""


@pytest.mark.skipif(not HAS_NVIDIA_GPU, reason="no NVIDIA GPU (/dev/nvidia0 and nvidia-smi)")
def test_frames_render_on_the_nvidia_device() -> None:
    env = {**os.environ, "MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl", "MUJOCO_EGL_DEVICE_ID": "0"}
    done = subprocess.run([sys.executable, "-c", PROFILE], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print("\n" + "\n".join(result["lines"]))
    assert "MUJOCO_EGL_DEVICE_ID=0" in result["gl"]
    assert "nvidia" in result["gl"].lower() and "llvmpipe" not in result["gl"].lower(), result["gl"]
    assert all(ms > 0 for ms in result["render_ms"].values())
