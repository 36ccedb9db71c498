"""Run directories with chosen outcomes, written through the real RunStore, for reporter tests.

The reporter reads records, never envs, so these runs are built from real suites, protocols
and manifests with outcomes set by the test; ``run.json`` has the layout ``run_evaluation``
writes (protocol dict without its hash, ``protocol_hash``/``protocol_ref`` beside it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from vitabench.api.episode import Episode, EpisodeRecord, build_manifest
from vitabench.api.protocol import Protocol, load_protocol
from vitabench.plugins import get_suite
from vitabench.runner.store import RunStore

Outcome = Callable[[Episode], "bool | None"]  # None = the episode errored


def write_run(
    out: Path,
    policy: str,
    suite: str,
    outcome: Outcome,
    *,
    protocol: str | Protocol = "standard",
    tasks: Sequence[int] = (0, 1),
    episodes_per_task: int = 10,
    args: dict | None = None,
    label: str | None = None,
    robot: str | None = None,
    lineage: dict | None = None,
) -> Path:
    proto = load_protocol(protocol) if isinstance(protocol, str) else protocol
    suite_obj = get_suite(suite)
    manifest = build_manifest(suite_obj, proto, task_ids=tasks, episodes_per_task=episodes_per_task)
    policy_record = {"name": policy, "args": dict(args or {}), "checkpoint_hash": None,
                     **({"lineage": lineage} if lineage is not None else {})}
    store = RunStore(out)
    store.create(
        {
            "label": label,
            "suite": suite_obj.name,
            "episodes_per_task": episodes_per_task,
            "policy": policy_record,
            "protocol": proto.to_dict(),
            "protocol_ref": proto.ref,
            "protocol_hash": proto.hash,
            "manifest_hash": manifest.hash,
            **({"robot": {"name": robot, "args": {}}} if robot is not None else {}),
        },
        manifest,
    )
    for episode in manifest.episodes:
        success = outcome(episode)
        store.append(
            EpisodeRecord(
                episode_id=episode.episode_id,
                suite=episode.suite,
                task_id=episode.task_id,
                task=episode.task,
                instruction=suite_obj.task(episode.task_id).instruction,
                init_state_id=episode.init_state_id,
                seed=episode.seed,
                success=success,
                steps=5,
                wall_s=0.01,
                status="error" if success is None else "ok",
                error="RuntimeError: simulated crash" if success is None else None,
                policy=policy_record,
                protocol={"name": proto.name, "version": proto.version, "hash": proto.hash},
                manifest_hash=manifest.hash,
                domain=episode.domain or proto.domain_ref,
            )
        )
    return out


def first_k(k: int) -> Outcome:
    """Success for the first ``k`` episodes of every task, failure after."""
    return lambda episode: episode.index < k
