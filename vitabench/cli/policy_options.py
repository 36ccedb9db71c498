"""``--policy-arg key=value`` (repeatable) and ``--policy-config FILE`` (TOML or JSON) -> policy kwargs."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from vitabench.api.errors import VitabenchError


def parse_policy_args(pairs: list[str], config_file: Path | None) -> dict[str, Any]:
    """Policy arguments: the file's table first, each ``key=value`` pair overriding it.

    A value is parsed as JSON when it is valid JSON (``3``, ``0.5``, ``true``, ``[1,2]``,
    ``"x"``), else kept as the string given.
    """
    args: dict[str, Any] = {}
    if config_file is not None:
        args.update(_read_config(Path(config_file)))
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise VitabenchError(f"--policy-arg {pair!r}; accepted: KEY=VALUE with KEY a Python identifier")
        try:
            args[key] = json.loads(raw)
        except json.JSONDecodeError:
            args[key] = raw
    return args


def _read_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise VitabenchError(f"--policy-config {str(path)!r} cannot be read: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise VitabenchError(f"--policy-config {str(path)!r} is not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise VitabenchError(f"--policy-config {str(path)!r} must hold a table/object of arguments, not {type(data).__name__}")
    return data
