"""The reaper of a private Ray instance, on plain processes: a driver's process tree dies within
seconds of the driver's SIGKILL, and survives a clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from vitabench.runner.ray_reaper import process_table

#: A "driver": starts a child that starts a grandchild (as ray.init starts the raylet and the
#: raylet the workers), watches the child with a reaper, prints the pids, then, told to, stops
#: the reaper cleanly.
DRIVER = """
import subprocess, sys
from vitabench.runner.ray_reaper import Reaper
tree = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
    "g = subprocess.Popen(['sleep', '600']); print(g.pid, flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
grandchild = int(tree.stdout.readline())
reaper = Reaper.start({tree.pid})
print(tree.pid, grandchild, flush=True)
if sys.stdin.readline().strip() == "stop":
    reaper.stop()
    print("stopped", flush=True)
    sys.stdin.readline()
"""


def alive(pid: int) -> bool:
    return pid in process_table()


def start_driver() -> tuple[subprocess.Popen, list[int]]:
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in driver.stdout.readline().split()]
    assert len(pids) == 2 and all(alive(p) for p in pids)
    return driver, pids


def wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="the reaper reads /proc (Linux)")
def test_a_sigkilled_drivers_tree_dies_within_seconds() -> None:
    driver, pids = start_driver()
    try:
        time.sleep(1.0)  # the reaper has looked at the tree at least once
        driver.kill()
        driver.wait()
        assert wait_gone(pids, 5.0) == []
    finally:
        kill(pids)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="the reaper reads /proc (Linux)")
def test_a_clean_stop_kills_nothing() -> None:
    driver, pids = start_driver()
    try:
        driver.stdin.write("stop\n")
        driver.stdin.flush()
        assert driver.stdout.readline().strip() == "stopped"
        driver.kill()
        driver.wait()
        time.sleep(1.0)
        assert all(alive(p) for p in pids)
    finally:
        kill(pids)
