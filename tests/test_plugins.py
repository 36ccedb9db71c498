"""A third-party policy package, built here, pip-installed into a fresh virtualenv, used by name."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from vitabench.api.errors import VitabenchError
from vitabench.plugins import POLICIES, make_policy

PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "myplug"
version = "0.0.1"

[project.entry-points."vitabench.policies"]
myplug = "myplug:MyPolicy"
"""

PLUGIN_MODULE = '''
"""A policy from outside vitabench: constant actions scaled by ``gain``, counted per slot."""
import numpy as np
from vitabench.api.policy import BasePolicy, PolicySpec


class MyPolicy(BasePolicy):
    def __init__(self, gain=1.0):
        self.spec = PolicySpec(state_keys=("ee_pos",), chunk=2)
        self.gain = float(gain)
        self.steps = {}

    def reset(self, task, slot=0, seed=None):
        self.steps[slot] = 0

    def act(self, observations, slots=None):
        slots = range(len(observations)) if slots is None else slots
        out = np.zeros((len(observations), 2, 7), np.float32)
        for row, slot in enumerate(slots):
            out[row, :, 0] = self.gain * 0.1
            out[row, :, 1] = self.steps.get(slot, -1)
            self.steps[slot] = self.steps.get(slot, 0) + 1
        return out
'''

USE_BY_NAME = """
import json
from vitabench.api.suite import Task
from vitabench.plugins import POLICIES, make_policy
policy = make_policy("myplug", gain=3)
policy.reset(Task(suite="s", task_id=0, name="t", instruction="i", n_init_states=1), slot=4)
actions = policy.act([{"state": {}}, {"state": {}}], [4, 4])
entry = {e.name: e for e in POLICIES.entries()}["myplug"]
print(json.dumps({"actions": actions[:, 0, :2].tolist(), "chunk": policy.spec.chunk, "source": entry.source}))
"""

CLI = "from vitabench.cli import main; main()"


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    """A new virtualenv that sees vitabench's environment (through a .pth) and has myplug installed
    into its own site-packages by pip, from a package written here."""
    root = tmp_path_factory.mktemp("plugin")
    package = root / "myplug_src"
    package.mkdir()
    (package / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    (package / "myplug.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True).strip())
    host_site = sysconfig.get_path("purelib")
    (site / "vitabench_host.pth").write_text(f"import site; site.addsitedir({host_site!r})\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(package)],
        check=True,
        timeout=300,
    )
    assert (site / "myplug.py").exists()
    return python


def run(python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), *args], capture_output=True, text=True, timeout=120)


def test_plugin_is_listed_in_the_fresh_venv_only(fresh_venv):
    listed = run(fresh_venv, "-c", CLI, "list", "policies", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = {e["name"]: e for e in json.loads(listed.stdout)}
    assert entries["myplug"] == {"name": "myplug", "target": "myplug:MyPolicy", "source": "myplug"}
    assert {"zero", "random", "remote", "replay"} <= set(entries)
    table = run(fresh_venv, "-c", CLI, "list", "policies")
    assert "myplug:MyPolicy" in table.stdout
    # the host environment, where myplug is not installed, does not see it
    assert "myplug" not in POLICIES.names()


def test_plugin_policy_is_usable_by_name(fresh_venv):
    used = run(fresh_venv, "-c", USE_BY_NAME)
    assert used.returncode == 0, used.stderr
    result = json.loads(used.stdout.strip().splitlines()[-1])
    assert result["chunk"] == 2 and result["source"] == "myplug"
    assert result["actions"] == [[pytest.approx(0.3), 0.0], [pytest.approx(0.3), 1.0]]


def test_unknown_policy_names_the_known_ones(fresh_venv):
    served = run(fresh_venv, "-c", CLI, "serve", "--policy", "no_such_policy", "--port", "0")
    assert served.returncode == 2
    line = served.stderr.strip()
    assert line.startswith("error: unknown policy 'no_such_policy'; known: ")
    assert "myplug" in line and "random" in line and len(line.splitlines()) == 1
    with pytest.raises(VitabenchError, match="unknown policy 'myplug'; known: .*random"):
        make_policy("myplug")
