"""Ship a trained checkpoint with vitabench (``checkpoints/NAME``, ``vitabench list checkpoints``).

    # 1. the weights: fp16, the lineage extended by a "ship" stage
    .venv/bin/python scripts/ship_checkpoint.py weights runs/teacher/ckpt/r0 teacher_libero_object
    # (--into DIR writes DIR/NAME instead: an fp16 copy evaluated like a shipped one, not shipped)
    # 2. evaluate the shipped weights (vitabench run --policy-arg checkpoint=teacher_libero_object ...)
    # 3. the card: every run measured these exact weights (checked by hash); the first is the headline
    .venv/bin/python scripts/ship_checkpoint.py card teacher_libero_object RUN [RUN ...] --reproduce "COMMAND"

``card.json`` holds what ``vitabench list checkpoints`` shows (policy, suite, tasks, protocol,
init states, success with its Wilson 95% interval, episodes, the command that reproduces it) and
one row per run under ``evaluations``; the prose of the model card (README.md) is written by hand.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MAX_WEIGHTS_MB = 25


#: The model card's prose, written by hand beside the weights.
MODEL_CARD = "README.md"


def read_kind(source: Path) -> str | None:
    """The model kind a checkpoint directory's config names (None when it has no readable config)."""
    try:
        return json.loads((source / "config.json").read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def ship_weights(source: Path, name: str, into: Path = ROOT / "checkpoints") -> Path:
    """fp16 weights, config, spec, tokenizer and lineage of ``source`` in ``into/name`` (``checkpoints/name``)."""
    from vitabench.models.checkpoint import LINEAGE_FILE, WEIGHTS_FILE, load_model, read_lineage, resolve_checkpoint, save_checkpoint

    kind = "teacher" if read_kind(source) == "teacher" else "vita_vla"
    saved = resolve_checkpoint(source, kind)
    if kind == "teacher":
        from vitabench.models.teacher import TeacherConfig as config_class, TeacherModel as model_class
    else:
        from vitabench.models.student import StudentConfig as config_class, StudentModel as model_class
    model = load_model(saved, config_class, model_class.from_saved)
    target = into / name
    staging = target.with_name(f".{name}.shipping")  # the shipped checkpoint stays until this one is whole
    if staging.exists():
        shutil.rmtree(staging)
    weights_hash = save_checkpoint(model, staging, saved.spec, saved.protocol, half=True)
    size_mb = (staging / WEIGHTS_FILE).stat().st_size / 1e6
    if size_mb > MAX_WEIGHTS_MB:
        shutil.rmtree(staging)
        sys.exit(f"error: {name} weights are {size_mb:.1f} MB in fp16; shipped checkpoints hold at most {MAX_WEIGHTS_MB} MB")
    lineage = read_lineage(source)
    lineage["stages"].append({
        "stage": "ship", "data": [], "settings": {"dtype": "float16"},
        "options": {"source": str(source), "source_weights_hash": saved.weights_hash},
        "loss": None, "steps": 0, "wall_s": 0.0, "weights_hash": weights_hash,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    (staging / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2))
    card_kept = (target / MODEL_CARD).is_file()
    if card_kept:  # the hand-written model card, to be brought up to date; card.json measured the old weights
        shutil.copy2(target / MODEL_CARD, staging / MODEL_CARD)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    reminder = f"; update its {MODEL_CARD}, then write card.json" if card_kept else ""
    print(f"wrote {target} ({size_mb:.1f} MB, weights {weights_hash}){reminder}")
    return target


def run_summary(run_dir: Path, weights_hash: str) -> dict[str, Any]:
    """Success over every episode of a finished run of the shipped weights (errors count as failures)."""
    from vitabench.stats import wilson_interval
    from vitabench.runner.store import RunStore

    store = RunStore(run_dir)
    run = store.config()
    if run["policy"].get("checkpoint_hash") != weights_hash:
        sys.exit(f"error: {run_dir} measured weights {run['policy'].get('checkpoint_hash')}, not the shipped {weights_hash}")
    latest = {record.episode_id: record for record in store.records()}
    expected = [episode.episode_id for episode in store.manifest().episodes]
    missing = [e for e in expected if e not in latest]
    if missing:
        sys.exit(f"error: {run_dir} is unfinished: {len(missing)} of {len(expected)} episodes have no record")
    records = [latest[e] for e in expected]
    successes = sum(bool(r.success) for r in records)
    low, high = wilson_interval(successes, len(records))
    init_states = sorted({r.init_state_id for r in records})
    return {
        "run": str(run_dir), "label": run.get("label"), "suite": run["suite"], "tasks": sorted({r.task_id for r in records}),
        "protocol": "{name}@{version}#{hash}".format(**records[0].protocol), "init_states": f"{init_states[0]}-{init_states[-1]}",
        "successes": successes, "episodes": len(records), "success": round(successes / len(records), 4),
        "interval": [round(low, 6), round(high, 6)], "argv": " ".join(run["argv"][1:]),
    }


def write_card(name: str, runs: list[Path], reproduce: str) -> None:
    from vitabench.models.checkpoint import WEIGHTS_FILE, weights_hash

    target = ROOT / "checkpoints" / name
    shipped_hash = weights_hash(target / WEIGHTS_FILE)
    evaluations = [run_summary(run, shipped_hash) for run in runs]
    headline = evaluations[0]
    policy = json.loads((target / "config.json").read_text())["kind"]
    card = {
        "name": name, "policy": policy, "suite": headline["suite"], "tasks": headline["tasks"],
        "protocol": headline["protocol"], "init_states": headline["init_states"], "success": headline["success"],
        "interval": headline["interval"], "episodes": headline["episodes"], "reproduce": reproduce,
        "weights_hash": shipped_hash, "evaluations": evaluations,
    }
    (target / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    for row in evaluations:
        low, high = row["interval"]
        print(f"{row['label']}: {row['successes']}/{row['episodes']} = {100 * row['success']:.1f}% "
              f"[{100 * low:.1f}, {100 * high:.1f}] on init states {row['init_states']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    weights = commands.add_parser("weights", help="write checkpoints/NAME from a trained checkpoint directory")
    weights.add_argument("source", type=Path)
    weights.add_argument("name")
    weights.add_argument("--into", type=Path, default=ROOT / "checkpoints", help="the folder of NAME (default: checkpoints)")
    card = commands.add_parser("card", help="write checkpoints/NAME/card.json from evaluation runs of the shipped weights")
    card.add_argument("name")
    card.add_argument("runs", type=Path, nargs="+")
    card.add_argument("--reproduce", required=True, help="the command that reproduces the checkpoint and its headline run")
    args = parser.parse_args()
    from vitabench.api.errors import VitabenchError

    try:
        if args.command == "weights":
            ship_weights(args.source, args.name, args.into)
        else:
            write_card(args.name, args.runs, args.reproduce)
    except VitabenchError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
