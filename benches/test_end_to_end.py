"""End to end: a JSON Lines file -> Hive-partitioned Parquet (zstd) + error JSONL on local disk.

logsieve runs `logsieve.storage.ingest.ingest` (what `logsieve process FILE` does per input); the
peers are the polars and plain-Python ("seed") programs a user would write for the same outputs.
Input is the 5% invalid corpus, because the error stream is half of the job. Each round writes into
a fresh directory (created untimed).
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

import pytest

import end_to_end
from harness import Workload, measure

_scratch = tempfile.TemporaryDirectory(prefix="logsieve-bench-e2e-")
_rounds = itertools.count()


def _fresh_out(path: Path) -> Any:
    def setup() -> tuple[tuple, dict]:
        out = Path(_scratch.name) / f"run{next(_rounds)}"
        out.mkdir()
        return (path, out), {}

    return setup


@pytest.mark.benchmark(group="end to end: 5% invalid")
@pytest.mark.parametrize("tool", ["logsieve", "polars", "seed"])
def test_end_to_end(benchmark: Any, tool: str, dirty: Workload) -> None:
    fn = end_to_end.E2E[tool]
    check_out = Path(_scratch.name) / f"check-{tool}"
    check_out.mkdir()
    valid, errors = fn(dirty.path, check_out)
    written = sorted(p.parent.name for p in (check_out / "clean").rglob("*.parquet"))
    info: dict[str, Any] = {"valid": valid, "errors": errors, "expected_valid": dirty.truth.valid}
    info["partitions"] = len(written)
    assert valid + errors == dirty.truth.processed
    assert written and all(name.startswith("date=") for name in written)
    assert any((check_out / "errors").rglob("*.jsonl"))
    if tool != "polars":  # polars cannot express every rule (peers.LIMITS)
        assert valid == dirty.truth.valid
    measure(
        benchmark,
        fn,
        tool=tool,
        nbytes=len(dirty.data),
        lines=dirty.lines,
        setup=_fresh_out(dirty.path),
        **info,
    )
