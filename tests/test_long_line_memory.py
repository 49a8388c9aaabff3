"""One very long line through `logsieve process`: memory stays within 2.5x the line plus a
chunk, above what the same command takes for a file without it (the interpreter and libraries).

Peak RSS, not time: each case runs in a fresh process, as a user runs the command.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from logsieve import DEFAULT_CHUNK_SIZE

LINE_MB = 192
CHUNK_MB = DEFAULT_CHUNK_SIZE / (1 << 20)  # logsieve's default read chunk
SHORT = b'{"timestamp":"2025-08-20T10:00:00Z","user_id":1,"action":"login"}\n'

CHILD = r"""
import resource, subprocess, sys
subprocess.run([sys.executable, "-m", "logsieve.cli", "process", sys.argv[1], "--out",
                sys.argv[2], "--no-progress"], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
"""


def write_log(path: Path, long_mb: int, valid: bool) -> None:
    """Short lines around one long one: a record whose `extra` member is that long, or an
    invalid line (no `action`) whose error record's `raw` is."""
    with path.open("wb") as out:
        out.write(SHORT * 1000)
        if long_mb:
            action = b'"action":"x",' if valid else b""
            out.write(b'{"timestamp":"2025-08-20T10:00:00Z","user_id":2,' + action + b'"blob":"')
            block = bytes(range(0x61, 0x7B)) * (1 << 16)  # 1.6 MiB of a-z
            for _ in range(long_mb * (1 << 20) // len(block)):
                out.write(block)
            out.write(b'"}\n')
        out.write(SHORT * 1000)


def peak_mb(path: Path, out: Path) -> int:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout.split()[-1])


@pytest.mark.parametrize("valid", [True, False], ids=["valid", "invalid"])
def test_a_long_line_costs_at_most_two_and_a_half_times_itself(tmp_path: Path, valid: bool) -> None:
    long, tiny = tmp_path / "long.jsonl", tmp_path / "tiny.jsonl"
    write_log(long, LINE_MB, valid)
    write_log(tiny, 0, valid)
    line_mb = (long.stat().st_size - tiny.stat().st_size) / (1 << 20)
    base = peak_mb(tiny, tmp_path / "out-tiny")
    peak = peak_mb(long, tmp_path / "out")
    assert peak - base <= 2.5 * line_mb + CHUNK_MB, (peak, base, line_mb)
