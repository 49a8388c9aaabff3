"""Running benches/probe.py in a child process and reading its one-line JSON answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PROBE = Path(__file__).with_name("probe.py")


def run_probe(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The probe's result; its stderr is shown when it fails, so a broken tool reads clearly."""
    completed = subprocess.run(
        [sys.executable, str(PROBE), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"probe {args[:2]} failed: {completed.stderr.strip()[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])
