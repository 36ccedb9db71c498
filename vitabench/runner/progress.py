"""The live progress display: one bar overall and one per task, live success rate, errors, ETA."""

from __future__ import annotations

from typing import Iterable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from vitabench.api.episode import EpisodeRecord
from vitabench.runner.summary import Tally, format_rate


class LiveProgress:
    """A rich progress display fed with each record as its episode ends."""

    def __init__(self, planned: dict[int, tuple[str, int]], done: Iterable[EpisodeRecord], console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[errors]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._tallies: dict[int | None, Tally] = {None: Tally("overall", planned=sum(n for _, n in planned.values()))}
        self._rows: dict[int | None, TaskID] = {}
        for task_id, (label, n) in sorted(planned.items()):
            self._tallies[task_id] = Tally(label[:48], planned=n)
        for key, t in self._tallies.items():
            self._rows[key] = self._progress.add_task(t.label, total=t.planned, rate="", errors="")
        for record in done:
            self.update(record)
        self._progress.start()

    def update(self, record: EpisodeRecord) -> None:
        for key in (None, record.task_id):
            if key not in self._tallies:
                continue
            t = self._tallies[key] = self._tallies[key].add(record)
            self._progress.update(
                self._rows[key],
                completed=t.scored + t.errors,
                rate=format_rate(t),
                errors=f"[red]{t.errors} errors[/red]" if t.errors else "",
            )

    def close(self) -> None:
        self._progress.stop()
