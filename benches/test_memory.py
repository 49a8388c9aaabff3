"""Memory: peak RSS of one process working through a 1 GB file (LOGSIEVE_BENCH_MEMORY_MB).

Each tool runs once in a fresh subprocess (benches/probe.py); the peak RSS and the in-process
time go to extra_info (`peak_rss_mb`, `inner_seconds`). The file is clean and string-typed so
that the bulk readers can read it at all; logsieve is measured as a bare stream
(`process_stream`) and as the whole `logsieve process` command (with Parquet writing).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from harness import measure
from probe import MEMORY_TOOLS
from subprocess_probe import run_probe


@pytest.mark.benchmark(group="memory: 1 GB file")
@pytest.mark.parametrize("tool", list(MEMORY_TOOLS))
def test_memory(benchmark: Any, tool: str, big_file: Path) -> None:
    size = big_file.stat().st_size
    lines = _count_lines(big_file)
    results: list[dict[str, Any]] = []

    def once() -> None:
        with tempfile.TemporaryDirectory(prefix="logsieve-bench-mem-") as out:
            results.append(run_probe("memory", tool, str(big_file), out))

    measure(benchmark, once, tool=tool, nbytes=size, lines=lines, rounds=1, record_cpu=False)
    result = results[-1]
    assert result["valid"] == lines
    benchmark.extra_info.update(
        peak_rss_mb=round(result["peak_rss_mb"], 1),
        inner_seconds=round(result["seconds"], 3),
        cpu_seconds=round(result["cpu_seconds"], 2),
        valid=result["valid"],
        expected_valid=lines,
    )


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as source:
        while block := source.read(1 << 24):
            count += block.count(b"\n")
    return count
