"""Core: bytes in memory -> the five clean columns + rejected lines, logsieve vs each peer.

Before timing, every tool runs once untimed on the same bytes; its valid count is checked against
the corpus's ground truth (and so against logsieve's) wherever the tool can express the rules, so
the times compare the same work. A peer whose bulk reader fails outright is recorded as failing
(`extra_info["failed"]`) and then timed with the per-line fallback a user would have to write.
"""

from __future__ import annotations

from typing import Any

import pytest

import peers
from harness import Workload, measure

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
