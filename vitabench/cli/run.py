"""``vitabench run``: evaluate a policy on a suite; resumable, parallel, every episode recorded.

Exit codes: 0 every episode ``ok``; 2 bad input (nothing written); 3 the run finished but some
episodes errored (their records say why; ``--resume`` retries them); 130 interrupted (the
records written so far are complete; ``--resume`` continues).
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from vitabench.cli.common import CliError

if TYPE_CHECKING:
    from vitabench.runner.ray_executor import RayExecutor

EXIT_EPISODES_ERRORED = 3


def parse_tasks(text: str | None) -> list[int] | None:
    """``"0,3"`` or ``"0-4,7"`` -> task ids; ``None`` means every task."""
    if text is None:
        return None
    ids: list[int] = []
    try:
        for part in text.split(","):
            start, sep, end = part.strip().partition("-")
            ids.extend(range(int(start), int(end) + 1) if sep else [int(start)])
    except ValueError:
        raise CliError(f"--tasks {text!r}; accepted: comma-separated task ids or ranges, e.g. 0,3 or 0-4") from None
    if not ids or len(set(ids)) != len(ids):
        raise CliError(f"--tasks {text!r}: give each task id once")
    return ids


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _ray_executor(executor: str, workers: int, address: str | None, worker_cpus: float) -> "RayExecutor | None":
    """The connected Ray executor of ``--executor ray`` (``None``: the local one); joins or
    starts Ray before the run directory is touched, so a bad address writes nothing."""
    if executor not in ("local", "ray"):
        raise CliError(f"--executor {executor!r}; accepted: local, ray")
    if executor == "local":
        if address is not None:
            raise CliError("--ray-address needs --executor ray")
        return None
    from vitabench.runner.ray_executor import RayExecutor

    ray_executor = RayExecutor(workers, address, worker_cpus=worker_cpus)
    ray_executor.connect()
    return ray_executor


def run(
    policy: Optional[str] = typer.Option(None, "--policy", help="Registered policy name (vitabench list policies)."),
    policy_arg: list[str] = typer.Option([], "--policy-arg", help="KEY=VALUE policy argument (JSON value or string); repeatable."),
    policy_config: Optional[Path] = typer.Option(None, "--policy-config", help="TOML or JSON file of policy arguments (--policy-arg overrides)."),
    suite: Optional[str] = typer.Option(None, "--suite", help="Suite name (vitabench list suites)."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Task ids, e.g. 0,3 or 0-4 (default: all)."),
    episodes_per_task: Optional[int] = typer.Option(None, "--episodes-per-task", help="Default: the protocol's."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="Protocol preset name or .toml/.json file (default: standard; real_robot for a real-robot suite)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Override every step limit (derived protocol)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override the protocol's base seed (derived protocol)."),
    domain: Optional[str] = typer.Option(None, "--domain", help="Visual domain NAME or SET/NAME, or a SET run whole in one manifest (vitabench list domains; derived protocol)."),
    init_states: Optional[str] = typer.Option(None, "--init-states", help="Init states episodes cycle through, e.g. 0-19 (derived protocol)."),
    workers: int = typer.Option(1, "--workers", help="Environment worker processes."),
    executor: str = typer.Option("local", "--executor", help="local (processes on this machine) | ray (Ray actors)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="With --executor ray: auto | HOST:PORT (default: start Ray here)."),
    ray_worker_cpus: float = typer.Option(1.0, "--ray-worker-cpus", help="With --executor ray: CPUs each env actor reserves."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/<policy>-<suite>-<UTC time>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out: run missing and errored episodes."),
    video: str = typer.Option("none", "--video", help="none | failures | sample:K | all."),
    step_timeout: Optional[float] = typer.Option(None, "--step-timeout", help="Seconds a worker may take per step before it is replaced (default: 60)."),
    label: Optional[str] = typer.Option(None, "--label", help="Name of this run in reports."),
    quiet: bool = typer.Option(False, "--quiet", help="Print only the final summary."),
    robot: Optional[str] = typer.Option(None, "--robot", help="Real robot of a real-robot suite: franka | piper."),
    robot_arg: list[str] = typer.Option([], "--robot-arg", help="KEY=VALUE robot argument (JSON value or string), e.g. host=172.16.0.2; repeatable."),
) -> None:
    """Evaluate POLICY on SUITE; records go to OUT/episodes.jsonl as each episode ends.

    ``--resume --out DIR`` alone continues DIR with the policy, suite, tasks, episodes, protocol
    and robot stored in DIR/run.json; any of them given explicitly must match it.
    """
    from vitabench.cli.policy_options import parse_policy_args
    from vitabench.robots.driver import parse_robot_args
    from vitabench.runner import errored_records, print_summary, run_evaluation
    from vitabench.runner.resume import stored_arguments

    if resume and out is None:
        raise CliError("--resume needs --out DIR (the run directory to continue)")
    stored: dict = stored_arguments(out) if resume and out is not None and (out / "run.json").exists() else {}
    if policy is None and not stored:
        raise CliError("--policy is required (unless --resume continues a run directory)")
    if suite is None and not stored:
        raise CliError("--suite is required (unless --resume continues a run directory)")
    args = parse_policy_args(policy_arg, policy_config) if policy is not None or policy_arg or policy_config else stored["policy_args"]
    task_ids = parse_tasks(tasks) if tasks is not None else stored.get("tasks")
    own_protocol = protocol is not None or max_steps is not None or seed is not None or domain is not None or init_states is not None
    robot = robot or stored.get("robot")
    robot_args = parse_robot_args(robot_arg) if robot_arg else stored.get("robot_args")
    if out is None:
        out = Path("runs") / f"{policy}-{suite}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    ray_executor = _ray_executor(executor, workers, ray_address, ray_worker_cpus)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        result = run_evaluation(
            policy or stored["policy_name"],
            args,
            suite or stored["suite"],
            tasks=task_ids,
            episodes_per_task=episodes_per_task if episodes_per_task is not None else stored.get("episodes_per_task"),
            protocol=stored["protocol"] if stored and not own_protocol else protocol,
            max_steps=max_steps,
            seed=seed,
            domain=domain,
            init_states=init_states,
            workers=workers,
            out=out,
            resume=resume,
            video=video,
            quiet=quiet,
            label=label,
            step_timeout=step_timeout,
            argv=sys.argv,
            robot=robot,
            robot_args=robot_args,
            executor=ray_executor,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
        if ray_executor is not None:
            ray_executor.shutdown()
    print_summary(result)
    run_dir = result.run_dir
    errors = errored_records(run_dir)
    if errors:
        raise CliError(
            f"{len(errors)} episode(s) errored (first: {errors[0].episode_id}: {errors[0].error}); "
            f"see {run_dir / 'episodes.jsonl'} (a raised error's traceback is in its record's extra.traceback), retry with --resume --out {run_dir}",
            exit_code=EXIT_EPISODES_ERRORED,
        )
