"""One self-contained HTML report: the tables, plus the plots embedded as inline SVG."""

from __future__ import annotations

import html
from importlib import resources
from string import Template
from typing import Sequence

from vitabench.report.render import Section


def template() -> Template:
    return Template((resources.files("vitabench.reports") / "templates" / "report.html").read_text())


def section_html(section: Section) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in section.header)
    body = []
    for index, row in enumerate(section.rows):
        css = ' class="flagged"' if index in section.flagged_rows else ""
        body.append(f"<tr{css}>" + "".join(_cell(c) for c in row) + "</tr>")
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in section.notes)
    return (
        f"<h2>{html.escape(section.title)}</h2>\n"
        f'<table class="vb"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>\n{notes}'
    )


def _cell(text: str) -> str:
    """Long cells (task names, findings) wrap; short ones (rates, counts) stay on one line."""
    css = ' class="wrap"' if len(text) > 40 else ""
    return f"<td{css}>{html.escape(text)}</td>"


def figure_html(svg: str, caption: str, css_id: str) -> str:
    return f'<figure id="{css_id}">{svg}<figcaption>{html.escape(caption)}</figcaption></figure>'


def render_html(sections: Sequence[Section], title: str, figures: Sequence[tuple[str, str, str]] = ()) -> str:
    """``figures``: ``(inline_svg, caption, element_id)``, placed after the first table."""
    parts = [section_html(s) for s in sections]
    plots = [figure_html(svg, caption, css_id) for svg, caption, css_id in figures]
    body = "\n".join(parts[:1] + plots + parts[1:])
    return template().substitute(title=html.escape(title), body=body)
