"""The report engine against the floor of reading its input: every table over 8 runs × 500 episodes
versus parsing the same ``episodes.jsonl`` files with ``json.loads``. (Same-label runs of one suite
become rows told apart by folder name, so the copies make 8 rows.)

Run: ``pytest benchmarks/test_bench_report.py --benchmark-enable -s``. The ratio (median report
build / median bare parse, interleaved rounds in this run) is printed and kept in ``extra_info``;
the target is that building every table costs at most ``TARGET`` times reading the records.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from report_runs import write_run  # noqa: E402
from vitabench.report import build_report  # noqa: E402

TARGET = 15.0
ROUNDS = 5


def bare_parse(run_dirs: list[Path]) -> int:
    count = 0
    for run_dir in run_dirs:
        with open(run_dir / "episodes.jsonl") as handle:
            count += sum(1 for line in handle if json.loads(line))
    return count


def test_report_cost_relative_to_reading_records(benchmark, tmp_path) -> None:
    originals = [
        write_run(tmp_path / suite / "run0", "policy", suite, lambda e: e.index % 3 == 0,
                  tasks=tuple(range(10)), episodes_per_task=50)
        for suite in ("libero_object", "libero_spatial")
    ]
    copies = [shutil.copytree(run, run.parent / f"run{i}") for run in originals for i in range(1, 4)]
    run_dirs = originals + [Path(c) for c in copies]
    parse_times, report_times = [], []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        assert bare_parse(run_dirs) == 4000
        parse_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        report = build_report(run_dirs)
        report_times.append(time.perf_counter() - start)
    assert int(report.overall["episodes"].sum()) == 4000
    ratio = statistics.median(report_times) / statistics.median(parse_times)
    benchmark.extra_info.update({"report_over_parse_ratio": round(ratio, 2), "target": TARGET,
                                 "report_s": round(statistics.median(report_times), 4),
                                 "parse_s": round(statistics.median(parse_times), 4)})
    print(f"\nreport build {statistics.median(report_times):.3f}s, bare parse {statistics.median(parse_times):.3f}s, "
          f"ratio {ratio:.2f} (target <= {TARGET})")
    benchmark.pedantic(build_report, args=(run_dirs,), rounds=1, iterations=1)
    assert ratio <= TARGET
