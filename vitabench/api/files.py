"""Reading user files with one-line errors that name the file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from vitabench.api.errors import VitabenchError


def read_toml(path: Path, what: str, error: type[VitabenchError] = VitabenchError) -> dict[str, Any]:
    """Parse the TOML file ``path``; ``what`` names it in the ``error`` raised when it cannot be."""
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise error(f"{what} {str(path)!r} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {str(path)!r} is not valid TOML: {exc}") from None
