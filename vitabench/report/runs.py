"""Loading run directories into one episode-level DataFrame the report tables are built from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from vitabench.api.errors import VitabenchError
from vitabench.api.suite import REAL_ROBOT_STEPS_KEY
from vitabench.models.checkpoint import untrained_backbone
from vitabench.runner.store import RunStore, records_frame

#: Canonical column order of the LIBERO suites; other suites follow alphabetically.
SUITE_ORDER: tuple[str, ...] = ("libero_spatial", "libero_object", "libero_goal", "libero_long", "libero_90")

EPISODE_COLUMNS = [
    "run_dir", "label", "protocol", "suite", "task_id", "task", "episode_id",
    "init_state_id", "seed", "domain", "status", "success", "error", "steps", "wall_s",
]


class ReportError(VitabenchError):
    """Run directories that cannot be reported or compared as asked."""


def protocol_ref(name: Any, version: Any, hash_: Any) -> str:
    """``name@version#hash``: the stamp that decides whether two numbers are comparable."""
    return f"{name}@{version}#{hash_}"


@dataclass(frozen=True)
class RunInfo:
    """What ``run.json`` says about a run, reduced to what reports show."""

    path: str
    label: str
    suite: str
    policy: str
    policy_args: Mapping[str, Any]
    protocol: str
    protocol_config: Mapping[str, Any]
    manifest_hash: str
    robot: str | None = None  # the real robot of a real-robot run

    @property
    def max_steps(self) -> int | None:
        """The protocol's step limit for this run's suite (a real-robot run: the protocol's cap,
        its ``real`` entry; each task may end sooner); ``None`` when the protocol has none."""
        limits = self.protocol_config.get("max_steps") or {}
        return limits.get(REAL_ROBOT_STEPS_KEY if self.robot else self.suite)


def default_label(config: Mapping[str, Any]) -> str:
    """``run.json``'s ``label``, else the policy name with its arguments."""
    if config.get("label"):
        return str(config["label"])
    policy = config.get("policy") or {}
    name = str(policy.get("name", "?"))
    args = policy.get("args") or {}
    if not args:
        return name
    return f"{name}(" + ",".join(f"{k}={v}" for k, v in sorted(args.items())) + ")"


def run_info(run_dir: str | Path) -> RunInfo:
    """Read ``run.json`` of ``run_dir`` (a :class:`ReportError` if it is not a run directory)."""
    store = RunStore(Path(run_dir))
    if not store.path.is_dir():
        raise ReportError(f"run directory {str(run_dir)!r} does not exist")
    config = store.config()
    protocol = dict(config.get("protocol") or {})
    policy = config.get("policy") or {}
    return RunInfo(
        path=str(run_dir),
        label=default_label(config),
        suite=str(config.get("suite", "?")),
        policy=str(policy.get("name", "?")),
        policy_args=dict(policy.get("args") or {}),
        protocol=protocol_ref(
            protocol.get("name"), protocol.get("version"), protocol.get("hash") or config.get("protocol_hash")
        ),
        protocol_config=protocol,
        manifest_hash=str(config.get("manifest_hash", "")),
        robot=(config.get("robot") or {}).get("name"),
    )


def suite_sort_key(suite: str) -> tuple[int, str]:
    return (SUITE_ORDER.index(suite), "") if suite in SUITE_ORDER else (len(SUITE_ORDER), suite)


def load_episodes(run_dirs: Iterable[str | Path], labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Every episode record of ``run_dirs`` as rows of :data:`EPISODE_COLUMNS`.

    ``label`` names the row a run lands in; when two directories would put the same suite
    under the same label and protocol, each gets its directory name appended, so results
    are never merged silently. ``labels`` (one per directory) replaces them as given.
    ``protocol`` is the record's own ``name@version#hash``.
    """
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise ReportError("no run directories given")
    if len(set(d.resolve() for d in dirs)) < len(dirs):
        raise ReportError(f"a run directory is given twice: {', '.join(map(str, dirs))}")
    infos = [run_info(d) for d in dirs]
    labels = _disambiguate(infos) if labels is None else list(labels)
    frames = []
    for info, run_dir, label in zip(infos, dirs, labels):
        frame = records_frame(run_dir)
        if frame.empty:
            continue
        frame = frame.assign(
            run_dir=str(run_dir),
            label=label,
            protocol=[
                protocol_ref(n, v, h)
                for n, v, h in zip(frame["protocol_name"], frame["protocol_version"], frame["protocol_hash"])
            ],
        )
        frames.append(frame[EPISODE_COLUMNS])
    if not frames:
        raise ReportError(f"none of {', '.join(map(str, dirs))} holds any episode record yet")
    episodes = pd.concat(frames, ignore_index=True)
    episodes["success"] = episodes["success"].astype("boolean")
    return episodes


def _disambiguate(infos: list[RunInfo]) -> list[str]:
    seen: dict[tuple[str, str, str], list[int]] = {}
    for index, info in enumerate(infos):
        seen.setdefault((info.label, info.protocol, info.suite), []).append(index)
    labels = [info.label for info in infos]
    for indices in seen.values():
        if len(indices) > 1:
            for index in indices:
                labels[index] = f"{infos[index].label} [{Path(infos[index].path).name}]"
    if len(set(zip(labels, (i.protocol for i in infos), (i.suite for i in infos)))) < len(infos):
        raise ReportError(
            "two run directories with the same folder name report the same suite, label and protocol: "
            + ", ".join(i.path for i in infos)
        )
    return labels


def completeness_notes(run_dirs: Iterable[str | Path], episodes: pd.DataFrame) -> list[str]:
    """One note per run whose manifest has episodes without a record (a run still going, or cut short);
    ``episodes`` is :func:`load_episodes` of the same directories."""
    notes = []
    recorded = episodes.groupby("run_dir")["episode_id"].agg(set).to_dict()
    for run_dir in run_dirs:
        planned = {e.episode_id for e in RunStore(Path(run_dir)).manifest().episodes}
        missing = len(planned - recorded.get(str(run_dir), set()))
        if missing:
            notes.append(
                f"INCOMPLETE: {run_dir} has records for {len(planned) - missing} of its {len(planned)} planned "
                "episodes; its rates cover the recorded ones only."
            )
    return notes


def protocols_frame(run_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """One row per protocol of ``run_dirs``: the choices that make its numbers what they are."""
    rows: dict[str, dict[str, Any]] = {}
    for run_dir in run_dirs:
        info = run_info(run_dir)
        config = info.protocol_config
        row = rows.setdefault(
            info.protocol,
            {
                "protocol": info.protocol,
                "description": config.get("description", ""),
                "max_steps": {},
                "settle_steps": config.get("settle_steps"),
                "resolution": config.get("resolution"),
                "image_orientation": config.get("image_orientation"),
                "seed": config.get("seed"),
                "episodes_per_task": config.get("episodes_per_task"),
                "derived_from": config.get("derived_from"),
                "runs": [],
            },
        )
        if info.max_steps is not None:
            row["max_steps"][info.suite] = info.max_steps
        row["runs"].append(info.path)
    frame = pd.DataFrame(list(rows.values()))
    frame["max_steps"] = frame["max_steps"].map(lambda m: json.dumps(m, sort_keys=True))
    frame["runs"] = frame["runs"].map(", ".join)
    return frame


def run_untrained_backbone(run_dir: str | Path) -> str | None:
    """The random-initialised VLM backbone (``cpu``, ...) the run's policy was distilled around,
    read from its first record's lineage; ``None`` for any other policy or a run without records."""
    first = next(RunStore(Path(run_dir)).iter_records(), None)
    return None if first is None else untrained_backbone(first.policy)


def untrained_backbone_notes(backbones: Mapping[str, str | None]) -> list[str]:
    """One note naming the rows (label -> backbone, ``None`` for none) whose student has a
    random-initialised VLM, and what that means for reading them; none when no row has one."""
    flagged = {label: backbone for label, backbone in backbones.items() if backbone}
    if not flagged:
        return []
    names = ", ".join(f"`{b}`" for b in sorted(set(flagged.values())))
    return [
        f"RANDOM-INITIALISED VLM: the student(s) {', '.join(flagged)} were distilled into a VLM built from scratch "
        f"(backbone {names}; no pretrained weights). A pretrained VLM (the paper's VITA-1.5, on a GPU) brings vision and language "
        "knowledge these lack: read their rates as the method's mechanics at this scale, not as the paper's setting."
    ]
