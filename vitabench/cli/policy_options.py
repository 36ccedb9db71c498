"""``--policy-arg key=value`` (repeatable) and ``--policy-config FILE`` (TOML or JSON) -> policy kwargs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vitabench.api.config import parse_key_values, read_config


def parse_policy_args(pairs: list[str], config_file: Path | None) -> dict[str, Any]:
    """Policy arguments: the file's table first, each ``key=value`` pair overriding it
    (values as :func:`~vitabench.api.config.parse_key_values` reads them)."""
    args: dict[str, Any] = read_config(Path(config_file), "--policy-config") if config_file is not None else {}
    return {**args, **parse_key_values(pairs, "--policy-arg")}
