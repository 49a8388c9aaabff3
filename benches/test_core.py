"""Core: bytes in memory -> the five clean columns + rejected lines, logsieve vs each peer.

Before timing, every tool runs once untimed on the same bytes; its valid count is checked against
the corpus's ground truth (and so against logsieve's) wherever the tool can express the rules, so
the times compare the same work. A peer whose bulk reader fails outright is recorded as failing
(`extra_info["failed"]`) and then timed with the per-line fallback a user would have to write.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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


#: Seconds of idle before each call of an alternating pair (not part of any reported time).
_SETTLE = 0.2


def _alternate(
    benchmark: Any, calls: dict[str, tuple[Callable[[bytes], Any], Workload]], settle: float = 0.0
) -> dict[str, float]:
    """Time `calls` in turn, round by round, in one process; the best seconds of each.

    Each round is one call of each, after an untimed pause of `settle` s; one untimed round
    first takes the first-call page faults.
    """
    best = dict.fromkeys(calls, float("inf"))

    def round_() -> None:
        for name, (fn, work) in calls.items():
            time.sleep(settle)
            started = time.perf_counter()
            fn(work.data)
            best[name] = min(best[name], time.perf_counter() - started)

    round_()
    best.update(dict.fromkeys(calls, float("inf")))
    works = [work for _, work in calls.values()]
    measure(
        benchmark,
        round_,
        tool="logsieve",
        nbytes=sum(len(w.data) for w in works),
        lines=sum(w.lines for w in works),
        rounds=max(3, rounds_for("logsieve")),  # polars' rounds count the same; no slow peer here
        record_cpu=False,
    )
    return best


@pytest.mark.benchmark(group="core: 5% invalid vs clean, alternating")
def test_core_dirty_vs_clean(benchmark: Any, clean: Workload, dirty: Workload) -> None:
    """logsieve on the clean and the dirty corpus in turn, round by round, in one process.

    The grouped runs above time the dirty corpus minutes after the clean one, right after polars
    (whose worker threads keep spinning for a moment after it returns); alternating puts both
    under the same load, which is what the issue's "no less than 90% of the clean speed" is
    about. Each round times one call on each corpus; the best of each is kept.
    """
    best = _alternate(benchmark, {"clean": (logsieve_core, clean), "dirty": (logsieve_core, dirty)})
    benchmark.extra_info.update(
        clean_s=round(best["clean"], 4),
        dirty_s=round(best["dirty"], 4),
        clean_lines=clean.lines,
        dirty_lines=dirty.lines,
    )


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
    calls = {"logsieve": (logsieve_core, clean), "polars": (polars, clean)}
    best = _alternate(benchmark, calls, settle=_SETTLE)
    benchmark.extra_info.update(
        logsieve_s=round(best["logsieve"], 4), polars_s=round(best["polars"], 4)
    )
