"""The `logsieve` command's own promises: one line on stderr for a user's mistake, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from logsieve.cli import main


def test_unwritable_output_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    status = main(["simulate", "--out", str(blocker / "clean")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2  # refused up front, before the demo
    assert err == [
        f"logsieve simulate: error: --out {blocker / 'clean'}: cannot create the directory: "
        "Not a directory"
    ]
    assert "Traceback" not in "\n".join(err)


def test_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "logsieve.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("simulate", "process", "serve", "up", "template", "package"):
        assert command in out


def test_unknown_command_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "logsieve.cli", "frobnicate"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "invalid choice: 'frobnicate'" in proc.stderr
