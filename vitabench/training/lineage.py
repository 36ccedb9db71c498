"""Where a checkpoint came from: writing ``lineage.json`` next to its weights (read by
``vitabench.models.checkpoint.read_lineage``).

It lists the stages that made the weights, oldest first (teacher training, stage-1 alignment,
stage-2 fine-tuning), each with its data files (path, sha256, demo count), settings, options,
first/last loss and wall time, plus the teacher and backbone a student was built from, and the
variant name (``teacher``, ``align``, ``two-stage``, ``only-ft``, ``freeze-vlm``,
``no-state-encoder``, ``no-action-token``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from vitabench.models.checkpoint import LINEAGE_FILE
from vitabench.training.data import DatasetInfo


def stage_record(
    stage: str,
    *,
    data: Sequence[DatasetInfo],
    settings: Any,
    options: Mapping[str, Any],
    result: Any,
    weights_hash: str,
) -> dict[str, Any]:
    """One stage of a checkpoint's history."""
    return {
        "stage": stage,
        "data": [info.to_dict() for info in data],
        "settings": dataclasses.asdict(settings),
        "options": dict(options),
        "loss": result.summary(),
        "steps": result.steps,
        "wall_s": round(result.wall_s, 1),
        "weights_hash": weights_hash,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_lineage(
    directory: Path,
    *,
    kind: str,
    variant: str,
    stages: Sequence[Mapping[str, Any]],
    teacher: Mapping[str, Any] | None = None,
    backbone: str | None = None,
) -> dict[str, Any]:
    """Write ``lineage.json``; returns what was written."""
    from vitabench.provenance import git_commit

    record = {
        "kind": kind,
        "variant": variant,
        "stages": list(stages),
        "teacher": None if teacher is None else dict(teacher),
        "backbone": backbone,
        "git": git_commit(),
    }
    (directory / LINEAGE_FILE).write_text(json.dumps(record, indent=2))
    return record
