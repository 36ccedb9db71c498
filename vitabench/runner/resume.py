"""The resume rules of a run directory.

* a directory that already holds files is used only with ``resume=True``, and only if its
  policy (name, arguments, checkpoint hash), protocol hash, manifest hash and robot (its name;
  its arguments, e.g. a host address, may change) are those of this run; anything else is
  refused naming what differs;
* a resumed run executes the episodes with no record and the episodes whose latest record is an
  ``error`` (errors are infrastructure failures worth retrying); the errored record stays in
  ``episodes.jsonl`` as history and the newer record supersedes it (``RunStore.records``);
* ``resume=True`` on a missing or empty directory starts the run;
* a directory another run is writing to (it holds ``DIR/.lock``) is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Any, Iterator, Mapping

from vitabench.api.episode import Episode, Manifest
from vitabench.api.protocol import Protocol
from vitabench.runner.plan import ResolvedRun, canonical_json
from vitabench.runner.store import RunDirError, RunStore

LOCK_FILE = ".lock"


def occupied(out: Path, resume: bool) -> bool:
    """Whether ``out`` holds a run to continue (``False``: a new run starts there); refuses a file,
    a non-empty directory without ``resume``, and a non-empty directory that holds no run."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {str(out)!r} is a file, not a directory")
    if not (out.exists() and any(out.iterdir())):
        return False
    if not resume:
        raise RunDirError(f"--out {str(out)!r} is not empty; pass --resume to continue the run in it, or choose another --out")
    if not RunStore(out).exists():
        raise RunDirError(f"--out {str(out)!r} is not empty and holds no vitabench run (no run.json); choose another --out")
    return True


def check_resumable(store: RunStore, run: ResolvedRun) -> None:
    """Refuse, in one line, a run directory made with another policy, protocol, manifest or robot."""
    config = store.config()
    where = str(store.path)
    old_policy = {k: config.get("policy", {}).get(k) for k in ("name", "args")}
    new_policy = {k: run.policy[k] for k in ("name", "args")}
    if canonical_json(old_policy) != canonical_json(new_policy):
        raise RunDirError(
            f"{where} holds a run of policy {canonical_json(old_policy)}, not {canonical_json(new_policy)}; "
            "resume with the same --policy/--policy-arg or choose another --out"
        )
    _check_protocol(store, config, run.protocol)
    _check_manifest(store, config, run.manifest)
    old_robot, new_robot = (r["name"] if r else None for r in (config.get("robot"), run.robot))
    if old_robot != new_robot:
        raise RunDirError(
            f"{where} holds a run on robot {old_robot}, not {new_robot}; "
            "resume with the same --robot (or none: the run's own is used) or choose another --out"
        )


def _check_protocol(store: RunStore, config: Mapping[str, Any], protocol: Protocol) -> None:
    if config.get("protocol_hash") != protocol.hash:
        raise RunDirError(
            f"{store.path} holds a run under protocol {config.get('protocol_ref')}, not {protocol.ref}; "
            "resume with the same --protocol/--max-steps/--seed or choose another --out"
        )


def _check_manifest(store: RunStore, config: Mapping[str, Any], manifest: Manifest) -> None:
    if config.get("manifest_hash") != manifest.hash:
        old = config.get("selection", {})
        new = {"suite": manifest.suite, "tasks": sorted({e.task_id for e in manifest.episodes}), "episodes": len(manifest.episodes)}
        raise RunDirError(
            f"{store.path} holds manifest {config.get('manifest_hash')} ({canonical_json(old)}), not {manifest.hash} "
            f"({canonical_json(new)}); resume with the same --suite/--tasks/--episodes-per-task or choose another --out"
        )


def check_checkpoint(store: RunStore, checkpoint_hash: str | None) -> None:
    """Refuse to continue a run whose policy now loads another checkpoint."""
    old = store.config().get("policy", {}).get("checkpoint_hash")
    if old != checkpoint_hash:
        raise RunDirError(
            f"{store.path} holds a run of checkpoint {old}, but the policy now loads checkpoint {checkpoint_hash}; "
            "choose another --out"
        )


def stored_arguments(run_dir: str | Path) -> dict[str, Any]:
    """The run-defining arguments of an existing run directory, to resume it without repeating them:
    ``policy_name``, ``policy_args``, ``suite``, ``tasks``, ``episodes_per_task``, ``protocol``
    (the exact :class:`Protocol` it ran under, derivations included), and ``robot`` /
    ``robot_args`` (``None`` for a simulated run)."""
    store = RunStore(Path(run_dir))
    config = store.config()
    tasks = sorted({e.task_id for e in store.manifest().episodes})
    robot = config.get("robot")
    return {
        "policy_name": config["policy"]["name"],
        "policy_args": config["policy"]["args"],
        "suite": config["suite"],
        "tasks": tasks,
        "episodes_per_task": config["episodes_per_task"],
        "protocol": Protocol.from_dict(config["protocol"], source=str(Path(run_dir) / "run.json")),
        "robot": None if robot is None else robot["name"],
        "robot_args": None if robot is None else dict(robot["args"]),
    }


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


def pending_episodes(store: RunStore, manifest: Manifest) -> list[Episode]:
    """Episodes of ``manifest`` with no record or whose latest record is an error."""
    latest = {r.episode_id: r for r in store.records()}
    return [e for e in manifest.episodes if e.episode_id not in latest or latest[e.episode_id].status == "error"]
