"""``vitabench doctor``: rendering, simulator versions, init states."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def doctor(
    protocol: str = typer.Option("standard", help="Protocol (preset name or file) whose versions and settle steps to check."),
    suites: str = typer.Option("", help="Comma-separated suites for the init-state check (default: all registered)."),
    tasks: str = typer.Option("", help="Comma-separated task ids (default: all)."),
    init_states: str = typer.Option("", "--init-states", help="Comma-separated init-state ids (default: all)."),
    skip_init_states: bool = typer.Option(False, help="Only check rendering and versions."),
    workers: int = typer.Option(1, min=1, help="Processes for the init-state check."),
    json_out: Path = typer.Option(None, "--json", help="Also write the full result as JSON to this file."),
    profile: bool = typer.Option(False, "--profile", help="Measure where a step's time goes (physics, each camera's frame, reset, messaging, policy) instead of checking init states."),
    profile_suite: str = typer.Option("libero_object", "--profile-suite", help="Suite whose task 0 --profile measures."),
    profile_policy: str = typer.Option(None, "--profile-policy", help="Also time this registered policy's act (its cameras and resolution)."),
    profile_arg: list[str] = typer.Option([], "--profile-arg", help="--policy-arg KEY=VALUE for --profile-policy (repeatable)."),
) -> int:
    """Check rendering (names MUJOCO_GL on failure), versions against the protocol, and init states;
    with --profile, measure a step's parts and the episodes per hour they allow instead."""
    from vitabench.api.protocol import load_protocol
    from vitabench.doctor import check_init_states, check_rendering, check_versions
    from vitabench.plugins import SUITES, get_suite

    console = Console()
    spec = load_protocol(protocol)
    checks = [check_rendering(), check_versions(spec)]
    for check in checks:
        mark = "[green]ok[/]" if check.ok else "[red]FAIL[/]"
        console.print(f"{mark}  {check.name}: {check.detail}")
    reports = []
    started = time.perf_counter()
    profiled = None
    if profile:
        from vitabench.cli.policy_options import parse_policy_args
        from vitabench.doctor import profile_steps

        profiled = profile_steps(spec, profile_suite, policy=profile_policy, policy_args=parse_policy_args(profile_arg, None))
        for line in profiled.lines():
            console.print(line, highlight=False)
    elif not skip_init_states:
        suite_names = [s for s in suites.split(",") if s] or SUITES.names()
        jobs = []
        for name in suite_names:
            suite = get_suite(name)
            ids = [int(t) for t in tasks.split(",") if t] or range(len(suite.tasks))
            jobs += [(suite.name, suite.task(i).task_id) for i in ids]
        states = tuple(int(s) for s in init_states.split(",") if s) or None

        def show(report) -> None:
            mark = "[green]ok[/]" if report.ok else "[red]FAIL[/]"
            console.print(
                f"{mark}  {report.suite} task {report.task_id}: {report.n_states} states, "
                f"worst sideways move {report.worst_displacement_m * 100:.2f} cm ({report.worst_object}), "
                f"unsettled {list(report.unsettled)}, errors {len(report.errors)}, {report.wall_s:.1f} s"
            )
            for line in report.findings + report.errors:
                console.print(f"      {line}", highlight=False)

        reports = check_init_states(jobs, spec, workers=workers, states=states, on_result=show)
        table = Table(title=f"init states under {spec.name} ({spec.settle_steps} settle steps)")
        for column in ("suite", "tasks", "states", "unsettled", "errors", "worst sideways move (cm)"):
            table.add_column(column)
        for name in dict.fromkeys(r.suite for r in reports):
            rows = [r for r in reports if r.suite == name]
            table.add_row(
                name,
                str(len(rows)),
                str(sum(r.n_states for r in rows)),
                str(sum(len(r.unsettled) for r in rows)),
                str(sum(len(r.errors) for r in rows)),
                f"{max(r.worst_displacement_m for r in rows) * 100:.2f}",
            )
        console.print(table)
        console.print(f"init-state check took {time.perf_counter() - started:.0f} s")
    if json_out:
        json_out.write_text(
            json.dumps(
                {
                    "checks": [c.__dict__ for c in checks],
                    "init_states": [
                        {**{k: v for k, v in r.__dict__.items() if k != "displacements"}, "ok": r.ok} for r in reports
                    ],
                    "profile": None if profiled is None else {
                        **{k: v for k, v in profiled.__dict__.items() if k != "render_ms"},
                        "render_ms": {f"{camera}@{res}": ms for (camera, res), ms in profiled.render_ms.items()},
                    },
                    "wall_s": time.perf_counter() - started,
                },
                indent=2,
            )
        )
    healthy = all(c.ok for c in checks) and all(r.ok for r in reports)
    return 0 if healthy else 1
