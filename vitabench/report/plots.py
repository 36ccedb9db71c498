"""Plots (matplotlib, Agg backend): per-suite bars with Wilson whiskers, a policies × tasks heatmap."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd

from vitabench.report.runs import suite_sort_key


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _row_name(label: str, protocol: str, mixed: bool) -> str:
    return f"{label} [{protocol.split('#')[0]}]" if mixed else label


def suite_bar_chart(suites: pd.DataFrame):
    """Grouped bars: suites on x, one bar per (policy, protocol), whiskers = 95% Wilson interval."""
    plt = _pyplot()
    suite_names = sorted(suites["suite"].unique(), key=suite_sort_key)
    rows = list(dict.fromkeys(zip(suites["label"], suites["protocol"])))
    mixed = len({p for _, p in rows}) > 1
    width = 0.8 / max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(suite_names) + 2), 4.2), dpi=100)
    for index, (label, protocol) in enumerate(rows):
        mine = suites[(suites["label"] == label) & (suites["protocol"] == protocol)].set_index("suite")
        xs, heights, lower, upper = [], [], [], []
        for position, suite in enumerate(suite_names):
            if suite not in mine.index or math.isnan(mine.loc[suite, "rate"]):
                continue
            cell = mine.loc[suite]
            xs.append(position - 0.4 + width * (index + 0.5))
            heights.append(100 * cell["rate"])
            lower.append(100 * (cell["rate"] - cell["ci_low"]))
            upper.append(100 * (cell["ci_high"] - cell["rate"]))
        ax.bar(xs, heights, width * 0.92, yerr=[lower, upper], capsize=3, label=_row_name(label, protocol, mixed))
    ax.set_xticks(range(len(suite_names)), suite_names)
    ax.set_ylim(0, 105)
    ax.set_ylabel("success rate (%)")
    ax.set_title("Success by suite (whiskers: 95% Wilson interval)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def task_heatmap(tasks: pd.DataFrame):
    """Policies (rows) × tasks (columns, ``suite/t<id>``), colour = success rate, annotated in %."""
    plt = _pyplot()
    mixed = tasks["protocol"].nunique() > 1
    frame = tasks.assign(
        row=[_row_name(l, p, mixed) for l, p in zip(tasks["label"], tasks["protocol"])],
        column=[f"{s}/t{t}" for s, t in zip(tasks["suite"], tasks["task_id"])],
        _key=[(suite_sort_key(s), int(t)) for s, t in zip(tasks["suite"], tasks["task_id"])],
    )
    columns = list(dict.fromkeys(frame.sort_values("_key", kind="stable")["column"]))
    rows = list(dict.fromkeys(frame["row"]))
    grid = frame.pivot_table(index="row", columns="column", values="rate", aggfunc="first").reindex(
        index=rows, columns=columns
    )
    fig, ax = plt.subplots(
        figsize=(max(5.0, 0.55 * len(columns) + 3), max(2.2, 0.45 * len(rows) + 1.6)), dpi=100
    )
    image = ax.imshow(100 * grid.to_numpy(dtype=float), vmin=0, vmax=100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for (i, j), value in pd.DataFrame(grid.to_numpy(dtype=float)).stack().items():
        if not math.isnan(value):
            ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if value < 0.6 else "black")
    fig.colorbar(image, ax=ax, label="success rate (%)")
    ax.set_title("Success by task")
    fig.tight_layout()
    return fig


def save_figure(fig, base: str | Path) -> list[Path]:
    """Write ``base.png`` and ``base.svg``; return both paths."""
    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = [base.with_suffix(".png"), base.with_suffix(".svg")]
    for path in paths:
        fig.savefig(path, bbox_inches="tight")
    return paths


def svg_text(fig) -> str:
    """The figure as an inline ``<svg>`` element (XML prolog and doctype dropped)."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def close(fig) -> None:
    _pyplot().close(fig)
