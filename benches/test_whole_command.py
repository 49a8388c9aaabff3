"""Whole commands as subprocesses, start-up included: what a user waits for.

`logsieve process FILE --out DIR` against the polars script and the seed's program
(`benches/whole_command.py`) on the same file: clean, seed-format timestamps, and the same with
5% invalid lines. Also `logsieve process` on an empty file (start-up) and the peak RSS of
`logsieve process` on a 1 GiB file. Wall time is pytest-benchmark's; CPU seconds and peak RSS
come from wait4 of the child (`cpu_seconds`, `peak_rss_mb` in extra_info). Nothing here asserts
a time: the numbers are reported (benches/report.py checks them against the targets).

logsieve's modules are byte-compiled first (`whole_command.Launcher`), as an installed copy's are.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import corpus
from harness import LINES, ROUNDS, rounds_for
from whole_command import Launcher, Run, argv_for, logsieve_argv

_scratch = tempfile.TemporaryDirectory(prefix="logsieve-bench-whole-")
_rounds = itertools.count()


@pytest.fixture(scope="module")
def launcher() -> Iterator[Launcher]:
    spawner = Launcher()
    yield spawner
    spawner.close()


def _spec(share: float) -> corpus.CorpusSpec:
    return corpus.CorpusSpec(
        lines=LINES, invalid_share=share, mixed_types=False, seed_timestamps=True
    )


def _measure(benchmark: Any, launcher: Launcher, make_argv: Any, rounds: int) -> list[Run]:
    """Time `rounds` runs of the command (a fresh output directory each); the runs' wait4 data."""
    runs: list[Run] = []

    def setup() -> tuple[tuple, dict]:
        out = Path(_scratch.name) / f"out{next(_rounds)}"
        return (out,), {}

    def once(out: Path) -> None:
        runs.append(launcher.run(make_argv(out)))
        shutil.rmtree(out, ignore_errors=True)

    benchmark.pedantic(once, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
    return runs


def _record(benchmark: Any, runs: list[Run], **info: Any) -> None:
    benchmark.extra_info.update(
        cpu_seconds=round(min(r.cpu for r in runs), 3),
        peak_rss_mb=round(max(r.peak_rss_mb for r in runs), 1),
        inner_seconds=round(min(r.wall for r in runs), 4),  # wait4's own clock, no pipe
        **info,
    )
    nbytes, lines = info.get("bytes"), info.get("lines")
    best = benchmark.extra_info["inner_seconds"]
    if nbytes:
        benchmark.extra_info["mb_per_s"] = round(nbytes / 1e6 / best, 1)
    if lines:
        benchmark.extra_info["lines_per_s"] = round(lines / best)


@pytest.mark.parametrize("tool", ["logsieve", "polars", "seed"])
@pytest.mark.parametrize("variant", ["clean", "5% invalid"])
def test_whole_command(benchmark: Any, launcher: Launcher, tool: str, variant: str) -> None:
    benchmark.group = f"whole command: {variant}"
    name = "clean" if variant == "clean" else "dirty"
    path, truth = corpus.corpus_file(_spec(0.0 if name == "clean" else 0.05))
    runs = _measure(
        benchmark, launcher, lambda out: argv_for(tool, path, out, name), rounds_for(tool)
    )
    _record(
        benchmark,
        runs,
        tool=tool,
        bytes=path.stat().st_size,
        lines=truth.processed + truth.blank,
        failed="read_ndjson aborts on a malformed line"
        if tool == "polars" and name == "dirty"
        else None,
    )


@pytest.mark.benchmark(group="whole command: empty file (start-up)")
def test_startup(benchmark: Any, launcher: Launcher) -> None:
    empty = Path(_scratch.name) / "empty.jsonl"
    empty.write_bytes(b"")
    runs = _measure(benchmark, launcher, lambda out: logsieve_argv(empty, out), max(ROUNDS, 5))
    _record(benchmark, runs, tool="logsieve process (empty file)")


@pytest.mark.benchmark(group="whole command: 1 GiB file")
def test_peak_memory(benchmark: Any, launcher: Launcher, big_file: Path) -> None:
    runs = _measure(benchmark, launcher, lambda out: logsieve_argv(big_file, out), 1)
    _record(benchmark, runs, tool="logsieve process (1 GiB file)", bytes=big_file.stat().st_size)
