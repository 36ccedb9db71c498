"""Shared CLI plumbing: one-line errors and JSON output."""

from __future__ import annotations

import json
from typing import Any

import typer

from vitabench.api.errors import VitabenchError


class CliError(VitabenchError):
    """A user error raised by a command: printed as one line, exit code ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))
