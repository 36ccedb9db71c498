"""Ablation specs and tables: validation, deltas, paired McNemar, which variants get run."""

from __future__ import annotations

from pathlib import Path

import pytest

from report_runs import first_k, write_run
from vitabench.report.ablation import ablation_table, ensure_runs, load_ablation_spec
from vitabench.report.render import ablation_section
from vitabench.report.runs import ReportError


def spec_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(body)
    return path


def test_shipped_specs_parse() -> None:
    root = Path(__file__).parents[2] / "reports" / "ablations"
    specs = {p.stem: load_ablation_spec(p) for p in root.glob("*.toml")}
    assert specs["vita_vla_stages"].reference == "two_stage"
    assert [v.name for v in specs["vita_vla_stages"].variants] == ["two_stage", "only_ft", "freeze_vlm"]
    assert specs["baselines_smoke"].tasks == (0, 1) and specs["baselines_smoke"].max_steps == 5


@pytest.mark.parametrize(
    "body,message",
    [
        ('reference = "x"\nsuites = ["libero_object"]\n[[variants]]\nname = "a"\npolicy = "zero"\n', "no variant 'x'"),
        ('reference = "a"\nsuites = ["libero_object"]\n[[variants]]\nname = "a"\npolicy = "zero"\nruns = ["r"]\n',
         "exactly one of 'policy' or 'runs'"),
        ('reference = "a"\nsuites = ["libero_object", "libero_goal"]\n[[variants]]\nname = "a"\nruns = ["r"]\n',
         "one run directory per suite"),
        ('reference = "a"\nsuites = ["libero_object"]\nepisodes = 3\n[[variants]]\nname = "a"\npolicy = "zero"\n',
         "unknown key(s) episodes"),
        ('reference = "a"\n[[variants]]\nname = "a"\npolicy = "zero"\n', "missing key 'suites'"),
    ],
)
def test_bad_specs_are_one_clear_error(tmp_path, body: str, message: str) -> None:
    with pytest.raises(ReportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_ablation_spec(spec_file(tmp_path, body))


def test_table_deltas_and_paired_mcnemar(tmp_path) -> None:
    from scipy.stats import binomtest  # imported where used: scipy.stats costs a collecting process most of a second

    reference = write_run(tmp_path / "ref", "full", "libero_object", first_k(8))
    weaker = write_run(tmp_path / "weak", "no_state", "libero_object", first_k(3), lineage={"backbone": "cpu", "stages": []})
    # Errors are left out of the pairs: episode 0 of each task errored in this variant.
    flaky = write_run(tmp_path / "flaky", "flaky", "libero_object", lambda e: None if e.index == 0 else e.index < 8)
    other = write_run(tmp_path / "other", "paper", "libero_object", first_k(8), protocol="vita_vla_paper")
    spec = load_ablation_spec(spec_file(tmp_path, f"""
reference = "full"
suites = ["libero_object"]
[[variants]]
name = "full"
runs = ["{reference}"]
[[variants]]
name = "no_state"
runs = ["{weaker}"]
[[variants]]
name = "flaky"
runs = ["{flaky}"]
[[variants]]
name = "paper"
runs = ["{other}"]
"""))
    table = ablation_table(spec, ensure_runs(spec, tmp_path / "unused")).set_index("variant")
    assert table.loc["full", "delta"] == 0.0 and table.loc["full", "note"] == "reference"
    weak = table.loc["no_state"]
    assert weak["delta"] == pytest.approx(0.3 - 0.8)
    assert (weak["pairs"], weak["b"], weak["c"]) == (20, 10, 0)
    assert weak["p_value"] == pytest.approx(binomtest(10, 10, 0.5).pvalue)
    flaky_row = table.loc["flaky"]
    assert (flaky_row["ok"], flaky_row["errors"], flaky_row["pairs"], flaky_row["b"], flaky_row["c"]) == (18, 2, 18, 0, 0)
    assert flaky_row["p_value"] == 1.0
    assert "not paired: protocol" in table.loc["paper", "note"]
    # Holm over the two paired variants: the smaller p doubles, the larger stays (1.0)
    assert weak["p_holm"] == pytest.approx(2 * weak["p_value"]) and flaky_row["p_holm"] == 1.0
    assert table["verdict"].to_dict() == {"full": "", "no_state": "lower", "flaky": "no significant difference", "paper": ""}
    assert table["untrained_backbone"].to_dict() == {"full": "", "no_state": "cpu", "flaky": "", "paper": ""}
    notes = ablation_section(table.reset_index(), "full", "t").notes
    assert notes[-2] == "At α = 0.05 (Holm): significantly lower than full: no_state; no significant difference: flaky."
    assert notes[-1].startswith("RANDOM-INITIALISED VLM: the student(s) no_state were distilled")


def test_only_missing_variants_are_run(tmp_path) -> None:
    spec = load_ablation_spec(spec_file(tmp_path, """
reference = "zero"
suites = ["libero_object"]
tasks = [0]
episodes_per_task = 4
[[variants]]
name = "zero"
policy = "zero"
[[variants]]
name = "chunked"
policy = "zero"
args = { chunk = 2 }
"""))
    calls = []

    def fake_evaluate(variant, suite, spec, run_dir):
        calls.append(variant.name)
        return write_run(run_dir, variant.policy, suite, first_k(2), tasks=(0,), episodes_per_task=4, args=dict(variant.args))

    out = tmp_path / "runs"
    runs = ensure_runs(spec, out, evaluate=fake_evaluate)
    assert calls == ["zero", "chunked"] and runs["chunked"] == [out / "chunked" / "libero_object"]
    ensure_runs(spec, out, evaluate=fake_evaluate)
    assert calls == ["zero", "chunked"]  # both complete: nothing run again
    # A complete run of something else under OUT is refused, not silently reused.
    with pytest.raises(ReportError, match="holds another run"):
        ensure_runs(
            load_ablation_spec(spec_file(tmp_path, """
reference = "zero"
suites = ["libero_object"]
[[variants]]
name = "zero"
policy = "zero"
args = { chunk = 3 }
""")),
            out,
            evaluate=fake_evaluate,
        )
