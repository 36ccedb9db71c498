"""``vitabench list suites|tasks|protocols|policies|domains``: readable tables, or ``--json``."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from vitabench.cli.common import echo_json

app = typer.Typer(no_args_is_help=True, help="List suites, tasks, protocols, policies and visual domains.")

JSON_OPTION = typer.Option(False, "--json", help="Machine-readable output.")


def _print(title: str, columns: list[str], rows: list[list[object]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row))
    Console().print(table)


@app.command("suites")
def list_suites(as_json: bool = JSON_OPTION) -> None:
    """The registered suites: tasks and init states per task."""
    from vitabench.plugins import SUITES, get_suite

    data = []
    for entry in SUITES.entries():
        suite = get_suite(entry.name)
        counts = sorted({t.n_init_states for t in suite.tasks})
        data.append(
            {
                "name": suite.name,
                "aliases": list(suite.aliases),
                "n_tasks": len(suite.tasks),
                "init_states_per_task": counts[0] if len(counts) == 1 else counts,
                "source": entry.source,
            }
        )
    if as_json:
        echo_json(data)
        return
    _print(
        "suites",
        ["name", "aliases", "tasks", "init states / task", "source"],
        [[d["name"], ",".join(d["aliases"]), d["n_tasks"], d["init_states_per_task"], d["source"]] for d in data],
    )


@app.command("tasks")
def list_tasks(suite: str = typer.Argument(..., help="Suite name."), as_json: bool = JSON_OPTION) -> None:
    """The tasks of SUITE with their instructions."""
    from vitabench.plugins import get_suite

    tasks = get_suite(suite).tasks
    data = [
        {"task_id": t.task_id, "name": t.name, "instruction": t.instruction, "init_states": t.n_init_states}
        for t in tasks
    ]
    if as_json:
        echo_json(data)
        return
    _print(suite, ["id", "instruction", "init states"], [[d["task_id"], d["instruction"], d["init_states"]] for d in data])


@app.command("protocols")
def list_protocols(as_json: bool = JSON_OPTION) -> None:
    """The protocol presets: name, version, hash."""
    from vitabench.api.protocol import load_protocol, preset_names

    protocols = [load_protocol(name) for name in preset_names()]
    if as_json:
        echo_json([{"name": p.name, "version": p.version, "hash": p.hash, **p.to_dict(), "fixture_rule": p.fixture_rule} for p in protocols])
        return
    _print(
        "protocols",
        ["name", "version", "hash", "steps", "settle", "cameras", "px", "orientation", "seed", "fixtures"],
        [
            [
                p.name,
                p.version,
                p.hash,
                "/".join(str(v) for v in p.max_steps.values()),
                p.settle_steps,
                ",".join(p.cameras),
                p.resolution,
                p.image_orientation,
                f"{p.seed} ({p.seed_rule})",
                p.fixture_rule,
            ]
            for p in protocols
        ],
    )


@app.command("policies")
def list_policies(as_json: bool = JSON_OPTION) -> None:
    """The registered policies and where each comes from."""
    from vitabench.plugins import POLICIES

    data = [{"name": e.name, "target": e.target, "source": e.source} for e in POLICIES.entries()]
    if as_json:
        echo_json(data)
        return
    _print("policies", ["name", "target", "source"], [[d["name"], d["target"], d["source"]] for d in data])


@app.command("domains")
def list_domains(as_json: bool = JSON_OPTION) -> None:
    """The visual domains (vitabench run --domain): set, version and what each changes."""
    from vitabench.envs.domains import all_domains

    domains = list(all_domains().values())
    if as_json:
        echo_json([{"ref": d.ref, **d.to_dict()} for d in domains])
        return
    _print("domains", ["set", "name", "version", "description"], [[d.set, d.name, d.version, d.description] for d in domains])


@app.command("checkpoints")
def list_checkpoints(as_json: bool = JSON_OPTION) -> None:
    """The trained checkpoints shipped with vitabench (``--policy-arg checkpoint=NAME``) and what they measured."""
    from vitabench.models.checkpoint import shipped_cards

    cards = shipped_cards()
    if as_json:
        echo_json(cards)
        return
    _print(
        "checkpoints",
        ["name", "policy", "suite", "tasks", "protocol", "success % [95% CI]", "episodes"],
        [
            [
                c["name"], c["policy"], c["suite"], ",".join(map(str, c["tasks"])), c["protocol"],
                f"{100 * c['success']:.1f} [{100 * c['interval'][0]:.1f}, {100 * c['interval'][1]:.1f}]", c["episodes"],
            ]
            for c in cards
        ],
    )
