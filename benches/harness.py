"""How a benchmark measurement is taken and recorded; sizes come from the environment.

`LOGSIEVE_BENCH_LINES` (default 200000) lines per corpus; `LOGSIEVE_BENCH_ROUNDS` (default 3)
timed rounds per tool (the plain-Python peers get one round: they are slow enough to be measured
once); `LOGSIEVE_BENCH_MEMORY_MB` (default 1024) size of the streaming-memory file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import corpus

LINES = int(os.environ.get("LOGSIEVE_BENCH_LINES", "200000"))
ROUNDS = int(os.environ.get("LOGSIEVE_BENCH_ROUNDS", "3"))
MEMORY_MB = int(os.environ.get("LOGSIEVE_BENCH_MEMORY_MB", "1024"))
SLOW_TOOLS = {"seed", "orjson"}


@dataclass
class Workload:
    """One corpus as every tool gets it: bytes in memory, the file, and the ground truth."""

    name: str
    path: Path
    data: bytes
    truth: corpus.Expected

    @property
    def lines(self) -> int:
        return self.truth.processed + self.truth.blank


def workload(name: str, spec: corpus.CorpusSpec) -> Workload:
    path, truth = corpus.corpus_file(spec)
    return Workload(name, path, path.read_bytes(), truth)


def rounds_for(tool: str) -> int:
    return 1 if tool in SLOW_TOOLS else ROUNDS


def measure(
    benchmark: Any,
    fn: Callable[..., Any],
    *args: Any,
    tool: str,
    nbytes: int,
    lines: int,
    rounds: int | None = None,
    setup: Callable[[], tuple[tuple, dict]] | None = None,
    record_cpu: bool = True,
    **info: Any,
) -> Any:
    """Time `fn(*args)` (or `fn(*setup()...)`, set up afresh each round, untimed) and record
    tool, throughput and `info` in the benchmark's extra_info."""
    cpu_seconds: list[float] = []

    def timed(*call_args: Any, **call_kwargs: Any) -> Any:
        started = time.process_time()  # all threads of this process: the work, whatever the load
        try:
            return fn(*call_args, **call_kwargs)
        finally:
            cpu_seconds.append(time.process_time() - started)

    result = benchmark.pedantic(
        timed,
        args=args if setup is None else (),
        setup=setup,
        rounds=rounds or rounds_for(tool),
        iterations=1,
        warmup_rounds=0,
    )
    benchmark.extra_info.update(tool=tool, bytes=nbytes, lines=lines, **info)
    if cpu_seconds and record_cpu:  # not for work done in a subprocess
        benchmark.extra_info["cpu_seconds"] = round(min(cpu_seconds), 4)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None under --benchmark-disable
        seconds = stats.stats.min  # best of N: least disturbed by other load
        benchmark.extra_info["mb_per_s"] = round(nbytes / 1e6 / seconds, 1)
        benchmark.extra_info["lines_per_s"] = round(lines / seconds)
    return result
