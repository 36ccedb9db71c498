"""How fast one camera-free LIBERO episode runs on different env instances of the same task.

Each instance is a fresh ``ControlEnv`` (the raw loop of ``same_instance.plain_loop``: same
task, init states and seeded actions), built in its own spawned process and then a second time
in that process; every instance runs 3 episodes. The spread between instances, set against the
spread within one, is why ``test_bench_runner.py`` runs its raw loop and the harness on the same
instance (``same_instance.py``) instead of on instances of their own.

Run: ``python benchmarks/env_instance_speed.py [PROCESSES]`` (default 2; about 1 min each).
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
from pathlib import Path

STEPS = 200


def instances(process: int, queue: multiprocessing.Queue) -> None:
    """Two env instances, one after the other, in this process: each one's episode wall times."""
    sys.path.insert(0, str(Path(__file__).parent))
    from same_instance import plain_loop

    for built in (1, 2):
        queue.put((process, built, plain_loop(STEPS, ()).wall_s))


def main(processes: int) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue = context.Queue()
    rows = []
    for process in range(processes):
        worker = context.Process(target=instances, args=(process, queue))
        worker.start()
        rows += [queue.get() for _ in range(2)]
        worker.join()
    print(f"{'process':>7} {'instance':>8}  s per episode ({STEPS} camera-free steps + settle)")
    for process, built, walls in rows:
        print(f"{process:>7} {built:>8}  {', '.join(f'{w:.2f}' for w in walls)}  (median {statistics.median(walls):.2f})")
    medians = [statistics.median(walls) for _, _, walls in rows]
    within = max(max(walls) - min(walls) for _, _, walls in rows)
    print(f"slowest / fastest instance median: {max(medians) / min(medians):.2f}x; largest spread within one instance: {within:.2f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
