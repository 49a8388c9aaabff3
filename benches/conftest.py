"""Fixtures of the benchmarks (the corpora every tool gets) and the closing ratio table.

Throughput (MB/s, lines/s), the valid count and any peer failure land in each benchmark's
`extra_info` (see harness.py for the size knobs); the ratio table of `benches/report.py` is
printed at the end of the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import corpus
from harness import LINES, MEMORY_MB, Workload, workload


@pytest.fixture(scope="session")
def clean() -> Workload:
    return workload("clean", corpus.CorpusSpec(lines=LINES))


@pytest.fixture(scope="session")
def dirty() -> Workload:
    return workload("5% invalid", corpus.CorpusSpec(lines=LINES, invalid_share=0.05))


@pytest.fixture(scope="session")
def strings_only() -> Workload:
    return workload("strings only", corpus.CorpusSpec(lines=LINES, mixed_types=False))


@pytest.fixture(scope="session")
def big_file() -> Path:
    """The streaming-memory input: clean, string-typed (so every bulk reader can read it)."""
    return corpus.sized_file(MEMORY_MB << 20, mixed_types=False)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = getattr(config, "_benchmarksession", None)
    benchmarks = getattr(session, "benchmarks", None)
    if not benchmarks:
        return
    import report

    rows = [bench.as_dict(include_data=False) for bench in benchmarks if bench.stats]
    terminalreporter.write_sep(
        "=", "logsieve vs peers (best of N; x logsieve = peer time / logsieve time)"
    )
    terminalreporter.write_line(report.render(rows))
