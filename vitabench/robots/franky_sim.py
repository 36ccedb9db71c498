"""Start and stop franky-sim, the MuJoCo simulator that serves the libfranka protocol.

franky-sim pins a newer MuJoCo than LIBERO's, so it lives in its own virtualenv
(``.venv-franky-sim/``, made by ``.ci/setup-franky-sim.sh``) and runs as a separate process on a
free loopback address (``127.0.0.N``); SIGTERM stops it. ``VITABENCH_FRANKY_SIM`` may name the
``franky-sim`` executable instead.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from vitabench.api.errors import VitabenchError

SETUP_SCRIPT = ".ci/setup-franky-sim.sh"
FCI_PORT = 1337  # libfranka's command port
READY_LINE = "Connect to the server using"


def franky_sim_executable() -> Path:
    """The franky-sim executable; a clear error naming the setup script when it is missing."""
    configured = os.environ.get("VITABENCH_FRANKY_SIM")
    path = Path(configured) if configured else Path(__file__).resolve().parents[2] / ".venv-franky-sim" / "bin" / "franky-sim"
    if not path.is_file():
        raise VitabenchError(f"franky-sim not found at {path}; run `bash {SETUP_SCRIPT}` (or set VITABENCH_FRANKY_SIM)")
    return path


def free_loopback_host(first: int = 2) -> str:
    """A ``127.0.0.N`` whose libfranka port is free (tried from a pid-dependent start)."""
    for offset in range(250):
        host = f"127.0.0.{(first + os.getpid() + offset) % 250 + 2}"
        with socket.socket() as probe:
            try:
                probe.bind((host, FCI_PORT))
            except OSError:
                continue
            return host
    raise VitabenchError(f"no free loopback address 127.0.0.2-251 with port {FCI_PORT} free")


class FrankySim:
    """``with FrankySim() as host:`` a running franky-sim (MuJoCo backend) serving at ``host``."""

    def __init__(self, host: str | None = None, startup_timeout: float = 60.0) -> None:
        self.executable = franky_sim_executable()
        self.host = host or free_loopback_host()
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self.log: list[str] = []

    def __enter__(self) -> str:
        self.process = subprocess.Popen(
            [str(self.executable), "-s", "mujoco", "--hostname", self.host],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + self.startup_timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.log.append(line.rstrip())
            if READY_LINE in line:
                threading.Thread(target=self._drain, daemon=True).start()  # a full pipe would block the simulator
                return self.host
        self.__exit__()
        raise VitabenchError(f"franky-sim did not start on {self.host}: " + " | ".join(self.log[-5:]))

    def _drain(self) -> None:
        process = self.process
        if process is not None and process.stdout is not None:
            for line in process.stdout:
                self.log.append(line.rstrip())

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
