"""Scaling: logsieve.process with 1 vs 2 Rust threads, and two Python threads at once (GIL).

GIL evidence is twofold: the speedup of two threads over the same two calls made one after the
other (bounded by the free cores), and `python_progress`: how fast a pure-Python thread counts
while `process` runs, relative to while the main thread sleeps (about 0 if the GIL were held).

Each measurement runs in a subprocess (benches/probe.py) so RAYON_NUM_THREADS takes effect; the
in-process best-of-N time is what counts (`inner_seconds`), not interpreter start-up.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness import ROUNDS, Workload, measure
from subprocess_probe import run_probe


@pytest.mark.benchmark(group="scaling: rayon threads")
@pytest.mark.parametrize("threads", [1, 2])
def test_rayon_threads(benchmark: Any, threads: int, clean: Workload) -> None:
    results: list[dict[str, Any]] = []

    def once() -> None:
        env = {"RAYON_NUM_THREADS": str(threads)}
        results.append(run_probe("core", str(clean.path), "--repeat", str(ROUNDS), env=env))

    measure(
        benchmark,
        once,
        tool=f"logsieve threads={threads}",
        nbytes=len(clean.data),
        lines=clean.lines,
        rounds=1,
        record_cpu=False,
    )
    assert results[-1]["valid"] == clean.truth.valid
    benchmark.extra_info["inner_seconds"] = round(results[-1]["seconds"], 4)


@pytest.mark.benchmark(group="scaling: GIL released")
def test_two_python_threads(benchmark: Any, clean: Workload) -> None:
    results: list[dict[str, Any]] = []

    def once() -> None:
        env = {"RAYON_NUM_THREADS": "1"}
        results.append(run_probe("gil", str(clean.path), "--repeat", str(ROUNDS), env=env))

    measure(
        benchmark,
        once,
        tool="logsieve 2 Python threads",
        nbytes=len(clean.data),
        lines=clean.lines,
        rounds=1,
        record_cpu=False,
    )
    result = results[-1]
    benchmark.extra_info.update(
        inner_seconds=round(result["seconds"], 4),
        sequential_seconds=round(result["sequential_seconds"], 4),
        speedup=round(result["speedup"], 2),
        python_progress=round(result["python_progress"], 2),
    )
