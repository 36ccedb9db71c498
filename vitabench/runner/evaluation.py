"""``run_evaluation``: plan a run, check it against its directory, execute it, record every episode.

The concerns live apart: the plan (:mod:`vitabench.runner.plan`: suite, protocol, manifest,
robot), the resume rules (:mod:`vitabench.runner.resume`), provenance (:mod:`vitabench.provenance`:
versions and git), execution (an :class:`Executor`) and recording (:class:`RunStore`, appended
and fsynced per episode). ``run_evaluation`` returns a :class:`RunResult`; printing it is the
caller's choice (``vitabench run`` prints :func:`~vitabench.runner.summary.print_summary`).
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from vitabench.api.episode import Episode, EpisodeRecord
from vitabench.api.errors import VitabenchError
from vitabench.api.policy import Policy, PolicyInfo, PolicySpec, policy_provenance
from vitabench.api.protocol import Protocol, check_trained_protocol
from vitabench.provenance import git_commit, package_versions
from vitabench.runner.executor import EpisodeResult, Executor, LocalExecutor, RunPlan
from vitabench.runner.plan import ResolvedRun, canonical_json, resolve_run
from vitabench.runner.resume import check_checkpoint, check_resumable, exclusive, occupied, pending_episodes
from vitabench.runner.store import RunStore, records_frame
from vitabench.runner.summary import Tally, tally
from vitabench.runner.video import VideoWriter

PARQUET_FILE = "episodes.parquet"


@dataclass(frozen=True)
class RunResult:
    """A finished run session: its directory and its tallies (per task and overall), with the
    title a summary table carries."""

    run_dir: Path
    title: str
    tasks: tuple[Tally, ...]
    overall: Tally

    @property
    def errors(self) -> int:
        """Episodes of the run whose latest record is an error."""
        return self.overall.errors


def run_evaluation(
    policy_name: str,
    policy_args: Mapping[str, Any],
    suite: str,
    *,
    tasks: Sequence[int] | None = None,
    episodes_per_task: int | None = None,
    protocol: str | Protocol | None = None,
    max_steps: int | None = None,
    seed: int | None = None,
    domain: str | None = None,
    init_states: str | None = None,
    workers: int = 1,
    out: Path,
    resume: bool = False,
    video: str = "none",
    quiet: bool = True,
    label: str | None = None,
    step_timeout: float | None = None,
    executor: Executor | None = None,
    argv: Sequence[str] | None = None,
    robot: str | None = None,
    robot_args: Mapping[str, Any] | None = None,
) -> RunResult:
    """Evaluate a registered policy on a suite; every episode's record is durable as it ends.

    ``protocol`` ``None`` is the suite's default (``standard``; ``real_robot`` for a real-robot
    suite), ``step_timeout`` ``None`` :data:`~vitabench.runner.executor.DEFAULT_STEP_TIMEOUT_S`.
    Bad inputs raise :class:`VitabenchError` before anything is written. ``quiet=False`` shows
    live progress; nothing else is printed (an interrupted run says on stderr how to continue). Errored episodes are recorded with ``status="error"`` (see
    :func:`errored_records`), never raised. Environment workers are started with ``spawn``: in a
    script, call this under ``if __name__ == "__main__":``.
    """
    out = Path(out)
    run = resolve_run(
        policy_name, policy_args, suite, tasks=tasks, episodes_per_task=episodes_per_task, protocol=protocol,
        max_steps=max_steps, seed=seed, domain=domain, init_states=init_states, workers=workers,
        step_timeout=step_timeout, video=video, out=out, robot=robot, robot_args=robot_args,
    )
    store = RunStore(out)
    resuming = occupied(out, resume)
    if resuming:
        check_resumable(store, run)
    policy = _build_policy(run)
    policy_record = PolicyInfo(run.policy["name"], run.policy["args"], policy_provenance(policy)).to_dict()
    with exclusive(out):
        if resuming:
            check_checkpoint(store, policy_record["checkpoint_hash"])
            store.repair()
        todo = pending_episodes(store, run.manifest) if resuming else list(run.manifest.episodes)
        session = {
            "started_at": _now(),
            "argv": list(argv if argv is not None else sys.argv),
            "workers": workers,
            "video": str(run.video),
            "step_timeout_s": run.step_timeout,
            "episodes_to_run": len(todo),
            "host": platform.node(),
            "python": platform.python_version(),
            "versions": package_versions(),
            "git": git_commit(),
        }
        store.create(_run_config(store, run, policy_record, session, label, resuming), run.manifest)
        plan = RunPlan(
            suite=run.suite,
            protocol=run.protocol,
            spec=getattr(policy, "spec", None) or PolicySpec(),
            step_timeout=run.step_timeout,
            video=run.video,
            env_kwargs=run.env_kwargs,
        )
        _execute(run, plan, policy, policy_record, todo, store, out, executor or LocalExecutor(workers), quiet)
        task_tallies, overall = tally(store.records(), _planned(run))
        try:
            export_parquet(out)
        except ImportError as exc:  # a broken pyarrow must not fail a finished run
            print(f"warning: {PARQUET_FILE} not written ({type(exc).__name__}: {str(exc).splitlines()[0]})", file=sys.stderr)
        title = f"{run.policy['name']} on {run.suite.name} ({run.protocol.ref}) - {out}"
        return RunResult(out, title, tuple(task_tallies), overall)


def _build_policy(run: ResolvedRun) -> Policy:
    """The policy instance, checked against the protocol it was trained under."""
    from vitabench.plugins import make_policy

    name, args = run.policy["name"], run.policy["args"]
    try:
        policy = make_policy(name, **args)
    except TypeError as exc:
        raise VitabenchError(f"policy {name!r} rejected its arguments {canonical_json(args)}: {exc}") from None
    check_trained_protocol(policy_provenance(policy).trained_protocol, run.protocol)
    return policy


def _run_config(
    store: RunStore, run: ResolvedRun, policy_record: Mapping[str, Any], session: Mapping[str, Any],
    label: str | None, resuming: bool,
) -> dict[str, Any]:
    """``run.json``: the run's definition, the session that created it, and every session since."""
    previous = store.config() if resuming else {}
    sessions = previous.get("sessions", [])
    first = sessions[0] if sessions else session
    manifest, protocol = run.manifest, run.protocol
    config: dict[str, Any] = {
        "format": 1,
        "label": label if label is not None or not resuming else previous.get("label"),
        "suite": run.suite.name,
        "selection": {"suite": manifest.suite, "tasks": sorted({e.task_id for e in manifest.episodes}), "episodes": len(manifest.episodes)},
        "episodes_per_task": len(manifest.episodes) // max(1, len(manifest.by_task()) * len(protocol.episode_domains)),
        "policy": dict(policy_record),
        "protocol": protocol.to_dict(),
        "protocol_ref": protocol.ref,
        "protocol_hash": protocol.hash,
        "manifest_hash": manifest.hash,
        "created_at": previous.get("created_at") if resuming else _now(),
        # the session that created the run; every session (resumes included) is in "sessions"
        "argv": first["argv"],
        "versions": first["versions"],
        "git": first["git"],
        "sessions": [*sessions, dict(session)],
    }
    if run.robot is not None:
        config["robot"] = run.robot
    return config


def _planned(run: ResolvedRun) -> dict[int, tuple[str, int]]:
    """Task id -> (summary label, episodes planned)."""
    return {
        task_id: (f"t{task_id:03d} {run.suite.task(task_id).name}", len(episodes))
        for task_id, episodes in run.manifest.by_task().items()
    }


def _execute(
    run: ResolvedRun, plan: RunPlan, policy: Policy, policy_record: Mapping[str, Any], todo: list[Episode],
    store: RunStore, out: Path, executor: Executor, quiet: bool,
) -> None:
    """Run ``todo`` on ``executor``, appending each episode's record as it ends."""
    manifest, protocol = run.manifest, run.protocol
    protocol_stamp = {"name": protocol.name, "version": protocol.version, "hash": protocol.hash}
    display = None
    if not quiet:
        from vitabench.runner.progress import LiveProgress

        display = LiveProgress(_planned(run), [r for r in store.records() if r.status == "ok"])
    writer = VideoWriter(out, run.video, fps=protocol.control_freq) if run.video.kind != "none" else None

    def record(result: EpisodeResult) -> None:
        episode = result.episode
        entry = EpisodeRecord(
            episode_id=episode.episode_id,
            suite=episode.suite,
            task_id=episode.task_id,
            task=episode.task,
            instruction=run.suite.task(episode.task_id).instruction,
            init_state_id=episode.init_state_id,
            seed=episode.seed,
            success=result.success,
            steps=result.steps,
            wall_s=result.wall_s,
            status=result.status,
            error=result.error,
            policy=dict(policy_record),
            protocol=protocol_stamp,
            manifest_hash=manifest.hash,
            worker=result.worker,
            video=result.video,
            finished_at=time.time(),
            extra=result.extra,
            domain=episode.domain or protocol.domain_ref,
        )
        store.append(entry)
        if display is not None:
            display.update(entry)

    try:
        executor.run(plan, policy, todo, record, writer)
    except KeyboardInterrupt:
        if display is not None:
            display.close()
            display = None
        done = len(store.done_ids() & {e.episode_id for e in manifest.episodes})
        print(f"interrupted: {done}/{len(manifest.episodes)} episodes recorded in {out}; continue with --resume", file=sys.stderr)
        raise
    finally:
        if display is not None:
            display.close()
        if writer is not None:
            writer.close()


def export_parquet(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Write the run's records (latest per episode) to Parquet; default ``RUN_DIR/episodes.parquet``."""
    target = Path(path) if path is not None else Path(run_dir) / PARQUET_FILE
    records_frame(run_dir).to_parquet(target, index=False)
    return target


def errored_records(run_dir: str | Path) -> list[EpisodeRecord]:
    """Episodes of a run whose latest record is an error."""
    return [r for r in RunStore(Path(run_dir)).records() if r.status == "error"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
