"""Success of the ``scripted`` expert per task over many init states, straight over ``LiberoEnv``.

    python benchmarks/scripted_sweep.py libero_object --out /tmp/scripted-object.jsonl
    python benchmarks/scripted_sweep.py libero_spatial --tasks 0,4 --init-states 0-9
    python benchmarks/scripted_sweep.py --table runs/scripted-object/episodes.jsonl

One JSON line per episode is appended to ``--out`` as soon as it ends (a rerun skips the episodes
already there), and a markdown table of per-task success is printed (and written next to it).
``--table`` only prints that table for existing records (this script's or ``vitabench run``'s).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _parse_range(text: str) -> list[int]:
    values: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        values.extend(range(int(low), int(high or low) + 1))
    return values


def run_sweep(suite_name: str, tasks: list[int], init_states: list[int], protocol_name: str, out: Path) -> list[dict]:
    """Run every (task, init state) not yet in ``out``; return all records of ``out``."""
    import numpy as np
    import torch

    from vitabench.api.protocol import load_protocol
    from vitabench.envs.libero_env import LiberoEnv
    from vitabench.expert import ScriptedPolicy
    from vitabench.plugins import get_suite

    torch.set_num_threads(1)
    suite = get_suite(suite_name)
    protocol = load_protocol(protocol_name)
    records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []
    done = {(r["task_id"], r["init_state"]) for r in records}
    policy = ScriptedPolicy()
    for task_id in tasks:
        todo = [i for i in init_states if (task_id, i) not in done]
        if not todo:
            continue
        task = suite.task(task_id)
        env = LiberoEnv(task, protocol, privileged=True)
        for index in todo:
            start = time.time()
            observation, info = env.reset(options={"init_state": index})
            error = None
            try:
                policy.reset(task, 0)
                terminated = truncated = False
                while not (terminated or truncated):
                    action = policy.act([observation])[0, 0]
                    assert np.all(np.abs(action) <= 1.0)
                    observation, _, terminated, truncated, info = env.step(action)
            except Exception as exc:  # e.g. an unsupported goal: recorded, not fatal to the sweep
                error = f"{type(exc).__name__}: {exc}"
            record = {
                "suite": suite_name,
                "task_id": task_id,
                "init_state": index,
                "success": bool(info["success"]) and error is None,
                "steps": int(info["steps"]),
                "phase": policy.phase(0) if error is None else "error",
                "error": error,
                "seconds": round(time.time() - start, 2),
            }
            records.append(record)
            with out.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
        env.close()
    return records


def success_table(records: list[dict]) -> str:
    """Markdown table: per task successes / episodes and rate, and the suite total."""
    by_task: dict[tuple[str, int], list[bool]] = {}
    for record in records:
        by_task.setdefault((record["suite"], record["task_id"]), []).append(record["success"])
    lines = ["| suite | task | success | episodes | rate |", "|---|---|---|---|---|"]
    for (suite, task_id), outcomes in sorted(by_task.items()):
        lines.append(f"| {suite} | {task_id} | {sum(outcomes)} | {len(outcomes)} | {sum(outcomes) / len(outcomes):.0%} |")
    total = [r["success"] for r in records]
    if total:
        lines.append(f"| all | - | {sum(total)} | {len(total)} | {sum(total) / len(total):.1%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", nargs="?")
    parser.add_argument("--table", type=Path, help="only print the table of these JSONL records")
    parser.add_argument("--tasks", default="0-9", help="task ids, e.g. 0-9 or 0,3,5")
    parser.add_argument("--init-states", default="0-49", help="init states, e.g. 0-49")
    parser.add_argument("--protocol", default="standard")
    parser.add_argument("--out", type=Path, help="JSONL file, appended to")
    args = parser.parse_args()
    if args.table:
        print(success_table([json.loads(line) for line in args.table.read_text().splitlines() if line.strip()]))
        return
    if not args.suite or not args.out:
        parser.error("a suite and --out are needed to run a sweep")
    records = run_sweep(args.suite, _parse_range(args.tasks), _parse_range(args.init_states), args.protocol, args.out)
    table = success_table(records)
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
