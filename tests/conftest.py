"""Shared fixtures, and how the test tree is laid out.

The folders mirror the package (``tests/api`` tests ``vitabench/api``, ``tests/runner`` the
runner, ...); tests of a top-level module (``vitabench/stats.py``, ``geometry.py``,
``plugins.py``, ``policy_wrappers.py``) sit in ``tests/`` itself. Helper modules shared across
folders (``cli_in_process``, ``still_env``, ``report_runs``) live here too: pytest puts
``tests/`` on ``sys.path`` (``pythonpath`` in pyproject.toml), so they import by name and
spawned env workers, which inherit ``sys.path``, import fakes named by entry point
(``still_env:StillEnv``). Fakes of one folder's tests sit beside them (``faults:FaultyEnv``,
``served_policies:EchoPolicy``), importable from that folder, which pytest puts on ``sys.path``
as it imports the test modules there; what a spawned worker or a server process imports stays
light (numpy, vitabench's api), not a test module and everything it imports.

Marker ``sim``: the test builds a simulator (a LIBERO env, directly, in env workers, in Ray
actors or through a ``vitabench`` run in a subprocess; or franky-sim). Marker ``model``: the test
builds, loads, trains or serves a model on transformers (a teacher, a student, PVA's CLIP; in
this process, a server or a CLI process): a process's first one imports transformers' model code
(about 5 CPU-s), each model costs seconds more. The loops while changing code, in two processes:

    pytest -m "not sim" -n 2 --dist loadfile              # under a minute on 2 idle cores
    pytest -m "not sim and not model" -n 2 --dist loadfile  # the fastest
"""

from __future__ import annotations

from typing import Iterator

import pytest


@pytest.fixture(scope="module")
def sim_host() -> Iterator[str]:
    """A franky-sim server (the libfranka-protocol simulator) for one module: its host."""
    from vitabench.robots.franky_sim import FrankySim

    with FrankySim() as host:
        yield host


@pytest.fixture
def still_libero_object() -> str:
    """A suite name registered for this test: libero_object's tasks, init states and step limits
    on ``still_env:StillEnv``, so a real run (workers, records, resume) needs no simulator."""
    from vitabench.plugins import SUITES

    SUITES.register("libero_object_still", "still_env:libero_object_suite")
    return "libero_object_still"
