"""The layout's one rule between folders: no folder of vitabench (nor ``policies``, ``suites``)
imports one that imports it back, directly or around a longer loop; imports inside functions count."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vitabench", "policies", "suites")


def folder_of(module: str) -> str:
    """``vitabench.runner.plan`` -> ``vitabench.runner``; ``vitabench.stats`` and ``policies.x`` stay whole/top."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "vitabench" else parts[0]


def import_edges() -> dict[str, dict[str, str]]:
    """folder -> {imported folder: a file that imports it}."""
    edges: dict[str, dict[str, str]] = defaultdict(dict)
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).with_suffix("")
            module = ".".join(relative.parts[:-1] if relative.name == "__init__" else relative.parts)
            source = folder_of(module)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                for name in names:
                    target = folder_of(name)
                    if name.split(".")[0] in PACKAGES and target != source:
                        edges[source].setdefault(target, str(path.relative_to(ROOT)))
    return edges


def find_cycle(edges: dict[str, dict[str, str]]) -> list[str] | None:
    """One loop of folders (first folder repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(folder: str) -> list[str] | None:
        state[folder] = 1
        path.append(folder)
        for target in edges.get(folder, {}):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (loop := visit(target)):
                return loop
        path.pop()
        state[folder] = 2
        return None

    for folder in sorted(edges):
        if folder not in state and (loop := visit(folder)):
            return loop
    return None


def test_no_folder_imports_one_that_imports_it_back():
    edges = import_edges()
    assert "vitabench.models" in edges and "vitabench.training" in edges["vitabench.cli"]  # the walk sees imports in functions
    loop = find_cycle(edges)
    assert loop is None, "import loop: " + " -> ".join(f"{a} ({edges[a][b]})" for a, b in zip(loop, loop[1:])) + f" -> {loop[-1]}"


def test_a_loop_is_found_and_named():
    edges = {"a": {"b": "a.py"}, "b": {"c": "b.py"}, "c": {"a": "c.py"}, "d": {"a": "d.py"}}
    assert find_cycle(edges) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": "a.py"}, "b": {}}) is None
