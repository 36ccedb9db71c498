"""Turning report DataFrames into text: sections of string tables, rendered as terminal, markdown or LaTeX.

HTML lives in :mod:`vitabench.report.html` (it also embeds the plots); CSV and JSON are
written straight from the DataFrames by :func:`render_data`.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd

from vitabench.report.ablation import ALPHA, HIGHER, LOWER, NOT_SIGNIFICANT
from vitabench.report.published import PublishedTable
from vitabench.report.runs import untrained_backbone_notes
from vitabench.report.tables import DENOMINATOR_NOTE, Report

QUOTED_NOTE = (
    "Rows marked (quoted) are published numbers copied from their source, not measured here; "
    "they carry no interval because the sources give no episode counts, and their protocol is the one the "
    "source states: only rows under the same protocol are comparable."
)


@dataclass(frozen=True)
class Section:
    """A titled table of strings with the notes printed under it."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()
    flagged_rows: frozenset[int] = field(default_factory=frozenset)  # rows to highlight


def pct(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def rate_cell(rate: float, low: float, high: float) -> str:
    """``83.9 [79.1, 87.8]``; a bare rate when there is no interval; ``-`` when there is no rate."""
    if rate is None or math.isnan(rate):
        return "-"
    if low is None or math.isnan(low):
        return pct(rate)
    return f"{pct(rate)} [{pct(low)}, {pct(high)}]"


def matrix_section(matrix: pd.DataFrame, suites: Sequence[str], notes: Sequence[str]) -> Section:
    header = ("policy", "protocol", *suites, "Average", "overall (pooled)", "episodes (ok/all)", "errors")
    rows = []
    for _, row in matrix.iterrows():
        quoted = row["source"] == "quoted"
        cells = [rate_cell(row[s], row[f"{s}:low"], row[f"{s}:high"]) for s in suites]
        average = pct(row["Average"])
        if not quoted and row["n_suites"] < len(suites):
            average += f" ({row['n_suites']} of {len(suites)} suites)"
        stated = row.get("stated_average") if quoted else None
        if stated is not None and not math.isnan(stated):
            if row["n_suites"] < row["table_columns"]:
                average = f"{pct(stated)} (stated, over its {int(row['table_columns'])} suites)"
            elif abs(stated - row["Average"]) > 0.0005 + 1e-9:
                average += f" (stated {pct(stated)}: does not match)"
        overall = rate_cell(row["overall"], row["overall:low"], row["overall:high"])
        episodes = "quoted" if quoted else f"{row['ok']}/{row['episodes']}"
        errors = "-" if quoted else str(row["errors"])
        rows.append((str(row["label"]), str(row["protocol"]), *cells, average, overall, episodes, errors))
    notes = [*notes, "Average = unweighted mean of the row's suite rates (as papers report it); overall (pooled) = "
             "all the row's episodes together, with its 95% Wilson interval."]
    return Section("Success rate (%) by suite, 95% Wilson interval", header, tuple(rows), tuple(notes))


def _count_rows(frame: pd.DataFrame, keys: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """One row per line of an aggregated frame: its ``keys``, then successes/ok, rate [95% CI], errors."""
    return tuple(
        (*(str(r[k]) for k in keys), f"{r['successes']}/{r['ok']}", rate_cell(r["rate"], r["ci_low"], r["ci_high"]), str(r["errors"]))
        for _, r in frame.iterrows()
    )


COUNT_HEADER = ("successes/ok", "rate [95% CI]", "errors")


def task_section(tasks: pd.DataFrame) -> Section:
    header = ("policy", "protocol", "suite", "task", "name", *COUNT_HEADER)
    return Section("Success rate (%) by task", header, _count_rows(tasks, ("label", "protocol", "suite", "task_id", "task")))


def domain_section(domains: pd.DataFrame) -> Section:
    header = ("policy", "protocol", "suite", "domain", *COUNT_HEADER)
    notes = ("SET (all) = every domain's episodes pooled (the set average: each domain runs the same episodes), "
             "with its 95% Wilson interval.",)
    return Section("Success rate (%) by visual domain", header, _count_rows(domains, ("label", "protocol", "suite", "domain")), notes)


def protocol_section(protocols: pd.DataFrame) -> Section:
    columns = ["protocol", "max_steps", "settle_steps", "resolution", "image_orientation", "seed",
               "episodes_per_task", "description"]
    rows = tuple(tuple("" if pd.isna(r[c]) else str(r[c]) for c in columns) for _, r in protocols.iterrows())
    return Section("Protocols", tuple(columns), rows)


def report_sections(report: Report) -> list[Section]:
    """The sections of a report over run directories (quoted rows included if it has any)."""
    matrix = report.matrix
    notes = list(report.notes)
    if (matrix["source"] == "quoted").any():
        notes.append(QUOTED_NOTE)
    return [
        matrix_section(matrix, report.suite_names, notes),
        *([domain_section(report.domains)] if not report.domains.empty else []),
        task_section(report.tasks),
        protocol_section(report.protocols),
    ]


def published_sections(tables: Sequence[PublishedTable], checks: pd.DataFrame) -> list[Section]:
    """Each published table as printed, its recomputed averages, and every check that failed."""
    sections = []
    for table in tables:
        frame = table.frame()
        header = ("method", "protocol", *table.column_labels, table.average_label, "recomputed", "check", "note")
        rows, flagged = [], set()
        for index, row in frame.iterrows():
            ok = row["matches"]
            if ok is False:
                flagged.add(index)
            rows.append((
                str(row["method"]), str(row["protocol"]),
                *(f"{row[c]:.1f}" for c in table.column_labels),
                "-" if row[table.average_label] is None else f"{row[table.average_label]:.{table.decimals}f}",
                f"{row['recomputed']:.{table.decimals + 2}f}".rstrip("0").rstrip("."),
                "ok" if ok else ("MISMATCH" if ok is False else "-"),
                str(row["note"]),
            ))
        notes = (f"Quoted from: {table.source}.", f"{table.average_label} as stated; 'recomputed' = "
                 + ("sum of the row / 100" if table.average_rule == "sum/100" else "mean of the row")
                 + f"; tolerance ±{table.tolerance:g} (half a unit of the stated value's last decimal).")
        sections.append(Section(f"Published: {table.title}", header, tuple(rows), notes, frozenset(flagged)))
    failed = checks[~checks["matches"].astype(bool)]
    rows = tuple((str(r["table"]), str(r["method"]), str(r["check"]), str(r["message"])) for _, r in failed.iterrows())
    sections.append(Section(
        f"Flagged: {len(failed)} published number(s) that do not match their rows or each other",
        ("table", "method", "check", "finding"), rows,
        (f"{len(checks)} checks run: stated averages against their rows, the same number across tables, "
         "and per-task values against the trials per task the source claims.",),
        frozenset(range(len(rows))),
    ))
    return sections


# ----------------------------------------------------------------------------- text renderers


def render_markdown(sections: Sequence[Section], title: str) -> str:
    out = [f"# {title}", ""]
    for section in sections:
        out += [f"## {section.title}", "", "| " + " | ".join(section.header) + " |",
                "|" + "|".join("---" for _ in section.header) + "|"]
        for index, row in enumerate(section.rows):
            cells = [_md_escape(c) for c in row]
            if index in section.flagged_rows:
                cells = [f"**{c}**" for c in cells]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        out += [f"> {note}" for note in section.notes]
        out.append("")
    return "\n".join(out)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def render_latex(sections: Sequence[Section], title: str) -> str:
    out = [f"% {title} (generated by vitabench report)"]
    for section in sections:
        out += [r"\begin{table}[t]", r"\centering", r"\small",
                r"\caption{" + _latex_escape(section.title) + "}",
                r"\begin{tabular}{" + "l" * 2 + "r" * (len(section.header) - 2) + "}", r"\toprule",
                " & ".join(_latex_escape(h) for h in section.header) + r" \\", r"\midrule"]
        for index, row in enumerate(section.rows):
            cells = [_latex_escape(c) for c in row]
            if index in section.flagged_rows:
                cells = [r"\textbf{" + c + "}" for c in cells]
            out.append(" & ".join(cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}"]
        if section.notes:
            out.append(r"\par\footnotesize " + " ".join(_latex_escape(n) for n in section.notes))
        out += [r"\end{table}", ""]
    return "\n".join(out)


def render_term(sections: Sequence[Section], title: str) -> str:
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(file=buffer, width=200, force_terminal=False, color_system=None)
    console.rule(title)
    for section in sections:
        table = Table(title=section.title, title_justify="left")
        for name in section.header:
            table.add_column(name, overflow="fold")
        for index, row in enumerate(section.rows):
            table.add_row(*row, style="bold" if index in section.flagged_rows else None)
        console.print(table)
        for note in section.notes:
            console.print(f"  note: {note}", highlight=False, soft_wrap=True)
        console.print()
    return buffer.getvalue()


def render_data(frames: dict[str, pd.DataFrame], fmt: str, notes: Sequence[str] = ()) -> str:
    """CSV: the first frame (the long per-task/suite/overall table); JSON: every frame plus notes."""
    if fmt == "csv":
        return next(iter(frames.values())).to_csv(index=False)
    data = {name: json.loads(frame.to_json(orient="records")) for name, frame in frames.items()}
    data["notes"] = list(notes)
    return json.dumps(data, indent=2)


def ablation_section(table: pd.DataFrame, reference: str, title: str) -> Section:
    """The ablation table: success per suite and overall, delta from the reference, paired
    p-value, its Holm adjustment and the verdict; the notes say which differences are significant."""
    suites = [c for c in table.columns if f"{c}:low" in table.columns and c != "overall"]
    header = ("variant", "protocol", *suites, "overall", "ok", "errors", f"Δ vs {reference} (points)",
              "pairs", "b / c", "p (exact McNemar)", "p (Holm)", f"verdict (α = {ALPHA:g})")
    rows = []
    for _, r in table.iterrows():
        is_reference = r["variant"] == reference
        paired = not (isinstance(r["p_value"], float) and math.isnan(r["p_value"]))
        rows.append((
            str(r["variant"]) + (" (reference)" if is_reference else ""), str(r["protocol"]),
            *(rate_cell(r[s], r[f"{s}:low"], r[f"{s}:high"]) for s in suites),
            rate_cell(r["overall"], r["overall:low"], r["overall:high"]), str(r["ok"]), str(r["errors"]),
            "-" if is_reference or math.isnan(r["delta"]) else f"{100 * r['delta']:+.1f}",
            str(int(r["pairs"])) if paired else "-",
            f"{int(r['b'])} / {int(r['c'])}" if paired else "-",
            f"{r['p_value']:.3g}" if paired else (r["note"] or "-"),
            f"{r['p_holm']:.3g}" if paired else "-",
            r["verdict"] if paired else "-",
        ))
    groups = ((HIGHER, f"significantly higher than {reference}"), (LOWER, f"significantly lower than {reference}"),
              (NOT_SIGNIFICANT, NOT_SIGNIFICANT))
    summary = "; ".join(
        f"{label}: {', '.join(map(str, names))}" for verdict, label in groups
        if len(names := list(table.loc[table["verdict"] == verdict, "variant"]))
    )
    tested = int(table["p_value"].notna().sum())
    notes = (
        DENOMINATOR_NOTE,
        "Δ = the variant's overall success rate minus the reference's. Pairs = episodes with the same id that ran "
        "to the end in both; b = reference-only successes, c = variant-only successes; p = two-sided exact McNemar "
        "(binomial test of b in b + c at 1/2).",
        f"p (Holm) = p adjusted by Holm's method over the {tested} paired variant{'' if tested == 1 else 's'} of this "
        f"table, so that the chance of any false 'significant' among them is at most α = {ALPHA:g}; the verdict reads it.",
        *((f"At α = {ALPHA:g} (Holm): {summary}.",) if summary else ()),
        *untrained_backbone_notes(dict(zip(table["variant"], table["untrained_backbone"]))),
    )
    return Section(title, header, tuple(rows), notes)
