"""``vitabench report``, ``vitabench compare`` and ``vitabench ablate``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from vitabench.cli.common import CliError


def _write_or_print(text: str, out: Optional[Path]) -> None:
    if out is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    typer.echo(f"wrote {out}", err=True)


def report(
    run_dirs: Optional[List[Path]] = typer.Argument(None, help="Run directories (policies become rows)."),
    fmt: Optional[str] = typer.Option(
        None, "--format", "-f", help="term|md|html|latex|csv|json (default: from --out's suffix, else term)."
    ),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to FILE instead of stdout."),
    with_published: bool = typer.Option(
        False, "--with-published", help="Add published (quoted) rows for the same suites beside measured rows."
    ),
    published: bool = typer.Option(
        False, "--published", help="Report the published tables alone and flag averages that do not match their rows."
    ),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Also save suites/tasks plots (PNG and SVG) in DIR."),
) -> None:
    """Success per task, per suite and overall with 95% Wilson intervals, episode and error counts."""
    from vitabench.report.document import (
        infer_format,
        render_built_report,
        render_published,
        report_with_published,
        save_plots,
    )

    fmt = infer_format(fmt, out)
    if published:
        if run_dirs:
            raise CliError("--published reports the published tables alone; use --with-published beside run dirs")
        _write_or_print(render_published(fmt), out)
        return
    if not run_dirs:
        raise CliError("no run directories given; pass RUN_DIR... or --published for the published tables")
    built = report_with_published(run_dirs, with_published)
    _write_or_print(render_built_report(built, fmt), out)
    if plots is not None:
        for path in save_plots(built, plots):
            typer.echo(f"wrote {path}", err=True)


def compare(
    baseline: Path = typer.Argument(..., help="Baseline run directory (e.g. under reports/baselines/)."),
    candidate: Path = typer.Argument(..., help="Candidate run directory."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of the one-sided exact McNemar test."),
    min_drop: float = typer.Option(0.05, "--min-drop", help="Smallest drop in success rate (fraction) that fails."),
    summary: Optional[Path] = typer.Option(
        None, "--summary", help="Also write the markdown summary here (default: append to $GITHUB_STEP_SUMMARY if set)."
    ),
) -> int:
    """Paired regression gate: exit 1 on a significant drop of at least --min-drop, else 0 (2: cannot compare)."""
    from vitabench.report.compare import compare_runs

    result = compare_runs(baseline, candidate, alpha=alpha, min_drop=min_drop)
    text = result.markdown()
    typer.echo(text, nl=False)
    if summary is not None:
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.write_text(text)
    elif os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as handle:
            handle.write(text)
    return 1 if result.regression else 0


def ablate(
    spec: Path = typer.Argument(..., help="Ablation spec (reports/ablations/*.toml)."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Where variants' runs live: OUT/<variant>/<suite> (default runs/ablations/<name>)."
    ),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="term|md|html|latex|csv|json."),
    report_out: Optional[Path] = typer.Option(None, "--report", help="Write the table to FILE instead of stdout."),
) -> None:
    """Run the spec's variants that lack results (through the runner), then print the ablation table."""
    from vitabench.report.document import infer_format, render_ablation

    _write_or_print(render_ablation(spec, out, infer_format(fmt, report_out)), report_out)


def register(app: typer.Typer) -> None:
    """Add the reporter's commands to the ``vitabench`` app."""
    app.command("report")(report)
    app.command("compare")(compare)
    app.command("ablate")(ablate)
