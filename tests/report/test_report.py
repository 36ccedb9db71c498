"""Report tables, formats, published numbers and the compare gate over run directories on disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cli_in_process import vitabench_in_process
from report_runs import first_k, write_run
from vitabench.api.protocol import load_protocol
from vitabench.report import build_report, check_published, compare_runs, success_table
from vitabench.report.compare import CompareRefused
from vitabench.report.published import published_tables
from vitabench.report.runs import ReportError, protocols_frame
from vitabench.stats import wilson_interval


def cli_subprocess(*args: str) -> subprocess.CompletedProcess:
    """``vitabench ARGS`` in a fresh interpreter: the exit code and stderr exactly as a shell sees them."""
    code = "import sys; from vitabench.cli import main; sys.argv = ['vitabench', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    """Two policies on two suites under `standard`, one under `vita_vla_paper`; some errors."""

    def good_with_errors(episode):
        if episode.task_id == 0 and episode.index < 2:
            return None  # errored
        return episode.index < 8

    return {
        "good_object": write_run(tmp_path / "good_object", "good", "libero_object", good_with_errors),
        "good_spatial": write_run(tmp_path / "good_spatial", "good", "libero_spatial", first_k(6)),
        "bad_object": write_run(tmp_path / "bad_object", "bad", "libero_object", first_k(0)),
        "paper_object": write_run(
            tmp_path / "paper_object", "paper", "libero_object", first_k(5), protocol="vita_vla_paper"
        ),
    }


def test_counts_rates_and_intervals_per_task_suite_overall(runs) -> None:
    report = build_report([runs["good_object"], runs["good_spatial"], runs["bad_object"]])
    task = report.tasks.set_index(["label", "suite", "task_id"]).loc[("good", "libero_object", 0)]
    # Two errored episodes: out of the denominator, counted beside it, never failures.
    assert (task["episodes"], task["ok"], task["errors"], task["successes"]) == (10, 8, 2, 6)
    assert task["rate"] == pytest.approx(6 / 8)
    assert (task["ci_low"], task["ci_high"]) == pytest.approx(wilson_interval(6, 8))
    suite = report.suites.set_index(["label", "suite"]).loc[("good", "libero_object")]
    assert (suite["ok"], suite["errors"], suite["successes"]) == (18, 2, 14)
    overall = report.overall.set_index("label").loc["good"]
    assert (overall["ok"], overall["successes"]) == (38, 26)
    assert overall["average"] == pytest.approx((14 / 18 + 12 / 20) / 2)  # paper-style mean of suites
    assert any("excluded from the denominator" in n for n in report.notes)
    assert any("2 episode(s) errored" in n for n in report.notes)


def test_matrix_policies_as_rows_suites_as_columns(runs) -> None:
    matrix = success_table([runs["good_object"], runs["good_spatial"], runs["bad_object"]])
    assert list(matrix["label"]) == ["good", "bad"]
    assert [c for c in matrix.columns if ":" not in c][3:5] == ["libero_spatial", "libero_object"]
    good = matrix.set_index("label").loc["good"]
    assert good["libero_spatial"] == pytest.approx(0.6)
    assert good["Average"] == pytest.approx((0.6 + 14 / 18) / 2)
    assert good["overall"] == pytest.approx(26 / 38)
    assert (good["overall:low"], good["overall:high"]) == pytest.approx(wilson_interval(26, 38))
    bad = matrix.set_index("label").loc["bad"]
    assert pd.isna(bad["libero_spatial"]) and bad["n_suites"] == 1


def test_different_protocols_are_separate_rows_and_said_so(runs, tmp_path) -> None:
    report = build_report([runs["good_object"], runs["paper_object"]])
    protocols = dict(zip(report.matrix["label"], report.matrix["protocol"]))
    assert protocols["good"].startswith("standard@2#") and protocols["paper"].startswith("vita_vla_paper@2#")
    mixed = [n for n in report.notes if n.startswith("MIXED PROTOCOLS")]
    assert mixed and "standard@2#" in mixed[0] and "vita_vla_paper@2#" in mixed[0]
    # The same policy under two protocols never lands in one row.
    other = write_run(tmp_path / "good_paper", "good", "libero_object", first_k(1), protocol="vita_vla_paper")
    matrix = build_report([runs["good_object"], other]).matrix
    assert len(matrix) == 2 and matrix["protocol"].nunique() == 2


def test_students_around_a_random_initialised_vlm_are_named_in_a_note(runs, tmp_path) -> None:
    from vitabench.models.checkpoint import untrained_backbone

    random_vlm = {"kind": "vita_vla", "backbone": "cpu", "stages": []}
    student = write_run(tmp_path / "student", "vita_vla", "libero_object", first_k(2), lineage=random_vlm)
    pretrained = write_run(tmp_path / "pretrained", "vita_vla", "libero_object", first_k(2), label="pretrained",
                           lineage={**random_vlm, "backbone": "/models/vita15"})
    notes = [n for n in build_report([runs["good_object"], student, pretrained]).notes if n.startswith("RANDOM-INITIALISED VLM")]
    assert len(notes) == 1 and "the student(s) vita_vla were distilled" in notes[0] and "backbone `cpu`" in notes[0]
    assert "pretrained" not in notes[0].split(" were ")[0]
    assert not any(n.startswith("RANDOM-INITIALISED") for n in build_report([runs["good_object"], pretrained]).notes)
    # a wrapper (pva) around such a student is flagged through its inner policy's lineage
    assert untrained_backbone({"name": "pva", "lineage": {"aligner": "ab", "inner": {"lineage": random_vlm}}}) == "cpu"
    assert untrained_backbone({"name": "teacher", "lineage": {"kind": "teacher", "stages": []}}) is None


def test_protocols_table_shows_each_runs_step_limit_real_robot_included(runs, tmp_path) -> None:
    """A real-robot run's limit is its protocol's cap (``max_steps.real``), named by its suite."""
    real = write_run(tmp_path / "real", "zero", "real_five", first_k(1), protocol="real_robot", tasks=(0,),
                     episodes_per_task=2, robot="franka")
    frame = protocols_frame([runs["good_object"], runs["good_spatial"], real])
    steps = {p.split("@")[0]: json.loads(m) for p, m in zip(frame["protocol"], frame["max_steps"])}
    assert steps == {"standard": {"libero_object": 280, "libero_spatial": 220}, "real_robot": {"real_five": 1200}}


def test_same_label_suite_and_protocol_twice_is_disambiguated(runs, tmp_path) -> None:
    again = write_run(tmp_path / "again" / "rerun", "good", "libero_object", first_k(1))
    labels = list(build_report([runs["good_object"], again]).matrix["label"])
    assert labels == ["good [good_object]", "good [rerun]"]
    with pytest.raises(ReportError, match="given twice"):
        build_report([runs["good_object"], runs["good_object"]])


def test_cli_report_formats(runs, tmp_path) -> None:
    dirs = [str(runs["good_object"]), str(runs["good_spatial"]), str(runs["bad_object"])]
    md = vitabench_in_process("report", *dirs, "--format", "md")
    assert md.returncode == 0, md.stderr
    assert "| good | standard@2#" in md.stdout and "77.8 [54.8, 91.0]" in md.stdout  # 14/18
    assert "errors" in md.stdout and "excluded from the denominator" in md.stdout
    out = tmp_path / "r.json"
    assert vitabench_in_process("report", *dirs, "--out", str(out)).returncode == 0  # format from the suffix
    data = json.loads(out.read_text())
    overall = {r["label"]: r for r in data["long"] if r["level"] == "overall"}
    assert overall["bad"]["rate"] == 0.0 and overall["bad"]["ci_high"] == pytest.approx(wilson_interval(0, 20)[1])
    csv = tmp_path / "r.csv"
    assert vitabench_in_process("report", *dirs, "--out", str(csv)).returncode == 0
    frame = pd.read_csv(csv)
    assert set(frame["level"]) == {"task", "suite", "overall"}
    latex = vitabench_in_process("report", *dirs, "--format", "latex").stdout
    assert r"\begin{tabular}" in latex and r"libero\_object" in latex and r"standard@2\#" in latex
    term = vitabench_in_process("report", *dirs).stdout
    assert "Success rate (%) by suite" in term and "Protocols" in term


def test_cli_report_errors_are_one_line(tmp_path) -> None:
    missing = cli_subprocess("report", str(tmp_path / "nope"))  # a real process: nothing else on stderr
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0 and "does not exist" in missing.stderr
    empty = vitabench_in_process("report")
    assert empty.returncode == 2 and "--published" in empty.stderr
    bad_format = vitabench_in_process("report", "--published", "--format", "docx")
    assert bad_format.returncode == 2 and "accepted: term, md, html, latex, csv, json" in bad_format.stderr


def test_with_published_shows_quoted_rows_beside_measured(runs) -> None:
    result = vitabench_in_process("report", str(runs["good_object"]), "--with-published", "--format", "md")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    octo = next(line for line in lines if line.startswith("| Octo (quoted)"))
    assert "85.7" in octo and "| quoted |" in octo and "(as reported)" in octo
    assert load_protocol("standard").ref in octo
    vita = next(line for line in lines if line.startswith("| VITA-VLA two-stage (quoted)"))
    assert load_protocol("vita_vla_paper").ref in vita and "99.8" in vita
    assert any("Rows marked (quoted) are published numbers" in line for line in lines)


PAPER_LIBERO = {
    "Octo": ([78.9, 85.7, 84.6, 51.1], 75.1),
    "OpenVLA": ([84.9, 88.4, 79.2, 53.7], 76.5),
    "SpatialVLA": ([88.2, 89.9, 78.6, 55.5], 78.1),
    "CoT-VLA": ([87.5, 91.6, 87.6, 69.0], 81.1),
    "π0-FAST": ([96.4, 96.8, 88.6, 60.2], 85.5),
    "VITA-VLA two-stage": ([98.0, 99.8, 97.9, 93.5], 97.3),
}


def test_published_tables_reproduce_the_paper() -> None:
    tables = {t.name: t for t in published_tables()}
    libero = tables["libero"]
    assert libero.columns == ("libero_spatial", "libero_object", "libero_goal", "libero_long")
    assert {r.method: (list(r.values), r.stated_average) for r in libero.rows} == PAPER_LIBERO
    protocols = {r.method: r.protocol for r in libero.rows}
    assert protocols["VITA-VLA two-stage"] == "vita_vla_paper" and protocols["OpenVLA"] == "standard"
    long_tasks = {r.method: r for r in tables["libero_long_tasks"].rows}
    assert list(long_tasks["Seer-Large"].values) == [91.7, 90.0, 98.3, 100, 91.7, 93.3, 85.0, 88.3, 61.7, 71.7]
    assert long_tasks["VITA-VLA two-stage"].stated_average == 93.5
    robot = {r.method: r for r in tables["real_robot"].rows}
    assert list(robot["VITA-VLA two-stage"].values) == [97.5, 52.5, 80.0, 87.5, 92.5]
    assert tables["real_robot"].trials == 40


def test_published_average_checks_flag_exactly_the_mismatches() -> None:
    checks = check_published()
    averages = checks[checks["check"] == "average"].set_index(["table", "method"])
    flagged = set(averages.index[~averages["matches"].astype(bool)])
    assert flagged == {("libero", "CoT-VLA"), ("libero_long_tasks", "Seer-Large"), ("calvin", "VITA-VLA only-ft")}
    assert averages.loc[("libero", "CoT-VLA"), "recomputed"] == pytest.approx(83.925)
    assert averages.loc[("libero_long_tasks", "Seer-Large"), "recomputed"] == pytest.approx(87.17)
    # Rounding is not a mismatch: OpenVLA's four suites average 76.55, printed 76.5.
    assert averages.loc[("libero", "OpenVLA"), "matches"]
    cross = checks[checks["check"] == "cross-table"].set_index("method")
    assert not cross.loc["OpenVLA", "matches"]  # Long: 53.7 in one table, 54.0 in the other
    assert cross.loc["VITA-VLA two-stage", "matches"]
    trials = checks[checks["check"] == "trials"].set_index(["table", "method"])
    assert not trials.loc[("libero_long_tasks", "VITA-VLA two-stage"), "matches"]  # 95.0 is not k/50
    assert trials.loc[("libero_long_tasks", "VITA-VLA two-stage"), "fewest_trials"] == 20
    assert trials.loc[("real_robot", "VITA-VLA two-stage"), "matches"]


def test_cli_published_report_reproduces_and_flags() -> None:
    result = vitabench_in_process("report", "--published", "--format", "md")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for method, (values, stated) in PAPER_LIBERO.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {method} |") or line.startswith(f"| **{method}**"))
        assert all(f"{v:.1f}" in row for v in values) and f"{stated:.1f}" in row
    cot = next(line for line in text.splitlines() if "CoT-VLA" in line and "MISMATCH" in line)
    assert "83.925" in cot
    assert "Seer-Large states Avg 87.7 but the mean of its 10 values is 87.17" in text
    assert "CoT-VLA states Avg 81.1 but the mean of its 4 values is 83.92" in text
    data = json.loads(vitabench_in_process("report", "--published", "--format", "json").stdout)
    assert {(c["table"], c["method"]) for c in data["checks"] if c["check"] == "average" and not c["matches"]} == {
        ("libero", "CoT-VLA"), ("libero_long_tasks", "Seer-Large"), ("calvin", "VITA-VLA only-ft")
    }


# ----------------------------------------------------------------------------- compare


def test_compare_detects_regression_and_passes_identity(tmp_path) -> None:
    baseline = write_run(tmp_path / "base", "scripted", "libero_object", first_k(9))
    candidate = write_run(tmp_path / "cand", "zero", "libero_object", first_k(0))
    result = compare_runs(baseline, candidate)
    assert (result.counts.only_first, result.counts.only_second, result.counts.n) == (18, 0, 20)
    assert result.p_value == pytest.approx(0.5**18) and result.regression
    assert not compare_runs(baseline, baseline).regression
    # A drop that is significant but below --min-drop is not a regression.
    slightly = write_run(tmp_path / "slightly", "x", "libero_object", first_k(8))
    near = compare_runs(baseline, slightly, alpha=0.5, min_drop=0.2)
    assert near.drop == pytest.approx(0.1) and near.p_value < 0.5 and not near.regression


def test_compare_cli_exit_codes_and_summary(tmp_path) -> None:
    baseline = write_run(tmp_path / "base", "scripted", "libero_object", first_k(9))
    candidate = write_run(tmp_path / "cand", "zero", "libero_object", first_k(0))
    summary = tmp_path / "summary.md"
    failing = vitabench_in_process("compare", str(baseline), str(candidate), "--summary", str(summary))
    assert failing.returncode == 1, failing.stderr
    assert "REGRESSION" in failing.stdout and "b = 18" in summary.read_text()
    step_summary = tmp_path / "step.md"
    same = vitabench_in_process("compare", str(baseline), str(baseline), env={"GITHUB_STEP_SUMMARY": str(step_summary)})
    assert same.returncode == 0 and "no significant regression" in step_summary.read_text()


def test_compare_refuses_other_protocol_or_no_shared_episodes(tmp_path) -> None:
    baseline = write_run(tmp_path / "base", "scripted", "libero_object", first_k(9))
    paper = write_run(tmp_path / "paper", "zero", "libero_object", first_k(0), protocol="vita_vla_paper")
    with pytest.raises(CompareRefused, match="different protocols"):
        compare_runs(baseline, paper)
    other_tasks = write_run(tmp_path / "other", "zero", "libero_object", first_k(0), tasks=(5, 6))
    refused = vitabench_in_process("compare", str(baseline), str(other_tasks))
    assert refused.returncode == 2 and "share no episode" in refused.stderr
    assert refused.stderr.strip().count("\n") == 0
    all_errors = write_run(tmp_path / "errors", "zero", "libero_object", lambda e: None)
    assert vitabench_in_process("compare", str(baseline), str(all_errors)).returncode == 2


def test_incomplete_run_is_said_so_and_plots_are_written(tmp_path) -> None:
    run = write_run(tmp_path / "partial", "good", "libero_object", first_k(5))
    records = run / "episodes.jsonl"
    records.write_text("".join(records.read_text().splitlines(keepends=True)[:7]))
    report = build_report([run])
    assert report.overall.iloc[0]["episodes"] == 7
    assert any(n.startswith("INCOMPLETE") and "7 of its 20 planned" in n for n in report.notes)
    result = vitabench_in_process("report", str(run), "--format", "md", "--plots", str(tmp_path / "plots"))
    assert result.returncode == 0 and "INCOMPLETE" in result.stdout
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["suites.png", "suites.svg", "tasks.png", "tasks.svg"]
