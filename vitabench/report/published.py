"""Published numbers (``reports/published/*.toml``): quoted tables and the checks of their averages.

A published table lists methods with one value per column (success %), the average the
source states, and the protocol the numbers were measured under: a vitabench preset name
(``standard``, ``vita_vla_paper``) or ``"as reported"`` when the source does not say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import pandas as pd

from vitabench.api.config import read_toml
from vitabench.report.runs import ReportError

AverageRule = Literal["mean", "sum/100"]
AS_REPORTED = "as reported"


@dataclass(frozen=True)
class PublishedRow:
    method: str
    protocol: str
    values: tuple[float, ...]
    stated_average: float | None
    note: str = ""


@dataclass(frozen=True)
class PublishedTable:
    """One table of a paper, quoted as printed.

    ``average_rule`` says how the stated average derives from a row (``mean`` of the values,
    or ``sum/100`` for CALVIN's average length); ``decimals`` is how many decimals the stated
    average is printed with, so a stated average "matches" when it lies within half a unit of
    its last decimal of the recomputed one. ``average_is`` names the column of another table
    the stated average also appears in (e.g. ``libero_long``).
    """

    name: str
    title: str
    source: str
    columns: tuple[str, ...]
    column_labels: tuple[str, ...]
    rows: tuple[PublishedRow, ...]
    average_label: str = "Avg"
    average_rule: AverageRule = "mean"
    decimals: int = 1
    average_is: str | None = None
    trials: int | None = None

    @property
    def tolerance(self) -> float:
        return 0.5 * 10 ** (-self.decimals)

    def recomputed_average(self, row: PublishedRow) -> float:
        if self.average_rule == "sum/100":
            return sum(row.values) / 100.0
        return sum(row.values) / len(row.values)

    def frame(self) -> pd.DataFrame:
        """The table as printed, plus the recomputed average and whether the stated one matches."""
        records = []
        for row in self.rows:
            record: dict[str, Any] = {"method": row.method, "protocol": row.protocol}
            record.update(dict(zip(self.column_labels, row.values)))
            recomputed = self.recomputed_average(row)
            record[self.average_label] = row.stated_average
            record["recomputed"] = round(recomputed, 4)
            record["matches"] = _matches(row.stated_average, recomputed, self.tolerance)
            record["note"] = row.note
            records.append(record)
        return pd.DataFrame(records)


def _matches(stated: float | None, recomputed: float, tolerance: float) -> bool | None:
    if stated is None:
        return None
    return abs(stated - recomputed) <= tolerance + 1e-9


def _row(data: Mapping[str, Any], n_columns: int, source: str) -> PublishedRow:
    values = tuple(float(v) for v in data["values"])
    if len(values) != n_columns:
        raise ReportError(f"{source}: row {data.get('method')!r} has {len(values)} values, expected {n_columns}")
    if any(math.isnan(v) for v in values):
        raise ReportError(f"{source}: row {data.get('method')!r} has a NaN value")
    stated = data.get("stated_average")
    return PublishedRow(
        method=str(data["method"]),
        protocol=str(data.get("protocol", AS_REPORTED)),
        values=values,
        stated_average=None if stated is None else float(stated),
        note=str(data.get("note", "")),
    )


def load_published_table(path: str | Path) -> PublishedTable:
    """Parse one published-table TOML file."""
    path = Path(path)
    data = read_toml(path, "published table", ReportError)
    try:
        columns = tuple(str(c) for c in data["columns"])
        rule = data.get("average_rule", "mean")
        if rule not in ("mean", "sum/100"):
            raise ReportError(f"{path}: average_rule={rule!r}; accepted: mean, sum/100")
        return PublishedTable(
            name=str(data.get("name", path.stem)),
            title=str(data["title"]),
            source=str(data.get("source", "")),
            columns=columns,
            column_labels=tuple(str(c) for c in data.get("column_labels", columns)),
            rows=tuple(_row(r, len(columns), str(path)) for r in data["rows"]),
            average_label=str(data.get("average_label", "Avg")),
            average_rule=rule,
            decimals=int(data.get("decimals", 1)),
            average_is=data.get("average_is"),
            trials=data.get("trials"),
        )
    except KeyError as exc:
        raise ReportError(f"published table {str(path)!r} lacks the key {exc.args[0]!r}") from None


def published_dir() -> Path:
    """The folder of published tables shipped in ``vitabench.reports``."""
    return Path(str(resources.files("vitabench.reports") / "published"))


#: Published tables in the order reports show them.
TABLE_ORDER = ("libero", "libero_long_tasks", "real_robot", "calvin")


def published_tables(paths: Sequence[str | Path] | None = None) -> list[PublishedTable]:
    """The given published-table files, or all shipped ones."""
    if paths is None:
        paths = sorted(
            published_dir().glob("*.toml"),
            key=lambda p: (TABLE_ORDER.index(p.stem) if p.stem in TABLE_ORDER else len(TABLE_ORDER), p.stem),
        )
    return [load_published_table(p) for p in paths]


def fewest_trials(values: Sequence[float], tolerance: float = 0.05, limit: int = 200) -> int | None:
    """The fewest trials per cell that can produce every value (each within ``tolerance`` points
    of some ``100 k / n``); ``None`` if no ``n <= limit`` can."""
    for n in range(1, limit + 1):
        if all(abs(v - round(v * n / 100) * 100 / n) <= tolerance + 1e-9 for v in values):
            return n
    return None


def check_published(tables: Sequence[PublishedTable] | None = None) -> pd.DataFrame:
    """Every stated average checked against its row, and against the same number in other tables.

    Columns: ``table``, ``method``, ``check`` (``average`` or ``cross-table``), ``stated``,
    ``recomputed``, ``difference``, ``tolerance``, ``matches``, ``message``, plus
    ``fewest_trials``: the fewest trials per cell consistent with the row's values.
    """
    tables = published_tables() if tables is None else list(tables)
    records = []
    for table in tables:
        for row in table.rows:
            if row.stated_average is None:
                continue
            recomputed = table.recomputed_average(row)
            matches = bool(_matches(row.stated_average, recomputed, table.tolerance))
            how = "sum of its values / 100" if table.average_rule == "sum/100" else f"mean of its {len(row.values)} values"
            records.append({
                "table": table.name, "method": row.method, "check": "average",
                "stated": row.stated_average, "recomputed": round(recomputed, 4),
                "difference": round(row.stated_average - recomputed, 4), "tolerance": table.tolerance,
                "matches": matches, "fewest_trials": fewest_trials(row.values) if table.average_rule == "mean" else None,
                "message": (
                    f"{table.title}: {row.method} states {table.average_label} {row.stated_average:g} "
                    f"but the {how} is {recomputed:.4g}"
                    + ("" if matches else f" (off by {abs(row.stated_average - recomputed):.3g} > {table.tolerance:g})")
                ),
            })
    records.extend(_cross_table_checks(tables))
    records.extend(_trials_checks(tables))
    return pd.DataFrame(records)


def _claimed_trials(table: PublishedTable, row: PublishedRow) -> tuple[int, str] | None:
    """Trials per cell the source claims: the table's ``trials``, or for a per-task table the
    ``episodes_per_task`` of the row's protocol preset."""
    if table.trials:
        return int(table.trials), f"{table.trials} trials per task"
    if table.average_is and row.protocol != AS_REPORTED:
        from vitabench.api.protocol import load_protocol

        per_task = load_protocol(row.protocol).episodes_per_task
        return per_task, f"{per_task} episodes per task ({row.protocol})"
    return None


def _trials_checks(tables: Sequence[PublishedTable]) -> list[dict[str, Any]]:
    records = []
    for table in tables:
        for row in table.rows:
            claimed = _claimed_trials(table, row)
            if claimed is None:
                continue
            n, how = claimed
            impossible = [v for v in row.values if abs(v - round(v * n / 100) * 100 / n) > 0.05 + 1e-9]
            fewest = fewest_trials(row.values)
            records.append({
                "table": table.name, "method": row.method, "check": "trials",
                "stated": float(n), "recomputed": None if fewest is None else float(fewest),
                "difference": None, "tolerance": 0.05, "matches": not impossible, "fewest_trials": fewest,
                "message": (
                    f"{table.title}: {row.method} "
                    + (f"values are all reachable with {how}" if not impossible else
                       f"values {', '.join(f'{v:g}' for v in impossible)} cannot come from {how}")
                    + f"; the fewest trials per task consistent with the row is {fewest}"
                ),
            })
    return records


def _cross_table_checks(tables: Sequence[PublishedTable]) -> list[dict[str, Any]]:
    records = []
    for summary in tables:
        if summary.average_is is None:
            continue
        for other in tables:
            if summary.average_is not in other.columns:
                continue
            column = other.columns.index(summary.average_is)
            quoted = {r.method: r.values[column] for r in other.rows}
            for row in summary.rows:
                if row.method not in quoted or row.stated_average is None:
                    continue
                elsewhere = quoted[row.method]
                matches = bool(_matches(row.stated_average, elsewhere, summary.tolerance))
                records.append({
                    "table": summary.name, "method": row.method, "check": "cross-table",
                    "stated": row.stated_average, "recomputed": elsewhere,
                    "difference": round(row.stated_average - elsewhere, 4), "tolerance": summary.tolerance,
                    "matches": matches, "fewest_trials": None,
                    "message": (
                        f"{row.method}: {summary.average_is} is {row.stated_average:g} in '{summary.title}' "
                        f"and {elsewhere:g} in '{other.title}'" + ("" if matches else " (the two tables disagree)")
                    ),
                })
    return records


def quoted_matrix_rows(tables: Sequence[PublishedTable], suites: Sequence[str]) -> pd.DataFrame:
    """Rows of published tables whose columns are among ``suites``, shaped like
    :func:`vitabench.report.tables.matrix_table` rows with ``source="quoted"`` (rates as fractions,
    no intervals: the sources give no counts)."""
    from vitabench.api.protocol import load_protocol

    rows = []
    for table in tables:
        shared = [c for c in table.columns if c in suites]
        if not shared:
            continue
        for row in table.rows:
            protocol = row.protocol
            if protocol != AS_REPORTED:
                protocol = f"{load_protocol(protocol).ref} (as reported)"
            out: dict[str, Any] = {"label": f"{row.method} (quoted)", "protocol": protocol, "source": "quoted"}
            for suite in suites:
                value = row.values[table.columns.index(suite)] / 100 if suite in table.columns else math.nan
                out.update({suite: value, f"{suite}:low": math.nan, f"{suite}:high": math.nan,
                            f"{suite}:ok": 0, f"{suite}:errors": 0})
            present = [out[s] for s in suites if not math.isnan(out[s])]
            out.update({"Average": sum(present) / len(present), "n_suites": len(present),
                        "overall": math.nan, "overall:low": math.nan, "overall:high": math.nan,
                        "table_columns": len(table.columns),
                        "stated_average": None if row.stated_average is None else row.stated_average / 100,
                        "episodes": 0, "ok": 0, "errors": 0})
            rows.append(out)
    return pd.DataFrame(rows)
