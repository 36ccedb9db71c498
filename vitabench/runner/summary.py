"""The end-of-run summary: success per task and overall with 95% Wilson intervals and error counts.

Errored episodes are excluded from the success denominator (they are neither successes nor
failures) and shown in their own column, so a rate never hides them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from rich.console import Console
from rich.table import Table

from vitabench.api.episode import EpisodeRecord
from vitabench.stats import wilson_interval

if TYPE_CHECKING:
    from vitabench.runner.evaluation import RunResult


@dataclass(frozen=True)
class Tally:
    """Counts of one task (or of the whole run)."""

    label: str
    successes: int = 0
    failures: int = 0
    errors: int = 0
    planned: int = 0

    @property
    def scored(self) -> int:
        """Episodes that count in the denominator (``ok`` ones)."""
        return self.successes + self.failures

    @property
    def rate(self) -> float | None:
        return self.successes / self.scored if self.scored else None

    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.scored, confidence=0.95)

    def add(self, record: EpisodeRecord) -> Tally:
        if record.status == "error":
            return Tally(self.label, self.successes, self.failures, self.errors + 1, self.planned)
        if record.success:
            return Tally(self.label, self.successes + 1, self.failures, self.errors, self.planned)
        return Tally(self.label, self.successes, self.failures + 1, self.errors, self.planned)


def tally(records: Iterable[EpisodeRecord], planned: dict[int, tuple[str, int]]) -> tuple[list[Tally], Tally]:
    """Per-task tallies (``planned``: task id -> (label, episodes planned)) and the overall one."""
    tasks = {task_id: Tally(label, planned=n) for task_id, (label, n) in planned.items()}
    overall = Tally("overall", planned=sum(n for _, n in planned.values()))
    for record in records:
        if record.task_id in tasks:
            tasks[record.task_id] = tasks[record.task_id].add(record)
            overall = overall.add(record)
    return [tasks[t] for t in sorted(tasks)], overall


def format_rate(t: Tally) -> str:
    if t.rate is None:
        return "-"
    low, high = t.interval()
    return f"{100 * t.rate:5.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def summary_table(tasks: list[Tally], overall: Tally, title: str) -> Table:
    table = Table(title=title, caption="95% Wilson intervals; errored episodes are not in the denominator")
    for column, justify in (("task", "left"), ("success", "right"), ("rate [95% CI]", "right"), ("errors", "right"), ("done", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for t in [*tasks, overall]:
        done = t.scored + t.errors
        table.add_row(
            t.label,
            f"{t.successes}/{t.scored}",
            format_rate(t),
            f"[red]{t.errors}[/red]" if t.errors else "0",
            f"{done}/{t.planned}",
            end_section=t is tasks[-1],
        )
    return table


def print_summary(result: RunResult, console: Console | None = None) -> None:
    """Print a run's summary table (to stdout unless ``console`` says otherwise)."""
    (console or Console()).print(summary_table(list(result.tasks), result.overall, result.title))
