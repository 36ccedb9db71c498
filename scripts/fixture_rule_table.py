"""The fixture-rule table: for each suite of a sweep (``scripts/fixture_rule_sweep.sh``), the
scripted expert's success per task and per suite under standard@1 (first draw) and standard@2
(openpi's draws), paired by episode id, with the exact two-sided McNemar test.

    python scripts/fixture_rule_table.py runs/fixture_rule > reports/fixture_rule/results.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from vitabench.stats import mcnemar_exact, paired_counts, wilson_interval
from vitabench.runner.store import RunStore

RULES = (("standard-v1", "first draw (standard@1)"), ("standard-v2", "openpi's draws (standard@2)"))


def outcomes(run_dir: Path) -> tuple[dict[str, bool], dict[str, int], int, str]:
    """Success per ok episode id, task id per episode id, errored episodes, protocol ref."""
    store = RunStore(run_dir)
    records = store.records()
    ok = {r.episode_id: bool(r.success) for r in records if r.status == "ok"}
    tasks = {r.episode_id: r.task_id for r in records}
    return ok, tasks, sum(r.status == "error" for r in records), store.config()["protocol_ref"]


def rate(successes: int, n: int) -> str:
    low, high = wilson_interval(successes, n)
    return f"{100 * successes / n:.1f}% [{100 * low:.1f}, {100 * high:.1f}]" if n else "-"


def row(name: str, first: dict[str, bool], second: dict[str, bool]) -> str:
    counts = paired_counts(first, second)
    n = counts.n
    one, two = counts.both + counts.only_first, counts.both + counts.only_second
    p = mcnemar_exact(counts.only_first, counts.only_second)
    return f"| {name} | {n} | {rate(one, n)} | {rate(two, n)} | {100 * (two - one) / max(n, 1):+.1f} | {counts.only_first} | {counts.only_second} | {p:.3g} |"


def main(sweep: Path) -> None:
    print("# How much the fixture rule moves a success rate\n")
    print(
        "The scripted expert (privileged state, no camera), 50 episodes per task, init states 0-49, seed 7.\n"
        "The two runs differ only in the fixture rule, so episodes pair by id (episode 0 gets the first draw\n"
        "under both). b: successes under the first draw only; c: under openpi's draws only; p: exact two-sided\n"
        "McNemar. Errored episodes (goals the expert refuses) are left out of the pairs.\n"
    )
    for suite in sorted({p.name.rsplit("-standard", 1)[0] for p in sweep.iterdir() if p.is_dir()}):
        runs = [sweep / f"{suite}-{tag}" for tag, _ in RULES]
        (first, tasks, errors_first, ref_first), (second, _, errors_second, ref_second) = (outcomes(r) for r in runs)
        print(f"## {suite}\n\n{ref_first} vs {ref_second}; errored episodes: {errors_first} / {errors_second}\n")
        print(f"| task | pairs | {RULES[0][1]} | {RULES[1][1]} | change (points) | b | c | p |")
        print("|---|---|---|---|---|---|---|---|")
        for task in sorted(set(tasks.values())):
            ids = {e for e, t in tasks.items() if t == task}
            print(row(str(task), {e: s for e, s in first.items() if e in ids}, {e: s for e, s in second.items() if e in ids}))
        print(row("**all**", first, second) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit(f"usage: python {sys.argv[0]} SWEEP_DIR (the --out of scripts/fixture_rule_sweep.sh); got {sys.argv[1:]}")
    main(Path(sys.argv[1]))
