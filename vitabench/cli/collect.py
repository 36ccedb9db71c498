"""``vitabench collect``: demonstrations from a policy on real LIBERO episodes, as LIBERO-format HDF5."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vitabench.cli.common import CliError


def collect(
    policy: str = typer.Option("scripted", "--policy", help="Registered policy name (usually the scripted expert)."),
    policy_arg: list[str] = typer.Option([], "--policy-arg", help="KEY=VALUE policy argument (JSON value or string); repeatable."),
    suite: str = typer.Option(..., "--suite", help="LIBERO suite name."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Task ids, e.g. 0,3 or 0-4 (default: all)."),
    episodes: int = typer.Option(..., "--episodes", help="Episodes run per task; only successful ones are kept."),
    first_init_state: int = typer.Option(0, "--first-init-state", help="Episode k of a task starts from init state FIRST+k."),
    protocol: str = typer.Option("distill_64", "--protocol", help="Protocol preset or file: cameras, resolution, settle steps, step limit."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Override every step limit (derived protocol)."),
    out: Path = typer.Option(..., "--out", help="New HDF5 file to write."),
) -> None:
    """Run POLICY on SUITE's tasks and keep the successful episodes as demonstrations in OUT."""
    from rich.console import Console

    from vitabench.cli.policy_options import parse_policy_args
    from vitabench.cli.run import parse_tasks
    from vitabench.runner.evaluation import resolve_protocol
    from vitabench.training.collect import collect as run_collect

    console = Console(stderr=True)
    resolved = resolve_protocol(protocol, seed=None, max_steps=max_steps)
    if not resolved.cameras:
        raise CliError(f"--protocol {protocol} names no cameras; demonstrations need camera images")

    def report(task_id: int, init_state: int, success: bool, steps: int) -> None:
        console.print(f"task {task_id} init state {init_state}: {'kept' if success else 'FAILED'} ({steps} steps)")

    result = run_collect(
        policy, parse_policy_args(policy_arg, None), suite, tasks=parse_tasks(tasks), episodes=episodes,
        out=out, protocol=resolved, first_init_state=first_init_state, on_episode=report,
    )
    for task_id, kept in result.kept.items():
        failed = result.failed[task_id]
        shown = f" (init states {', '.join(map(str, failed))})" if failed else ""
        typer.echo(f"task {task_id}: kept {kept}, failed {len(failed)}{shown}")
    typer.echo(f"wrote {sum(result.kept.values())} demos, {result.steps} steps to {result.path} in {result.wall_s:.0f} s "
               f"({resolved.resolution} px, {', '.join(resolved.cameras)}, protocol {resolved.ref})")
