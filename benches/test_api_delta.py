"""`/logins_today` over a Delta table that grows one small object at a time.

A day of 200,000 rows arrives as 5,000 objects of 40 rows, each its own data file, the way the
pipeline stores what producers upload. Measured, each as extra_info and printed:

* cold: a new reader (a new `CleanTable`: the log loaded from its latest checkpoint, every file
  of the day read) and a new `logsieve serve` process (start-up to first answer, and the first
  request alone). Target: <= 300 ms.
* after one new object: a warm reader answering right after one more object is committed
  (`update_incremental`, the new add action, one file read, the cached files summed). Target:
  <= 50 ms.
* after `logsieve compact` (`logsieve.storage.compact.compact`, which also writes a checkpoint):
  a new reader on the compacted day, against a day written as one file. Target: within 2x.

Committing 5,000 objects one per commit takes delta-rs tens of minutes (each commit costs more
as the table grows), so the day's files are written with pyarrow and committed
`LOGSIEVE_BENCH_FILES_PER_COMMIT` (default 50) per commit with their statistics, as delta-rs
records them. The objects measured after that are real one-object commits (`write_deltalake`).
The table is cached under `.benchmarks/api-delta/` (or `$LOGSIEVE_BENCH_DIR/api-delta`);
generation time is recorded.

pytest: .venv/bin/pytest benches/test_api_delta.py -p no:cacheprovider --benchmark-only -s
script: .venv/bin/python benches/test_api_delta.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.transaction import AddAction

from logsieve.api.dataset import CleanTable
from logsieve.api.queries import day_window
from logsieve.storage.compact import compact
from logsieve.storage.table import create_table, table_schema

DAY = date(2025, 1, 1)
OBJECTS = int(os.environ.get("LOGSIEVE_BENCH_OBJECTS", "5000"))
ROWS_PER_OBJECT = int(os.environ.get("LOGSIEVE_BENCH_ROWS_PER_OBJECT", "40"))
FILES_PER_COMMIT = int(os.environ.get("LOGSIEVE_BENCH_FILES_PER_COMMIT", "50"))
NEW_OBJECTS = 10
ACTIONS = ["login", "logout", "view", "purchase", "search"]
UTC_DAY = day_window(DAY, ZoneInfo("UTC"))
TOKYO_DAY = day_window(DAY, ZoneInfo("Asia/Tokyo"))


# --- data -------------------------------------------------------------------------------------


def bench_dir() -> Path:
    return Path(os.environ.get("LOGSIEVE_BENCH_DIR", Path(".benchmarks"))) / "api-delta"


def built_path() -> Path:
    return bench_dir() / f"objects{OBJECTS}x{ROWS_PER_OBJECT}-per{FILES_PER_COMMIT}"


def day_rows(rows: int, seed: int, first_object: int = 0) -> pa.Table:
    """`rows` clean rows of DAY in time order (objects are batches of consecutive logs)."""
    midnight = int(datetime(DAY.year, DAY.month, DAY.day, tzinfo=timezone.utc).timestamp())
    noise = pc.random(rows, initializer=seed)
    in_order = pc.take(noise, pc.sort_indices(noise))
    micros = pc.cast(pc.floor(pc.multiply(in_order, 86_400_000_000)), pa.int64())
    event_time = pc.add(micros, midnight * 10**6).cast(pa.timestamp("us", tz="UTC"))
    picks = pc.cast(pc.floor(pc.multiply(pc.random(rows, initializer=seed + 1), 5)), pa.int64())
    objects = pa.array([f"obj-{first_object + i // ROWS_PER_OBJECT}" for i in range(rows)])
    return pa.table(
        {
            "timestamp": pc.strftime(event_time, "%Y-%m-%d %H:%M:%S"),
            "day_of_week": pc.strftime(event_time, "%A"),
            "event_time": event_time,
            "user_id": pa.array([f"u{i % 10_007}" for i in range(rows)]),
            "action": pa.array(ACTIONS).take(picks),
            "extra": pa.nulls(rows, pa.string()),
            "source_id": objects,
            "source": pc.binary_join_element_wise("s3://in/", objects, ".jsonl", ""),
            "source_version": pa.array(["1"] * rows),
            "date": pa.array([DAY.isoformat()] * rows),
        },
        schema=table_schema(),
    )


def write_data_file(root: Path, rows: pa.Table) -> AddAction:
    """One object's rows as a zstd Parquet file and the add action delta-rs would log for it."""
    relative = f"date={DAY.isoformat()}/part-00000-{uuid.uuid4()}-c000.zstd.parquet"
    path = root / relative
    pq.write_table(rows.drop_columns(["date"]), path, compression="zstd", compression_level=1)
    stats: dict[str, Any] = {"numRecords": rows.num_rows, "minValues": {}, "maxValues": {}}
    for name in ("event_time", "action", "user_id", "source_id", "timestamp"):
        bounds = pc.min_max(rows[name]).as_py()
        for key, value in (("minValues", bounds["min"]), ("maxValues", bounds["max"])):
            if isinstance(value, datetime):
                value = value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
            stats[key][name] = value
    stats["nullCount"] = {name: 0 for name in stats["minValues"]}
    return AddAction(
        relative,
        path.stat().st_size,
        {"date": DAY.isoformat()},
        int(time.time() * 1000),
        True,
        json.dumps(stats),
    )


def build_day(root: Path) -> dict[str, Any]:
    """The day as OBJECTS files, committed FILES_PER_COMMIT at a time; reused when built."""
    marker = root / "_built.json"
    if marker.exists():
        return dict(json.loads(marker.read_text()))
    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    table = create_table(str(root))
    (root / f"date={DAY.isoformat()}").mkdir(parents=True)
    rows = day_rows(OBJECTS * ROWS_PER_OBJECT, seed=1)
    pending: list[AddAction] = []
    for number in range(OBJECTS):
        pending.append(write_data_file(root, rows.slice(number * ROWS_PER_OBJECT, ROWS_PER_OBJECT)))
        if len(pending) == FILES_PER_COMMIT or number == OBJECTS - 1:
            table.create_write_transaction(
                pending, mode="append", schema=table_schema(), partition_by=["date"]
            )
            pending = []
    built = {
        "objects": OBJECTS,
        "rows": OBJECTS * ROWS_PER_OBJECT,
        "commits": DeltaTable(str(root)).version(),  # the object's own version is stale
        "generation_seconds": round(time.perf_counter() - started, 1),
        "logins": pc.sum(pc.equal(rows["action"], "login")).as_py(),
    }
    marker.write_text(json.dumps(built))
    return built


def one_file_day(root: Path) -> Path:
    """The same day's rows written as one file, the baseline a compacted day is held to."""
    if not (root / "_delta_log").exists():
        write_deltalake(
            str(root), day_rows(OBJECTS * ROWS_PER_OBJECT, seed=1), partition_by=["date"]
        )
    return root


def commit_object(table: DeltaTable, number: int) -> None:
    """One producer's object landing: its own commit, as the pipeline makes it."""
    rows = day_rows(ROWS_PER_OBJECT, seed=10_000 + number, first_object=OBJECTS + number)
    write_deltalake(table, rows, partition_by=["date"], mode="append")


# --- measurements -----------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def cold_reader(path: Path, window: Any = UTC_DAY) -> tuple[float, int]:
    """A new reader's first answer: the log from its checkpoint, then every file of the day."""
    return timed(lambda: CleanTable(str(path), refresh_interval=0).answer(window).count)


def cold_server(path: Path) -> dict[str, float]:
    """A new `logsieve serve`: seconds from launch to its first answer, and that request."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "logsieve.cli", "serve", "--clean", str(path), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        match = re.search(r"on (http://\S+)", proc.stdout.readline())
        assert match, "logsieve serve did not start"
        request, response = timed(
            lambda: httpx.get(
                f"{match.group(1)}/logins_today",
                params={"date": DAY.isoformat()},
                trust_env=False,
                timeout=60,
            )
        )
        response.raise_for_status()
        return {"launch_to_answer_s": time.perf_counter() - started, "first_request_s": request}
    finally:
        proc.terminate()
        proc.wait(30)


def after_new_objects(path: Path, count: int) -> list[float]:
    """A warm reader's answer right after each of `count` one-object commits."""
    reader = CleanTable(str(path), refresh_interval=0)
    reader.answer(UTC_DAY)
    writer = DeltaTable(str(path))
    seconds = []
    for number in range(count):
        commit_object(writer, number)
        elapsed, _ = timed(lambda: reader.answer(UTC_DAY))
        seconds.append(elapsed)
    return seconds


def ms(seconds: float) -> float:
    return round(seconds * 1e3, 1)


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "best_ms": ms(min(samples)),
        "p50_ms": ms(statistics.median(samples)),
        "max_ms": ms(max(samples)),
    }


# --- pytest-benchmark -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A private copy of the built day: the benchmarks add objects and compact it."""
    built = build_day(built_path())
    print(f"\ngenerated: {built}")
    copy = tmp_path_factory.mktemp("api-delta") / "clean"
    shutil.copytree(built_path(), copy)
    yield copy, built


def report(benchmark: Any, name: str, **numbers: Any) -> None:
    benchmark.extra_info.update(numbers)
    print(f"\n{name}: {numbers}")


def test_cold_new_reader(benchmark: Any, day: tuple[Path, dict[str, Any]]) -> None:
    path, built = day
    samples: list[float] = []

    def once() -> None:
        elapsed, count = cold_reader(path)
        assert count == built["logins"]
        samples.append(elapsed)

    benchmark.pedantic(once, rounds=3, iterations=1)
    tokyo, _ = cold_reader(path, TOKYO_DAY)
    report(
        benchmark,
        "cold, new reader",
        files=built["objects"],
        generation_seconds=built["generation_seconds"],
        commits=built["commits"],
        **summary(samples),
        tokyo_ms=ms(tokyo),
        target_ms=300,
    )


def test_cold_new_server_process(benchmark: Any, day: tuple[Path, dict[str, Any]]) -> None:
    path, _ = day
    runs: list[dict[str, float]] = []
    benchmark.pedantic(lambda: runs.append(cold_server(path)), rounds=3, iterations=1)
    report(
        benchmark,
        "cold, new server process",
        first_request=summary([r["first_request_s"] for r in runs]),
        launch_to_answer=summary([r["launch_to_answer_s"] for r in runs]),
        target_ms=300,
    )


def test_answer_after_one_new_object(benchmark: Any, day: tuple[Path, dict[str, Any]]) -> None:
    path, _ = day
    samples: list[float] = []
    benchmark.pedantic(
        lambda: samples.extend(after_new_objects(path, NEW_OBJECTS)), rounds=1, iterations=1
    )
    report(
        benchmark, "after one new object", objects=len(samples), **summary(samples), target_ms=50
    )


def test_cold_after_compaction_vs_one_file_day(
    benchmark: Any, day: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    path, _ = day
    warm = CleanTable(str(path), refresh_interval=0)
    warm.answer(UTC_DAY)
    compaction, _ = timed(lambda: compact(str(path), vacuum=False))
    warm_after, _ = timed(lambda: warm.answer(UTC_DAY))
    compacted: list[float] = []
    benchmark.pedantic(lambda: compacted.append(cold_reader(path)[0]), rounds=5, iterations=1)
    baseline_path = one_file_day(tmp_path / "one-file")
    baseline = [cold_reader(baseline_path)[0] for _ in range(5)]
    report(
        benchmark,
        "after compact()",
        compaction_s=round(compaction, 2),
        files_after=len(DeltaTable(str(path)).file_uris()),
        warm_reader_after_compaction_ms=ms(warm_after),
        compacted_cold=summary(compacted),
        one_file_day_cold=summary(baseline),
        ratio=round(min(compacted) / min(baseline), 2),
        target_ratio=2,
    )


def main() -> int:
    """Run the measurements once, without pytest, and print them as JSON."""
    import tempfile

    built = build_day(built_path())
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "clean"
        shutil.copytree(built_path(), path)
        cold = [cold_reader(path)[0] for _ in range(3)]
        server = [cold_server(path) for _ in range(3)]
        after = after_new_objects(path, NEW_OBJECTS)
        compact(str(path), vacuum=False)
        compacted = [cold_reader(path)[0] for _ in range(5)]
        baseline_path = one_file_day(Path(scratch) / "one-file")
        baseline = [cold_reader(baseline_path)[0] for _ in range(5)]
    results = {
        "generated": built,
        "cold_new_reader": summary(cold),
        "cold_new_server_first_request": summary([r["first_request_s"] for r in server]),
        "cold_new_server_launch_to_answer": summary([r["launch_to_answer_s"] for r in server]),
        "after_one_new_object": summary(after),
        "compacted_cold": summary(compacted),
        "one_file_day_cold": summary(baseline),
        "compacted_vs_one_file": round(min(compacted) / min(baseline), 2),
    }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
