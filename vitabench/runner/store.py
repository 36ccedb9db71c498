"""The run directory: config, manifest and per-episode records, durable as each episode ends.

Layout of ``DIR``::

    run.json        the run's config: suite, policy, protocol (full), manifest hash, versions, git commit
    manifest.json   every episode of the run, decided before any rollout
    episodes.jsonl  one EpisodeRecord per line, appended and fsynced as each episode ends
    episodes.parquet  the latest record of each episode as a table, rewritten at the end of each
                    ``vitabench run`` session (``vitabench.runner.export_parquet``)
    videos/         optional mp4s named ``<episode>__<outcome>.mp4``

Appends are whole lines written with one ``write`` and fsynced; a line torn by a crash (no
trailing newline) is ignored on load and cut off before the next append.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from vitabench.api.config import read_json
from vitabench.api.episode import EpisodeRecord, Manifest
from vitabench.api.errors import VitabenchError

RUN_FILE = "run.json"
MANIFEST_FILE = "manifest.json"
RECORDS_FILE = "episodes.jsonl"


class RunDirError(VitabenchError):
    """A run directory that is missing, unreadable, or belongs to another run."""


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@dataclass
class RunStore:
    """Append-only record store of one run directory."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def records_path(self) -> Path:
        return self.path / RECORDS_FILE

    def exists(self) -> bool:
        return (self.path / RUN_FILE).exists()

    def create(self, config: Mapping[str, Any], manifest: Manifest) -> None:
        """Write ``run.json`` and ``manifest.json`` of a new run (the directory may exist empty)."""
        self.path.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.path / MANIFEST_FILE, json.dumps(manifest.to_dict(), indent=1))
        _write_atomic(self.path / RUN_FILE, json.dumps(dict(config), indent=2, sort_keys=True, default=str))

    def config(self) -> dict[str, Any]:
        return self._read_json(RUN_FILE)

    def manifest(self) -> Manifest:
        return Manifest.from_dict(self._read_json(MANIFEST_FILE))

    def _read_json(self, name: str) -> dict[str, Any]:
        file = self.path / name
        if not file.is_file():
            raise RunDirError(f"{str(self.path)!r} is not a vitabench run directory (no {name})")
        return read_json(file, "run file", RunDirError)

    def repair(self) -> int:
        """Cut a torn last line (left by a crash mid-write); return the bytes removed."""
        if not self.records_path.exists():
            return 0
        with open(self.records_path, "rb+") as handle:
            data = handle.read()
            keep = data.rfind(b"\n") + 1
            if keep == len(data):
                return 0
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
            return len(data) - keep

    def append(self, record: EpisodeRecord) -> None:
        """Append one record as one line, flushed and fsynced before returning."""
        line = (record.to_json() + "\n").encode()
        fd = os.open(self.records_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def iter_records(self) -> Iterator[EpisodeRecord]:
        """Complete records in file order (a torn trailing line is skipped)."""
        if not self.records_path.exists():
            return
        with open(self.records_path) as handle:
            for number, line in enumerate(handle, 1):
                if not line.endswith("\n"):
                    return
                try:
                    yield EpisodeRecord.from_dict(json.loads(line))
                except (json.JSONDecodeError, TypeError) as exc:
                    raise RunDirError(f"{str(self.records_path)!r} line {number} is not a record: {exc}") from None

    def records(self) -> list[EpisodeRecord]:
        """The latest record of each episode (a resumed run may re-record an errored one)."""
        latest: dict[str, EpisodeRecord] = {}
        for record in self.iter_records():
            latest[record.episode_id] = record
        return list(latest.values())

    def done_ids(self) -> set[str]:
        """Episodes that have a record of any status."""
        return {r.episode_id for r in self.iter_records()}


def records_frame(run_dir: str | Path) -> "pandas.DataFrame":  # noqa: F821
    """All records of a run as a DataFrame; ``policy`` and ``protocol`` flattened into columns."""
    import pandas as pd

    store = RunStore(Path(run_dir))
    config = store.config()
    rows = []
    for record in store.records():
        row = {k: v for k, v in record.__dict__.items() if k not in ("policy", "protocol", "worker", "extra")}
        row["policy_name"] = record.policy.get("name")
        row["policy_args"] = json.dumps(record.policy.get("args", {}), sort_keys=True)
        row["checkpoint_hash"] = record.policy.get("checkpoint_hash")
        row["protocol_name"] = record.protocol.get("name")
        row["protocol_version"] = record.protocol.get("version")
        row["protocol_hash"] = record.protocol.get("hash")
        row["run_dir"] = str(run_dir)
        row["run_label"] = config.get("label") or record.policy.get("name")
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["success"] = frame["success"].astype("boolean")
    return frame
