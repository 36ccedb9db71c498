"""Whole reports in one format: over run directories (optionally with quoted rows), or published tables alone."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from vitabench.report.published import check_published, published_tables, quoted_matrix_rows
from vitabench.report.render import (
    published_sections,
    render_data,
    render_latex,
    render_markdown,
    render_term,
    report_sections,
)
from vitabench.report.runs import ReportError
from vitabench.report.tables import Report, build_report

FORMATS = ("term", "md", "html", "latex", "csv", "json")
_SUFFIXES = {".md": "md", ".html": "html", ".htm": "html", ".tex": "latex", ".csv": "csv", ".json": "json"}


def infer_format(fmt: str | None, out: str | Path | None) -> str:
    """``fmt`` if given, else from ``out``'s suffix, else ``term``."""
    if fmt is None:
        fmt = _SUFFIXES.get(Path(out).suffix.lower(), "term") if out else "term"
    if fmt not in FORMATS:
        raise ReportError(f"--format {fmt!r}; accepted: {', '.join(FORMATS)}")
    return fmt


def report_with_published(run_dirs: Sequence[str | Path], with_published: bool = False) -> Report:
    """:func:`build_report`, with quoted published rows appended to the matrix when asked."""
    report = build_report(run_dirs)
    if with_published:
        tables = published_tables()
        quoted = quoted_matrix_rows(tables, report.suite_names)
        if quoted.empty:
            report.notes.append(
                f"--with-published: no published table covers {', '.join(report.suite_names)}; no quoted rows."
            )
        else:
            report.matrix = pd.concat([report.matrix, quoted], ignore_index=True)
    return report


def _render_text(sections, title: str, fmt: str, figures=()) -> str:
    if fmt == "md":
        return render_markdown(sections, title)
    if fmt == "latex":
        return render_latex(sections, title)
    if fmt == "html":
        from vitabench.report.html import render_html

        return render_html(sections, title, figures)
    return render_term(sections, title)


def report_figures(report: Report) -> list[tuple[str, str, str]]:
    """The bar chart and heatmap as inline SVG, with captions and element ids."""
    from vitabench.report import plots

    figures = []
    for make, caption, css_id in (
        (lambda: plots.suite_bar_chart(report.suites), "Success rate by suite; whiskers: 95% Wilson interval.",
         "plot-suites"),
        (lambda: plots.task_heatmap(report.tasks), "Success rate by policy and task (%).", "plot-tasks"),
    ):
        fig = make()
        figures.append((plots.svg_text(fig), caption, css_id))
        plots.close(fig)
    return figures


def save_plots(report: Report, directory: str | Path) -> list[Path]:
    """Write ``suites.png/.svg`` and ``tasks.png/.svg`` under ``directory``."""
    from vitabench.report import plots

    paths = []
    for name, make in (("suites", plots.suite_bar_chart), ("tasks", plots.task_heatmap)):
        fig = make(report.suites if name == "suites" else report.tasks)
        paths += plots.save_figure(fig, Path(directory) / name)
        plots.close(fig)
    return paths


def render_report(run_dirs: Sequence[str | Path], fmt: str = "term", with_published: bool = False) -> str:
    """The report over ``run_dirs`` in ``fmt`` (one of :data:`FORMATS`)."""
    return render_built_report(report_with_published(run_dirs, with_published), fmt)


def render_built_report(report: Report, fmt: str) -> str:
    """An already built report in ``fmt``."""
    title = f"vitabench report: {report.episodes['run_dir'].nunique()} run(s)"
    if fmt in ("csv", "json"):
        frames = {"long": report.long_frame(), "matrix": report.matrix, "protocols": report.protocols}
        if not report.domains.empty:
            frames["domains"] = report.domains
        return render_data(frames, fmt, report.notes)
    figures = report_figures(report) if fmt == "html" else ()
    return _render_text(report_sections(report), title, fmt, figures)


def render_published(fmt: str = "term") -> str:
    """The published tables alone, as printed, with every check of their averages."""
    tables = published_tables()
    checks = check_published(tables)
    title = "Published results (quoted, not measured)"
    if fmt in ("csv", "json"):
        frames = {"checks": checks, **{t.name: t.frame() for t in tables}}
        return render_data(frames, fmt)
    return _render_text(published_sections(tables, checks), title, fmt)


def render_ablation(spec_path: str | Path, out: str | Path | None = None, fmt: str = "term") -> str:
    """Run whatever variants of the spec lack results (under ``out``), then render its table."""
    from vitabench.report.ablation import ablation_table, ensure_runs, load_ablation_spec
    from vitabench.report.render import ablation_section

    spec = load_ablation_spec(spec_path)
    runs = ensure_runs(spec, Path(out) if out is not None else Path("runs") / "ablations" / spec.name)
    table = ablation_table(spec, runs)
    if fmt in ("csv", "json"):
        return render_data({"ablation": table}, fmt)
    title = f"Ablation: {spec.name}" + (f" ({spec.description})" if spec.description else "")
    section = ablation_section(table, spec.reference, f"Each variant against {spec.reference}, on the episodes both ran")
    return _render_text([section], title, fmt)
