"""``vitabench ARGS`` through the console entry point (``vitabench.cli.main``) in the test's own
process: the exit code, stdout and stderr a shell would see, without a fresh interpreter's
imports. Each test module keeps at least one real subprocess for the exit-code contract."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Mapping
from unittest import mock


def vitabench_in_process(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``vitabench ARGS`` here with ``env`` added to the environment (env workers are spawned with it)."""
    from vitabench.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with mock.patch.object(sys, "argv", ["vitabench", *args]), mock.patch.dict(os.environ, dict(env or {})), \
            contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main()
        except SystemExit as exc:
            code = exc.code
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    return subprocess.CompletedProcess(["vitabench", *args], returncode, stdout.getvalue(), stderr.getvalue())
