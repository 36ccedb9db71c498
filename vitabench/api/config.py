"""User configuration, read with one-line errors that name the file or option: TOML files,
TOML-or-JSON argument files, and repeatable ``KEY=VALUE`` options."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Iterable

from vitabench.api.errors import VitabenchError


def read_toml(path: Path, what: str, error: type[VitabenchError] = VitabenchError) -> dict[str, Any]:
    """Parse the TOML file ``path``; ``what`` names it in the ``error`` raised when it cannot be."""
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise error(f"{what} {str(path)!r} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {str(path)!r} is not valid TOML: {exc}") from None


def read_json(path: Path, what: str, error: type[VitabenchError] = VitabenchError) -> dict[str, Any]:
    """Parse the JSON file ``path``, which must hold an object; ``what`` names it in the ``error``."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise error(f"{what} {str(path)!r} cannot be read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{what} {str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise error(f"{what} {str(path)!r} must hold a table/object, not {type(data).__name__}")
    return data


def read_config(path: Path, what: str, error: type[VitabenchError] = VitabenchError) -> dict[str, Any]:
    """Parse ``path`` as JSON when it ends in ``.json``, else as TOML; it must hold a table."""
    path = Path(path)
    return read_json(path, what, error) if path.suffix == ".json" else read_toml(path, what, error)


def parse_key_values(pairs: Iterable[str], option: str, *, dotted: bool = False, accepted: str | None = None) -> dict[str, Any]:
    """Repeatable ``KEY=VALUE`` options: each value parsed as JSON when it is valid JSON (``3``,
    ``0.5``, ``true``, ``[1,2]``, ``"x"``), else kept as the string given; later pairs win.

    Keys are Python identifiers, or with ``dotted`` dotted identifiers (``camera.agentview``).
    ``accepted`` is the hint of the error naming a malformed pair.
    """
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        parts = key.split(".") if dotted else [key]
        if not sep or not all(part.isidentifier() for part in parts):
            raise VitabenchError(f"{option} {pair!r}; accepted: {accepted or 'KEY=VALUE with KEY a Python identifier'}")
        try:
            args[key] = json.loads(raw)
        except json.JSONDecodeError:
            args[key] = raw
    return args
