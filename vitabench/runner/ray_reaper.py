"""Ray's processes die with the driver that started them, within a second.

``ray.init()`` starts Ray's daemons (GCS server, raylet, ...) as children of the driver, and the
raylet starts the actor workers. When the driver is killed with SIGKILL they notice only when
heartbeats time out, 30-90 s later. :meth:`Reaper.start` runs this file as a small process that
holds the read end of a pipe only the driver writes to: the driver's death closes the pipe, and
the reaper then SIGKILLs every process of that Ray instance (the roots, the driver's children
``ray.init`` started, and all their descendants, tracked every :data:`POLL_S` seconds so that a
worker whose raylet died first is still known). :meth:`Reaper.stop` (a clean shutdown) writes a
byte first, and the reaper exits without killing anything. Linux only (``/proc``).

Standard library only: the reaper runs this file as a script and imports nothing of vitabench.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: Seconds between two looks at the process table.
POLL_S = 0.5


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every live process (zombies left out)."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


def children(pid: int) -> set[int]:
    """The live child processes of ``pid``."""
    return {child for child, (parent, _) in process_table().items() if parent == pid}


def descendants(roots: set[int], table: dict[int, tuple[int, str]]) -> dict[int, str]:
    """``roots`` and all their descendants that are alive in ``table``: pid -> start time."""
    found = {pid for pid in roots if pid in table}
    grew = True
    while grew:
        new = {pid for pid, (parent, _) in table.items() if parent in found} - found
        found |= new
        grew = bool(new)
    return {pid: table[pid][1] for pid in found}


@dataclass
class Reaper:
    """The driver's handle on a running reaper: its process and the pipe's write end."""

    process: subprocess.Popen
    alarm: int

    @classmethod
    def start(cls, roots: set[int]) -> Reaper | None:
        """Watch ``roots`` (pids) for this process; ``None`` when there is nothing to watch or no ``/proc``."""
        if not roots or not Path("/proc").is_dir():
            return None
        read_end, write_end = os.pipe()  # not inherited by processes started later (close-on-exec)
        try:
            process = subprocess.Popen(
                [sys.executable, __file__, *map(str, sorted(roots))],
                stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )
        except OSError:
            os.close(write_end)
            return None
        finally:
            os.close(read_end)
        return cls(process, write_end)

    def stop(self) -> None:
        """End the reaper without killing: Ray was shut down cleanly."""
        try:
            os.write(self.alarm, b"x")
        finally:
            os.close(self.alarm)
        self.process.wait(timeout=10)


def watch(roots: set[int], alarm: int) -> None:
    """Track ``roots`` and their descendants until ``alarm`` says something; on EOF (the driver
    died) SIGKILL every tracked process that is still the one tracked (same start time)."""
    tracked = descendants(roots, process_table())
    while True:
        ready, _, _ = select.select([alarm], [], [], POLL_S)
        if ready:
            if os.read(alarm, 1):
                return
            break
        table = process_table()
        same = {pid for pid, started in tracked.items() if pid in table and table[pid][1] == started}
        tracked.update(descendants(same, table))
    table = process_table()
    for pid, started in tracked.items():
        if pid in table and table[pid][1] == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    watch({int(pid) for pid in sys.argv[1:]}, sys.stdin.fileno())
