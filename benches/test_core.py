"""Core: bytes in memory -> the five clean columns + rejected lines, logsieve vs each peer.

Before timing, every tool runs once untimed on the same bytes; its valid count is checked against
the corpus's ground truth (and so against logsieve's) wherever the tool can express the rules, so
the times compare the same work. A peer whose bulk reader fails outright is recorded as failing
(`extra_info["failed"]`) and then timed with the per-line fallback a user would have to write.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import peers
from harness import Workload, measure, rounds_for

TOOLS = ["logsieve", "seed", "orjson", "pyarrow", "polars"]
EXACT = {"logsieve", "seed", "orjson"}  # implement every rule: must match the truth on any input


def logsieve_core(data: bytes) -> Any:
    import logsieve

    batch = logsieve.process(data)
    return peers.PeerResult(batch.clean, batch.errors.num_rows)


def _prepare(tool: str, work: Workload) -> tuple[Any, dict[str, Any]]:
    """The function to time for `tool` on `work`, after one untimed run that checks its result."""
    if tool == "logsieve":
        result, failed, fn = logsieve_core(work.data), None, logsieve_core
    else:
        result, failed = peers.run_peer(tool, work.data)
        fn = peers.FALLBACKS[tool] if failed else peers.PEERS[tool]
    info: dict[str, Any] = {"valid": result.valid, "errors": result.errors}
    info["expected_valid"] = work.truth.valid
    if failed:
        info["failed"] = failed
        info["mode"] = "per-line fallback"
    if tool in EXACT or work.truth.errors == 0:
        assert result.valid == work.truth.valid, f"{tool} found {result.valid} valid rows"
        assert result.errors == work.truth.errors
    else:
        info["limits"] = peers.LIMITS[tool]
    return fn, info


def _run(benchmark: Any, tool: str, work: Workload) -> None:
    fn, info = _prepare(tool, work)
    measure(benchmark, fn, work.data, tool=tool, nbytes=len(work.data), lines=work.lines, **info)


@pytest.mark.benchmark(group="core: clean")
@pytest.mark.parametrize("tool", TOOLS)
def test_core_clean(benchmark: Any, tool: str, clean: Workload) -> None:
    _run(benchmark, tool, clean)


@pytest.mark.benchmark(group="core: 5% invalid")
@pytest.mark.parametrize("tool", TOOLS)
def test_core_dirty(benchmark: Any, tool: str, dirty: Workload) -> None:
    _run(benchmark, tool, dirty)


@pytest.mark.benchmark(group="core: clean, strings only")
@pytest.mark.parametrize("tool", ["logsieve", "pyarrow", "polars"])
def test_core_strings_only(benchmark: Any, tool: str, strings_only: Workload) -> None:
    """No epoch numbers, no integer user_ids: the corpus on which pyarrow.json can read at all."""
    _run(benchmark, tool, strings_only)


@pytest.mark.benchmark(group="core: 5% invalid vs clean, alternating")
def test_core_dirty_vs_clean(benchmark: Any, clean: Workload, dirty: Workload) -> None:
    """logsieve on the clean and the dirty corpus in turn, round by round, in one process.

    The grouped runs above time the dirty corpus minutes after the clean one, right after polars
    (whose worker threads keep spinning for a moment after it returns); alternating puts both
    under the same load, which is what the issue's "no less than 90% of the clean speed" is
    about. Each round times one call on each corpus; the best of each is kept.
    """
    best = {"clean": float("inf"), "dirty": float("inf")}

    def pair() -> None:
        for name, work in (("clean", clean), ("dirty", dirty)):
            started = time.perf_counter()
            logsieve_core(work.data)
            best[name] = min(best[name], time.perf_counter() - started)

    pair()  # untimed: first-call page faults
    best.update(clean=float("inf"), dirty=float("inf"))
    measure(
        benchmark,
        pair,
        tool="logsieve",
        nbytes=len(clean.data) + len(dirty.data),
        lines=clean.lines + dirty.lines,
        rounds=max(3, rounds_for("logsieve")),
        record_cpu=False,
    )
    benchmark.extra_info.update(
        clean_s=round(best["clean"], 4),
        dirty_s=round(best["dirty"], 4),
        clean_lines=clean.lines,
        dirty_lines=dirty.lines,
    )


#: Seconds of idle before each call of an alternating pair (not part of any reported time).
_SETTLE = 0.2


@pytest.mark.benchmark(group="core: clean vs polars, alternating")
def test_core_vs_polars_alternating(benchmark: Any, clean: Workload) -> None:
    """logsieve and polars on the clean corpus in turn, round by round, in one process.

    The grouped `core: clean` runs time every logsieve round, then minutes later every polars
    round; on a guest whose speed drifts by 20-30% between minutes that moves the ratio by more
    than the margin of the 4x target (two runs 13 minutes apart gave 3.9x and 6.3x).
    Alternating puts both under the same load. Each call starts after an untimed pause of
    `_SETTLE` s, so that neither is timed while the other's worker threads are still winding
    down (polars' keep spinning for a moment after `read_ndjson` returns).
    """
    polars, _ = _prepare("polars", clean)
    best = {"logsieve": float("inf"), "polars": float("inf")}

    def pair() -> None:
        for name, fn in (("logsieve", logsieve_core), ("polars", polars)):
            time.sleep(_SETTLE)
            started = time.perf_counter()
            fn(clean.data)
            best[name] = min(best[name], time.perf_counter() - started)

    pair()  # untimed: first-call page faults
    best.update(logsieve=float("inf"), polars=float("inf"))
    measure(
        benchmark,
        pair,
        tool="logsieve",
        nbytes=2 * len(clean.data),
        lines=2 * clean.lines,
        rounds=max(3, rounds_for("polars")),
        record_cpu=False,
    )
    benchmark.extra_info.update(
        logsieve_s=round(best["logsieve"], 4), polars_s=round(best["polars"], 4)
    )
