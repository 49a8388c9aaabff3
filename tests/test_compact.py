"""Compaction of the clean Delta table, on real components: delta-rs tables on disk and on a moto
S3 server, the `logsieve compact` command as a process, `logsieve up` as a process, and the
CloudFormation template checked by cfn-lint and deployed into moto.

Tables are made the way the real-time pipeline makes them, one `write_deltalake` commit per
object (the lead's writer, logsieve.storage.ingest, is deliberately not used), so expected contents
are known from what was written.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import CommitProperties, DeltaTable, write_deltalake

from logsieve.deploy.template import COMPACT_HANDLER, build_template, render
from logsieve.errors import ConfigError, OutputError
from logsieve.storage import table
from logsieve.storage.compact import (
    LOCK_NAME,
    CompactionLock,
    CompactionLockedError,
    CompactionReport,
    NoTableError,
    compact,
    configured_retention_hours,
    handler,
)

UTC = timezone.utc
DAY = date(2025, 8, 20)
#: The custom commit metadata key under which a test writer records what it committed.
WRITE_TAG = "logsieve.test.write"
REGION = "us-east-1"
UP_ARGS = ("--moto-port", "0", "--port", "0")


# --- test data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    """One commit of one source's rows: what a reader must see from that version on."""

    source_id: str
    version: str
    rows: int
    overwrite: bool = False


def rows_of(write: Write, *, day: date = DAY, seed: int = 0, spread_days: int = 1) -> pa.Table:
    """`write.rows` rows, each unique (user_id names source, version and row), at random times."""
    rng = random.Random(f"{write.source_id}/{write.version}/{seed}")
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    seconds = 86400 * spread_days - 1
    times = [start + timedelta(seconds=rng.uniform(0, seconds)) for _ in range(write.rows)]
    columns = {
        "timestamp": [t.strftime("%Y-%m-%d %H:%M:%S") for t in times],
        "day_of_week": [t.strftime("%A") for t in times],
        "event_time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "user_id": [f"{write.source_id}/{write.version}/{i}" for i in range(write.rows)],
        "action": [rng.choice(["login", "logout"]) for _ in times],
        "extra": [json.dumps({"n": i}) if i % 3 else None for i in range(write.rows)],
        "source_id": [write.source_id] * write.rows,
        "source": [f"s3://input/{write.source_id}.jsonl"] * write.rows,
        "source_version": [write.version] * write.rows,
        "date": [t.strftime("%Y-%m-%d") for t in times],
    }
    return pa.table(columns, schema=table.table_schema())


def commit(uri: str, write: Write, data: pa.Table, options: dict[str, str] | None = None) -> None:
    """Append a source, or replace its rows with a predicate overwrite, as the pipeline does."""
    properties = CommitProperties(custom_metadata={WRITE_TAG: json.dumps(write.__dict__)})
    write_deltalake(
        table.table_uri(uri),
        data,
        partition_by=["date"],
        mode="overwrite" if write.overwrite else "append",
        predicate=f"source_id = '{write.source_id}'" if write.overwrite else None,
        storage_options=options,
        commit_properties=properties,
    )


def small_files_table(uri: str, objects: int, rows: int = 40, **kwargs: Any) -> list[Write]:
    table.create_table(uri)
    writes = [Write(f"obj{i:04d}", "v1", rows) for i in range(objects)]
    for write in writes:
        commit(uri, write, rows_of(write, **kwargs))
    return writes


def contents(uri: str, version: int | None = None) -> list[tuple[Any, ...]]:
    """Every row of a snapshot, sorted: equal lists mean equal tables (duplicates included)."""
    snapshot = DeltaTable(table.table_uri(uri), version=version).to_pyarrow_table()
    names = [f.name for f in table.table_schema()]
    return sorted(zip(*(snapshot.column(n).to_pylist() for n in names)), key=repr)


def live_files(uri: str, options: dict[str, str] | None = None) -> dict[str, int]:
    """Data file path -> rows, of the latest snapshot."""
    snapshot = DeltaTable(table.table_uri(uri), storage_options=options)
    actions = pa.table(snapshot.get_add_actions(flatten=True))
    return dict(zip(actions["path"].to_pylist(), actions["num_records"].to_pylist()))


def files_on_disk(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.glob("date=*/*.parquet")}


def assert_sorted_by_event_time(path: Path) -> None:
    times = pq.read_table(path, columns=["event_time"]).column("event_time")
    assert pc.all(pc.greater_equal(times[1:], times[:-1])).as_py(), f"{path} is not sorted"


# --- the library on a local table ---------------------------------------------------------


def test_small_files_become_one_sorted_file_per_date_with_the_same_rows(tmp_path: Path) -> None:
    uri = str(tmp_path / "clean")
    small_files_table(uri, 60, spread_days=2)  # every object has rows on two dates
    before = contents(uri)
    version = DeltaTable(uri).version()

    report = compact(uri)

    assert contents(uri) == before
    assert [(p.date, p.action) for p in report.partitions] == [
        ("2025-08-20", "sorted"),
        ("2025-08-21", "sorted"),
    ]
    for p in report.partitions:
        assert (p.files_before, p.files_after) == (60, 1)
        assert p.rows_before == p.rows_after == sum(1 for row in before if row[-1] == p.date)
        assert p.conflicts == 0
    # One commit per partition; nothing was removed a week ago, so the vacuum did not commit.
    assert (report.version_before, report.version_after) == (version, version + 2)
    assert report.files_vacuumed == 0
    assert report.changed
    files = live_files(uri)
    assert len(files) == 2
    for path in files:
        assert_sorted_by_event_time(tmp_path / "clean" / path)
    json.dumps(report.to_json())  # the report is plain data
    # A checkpoint of the compacted version: new readers do not replay the 120 removes.
    checkpoint = (
        tmp_path / "clean" / "_delta_log" / f"{report.version_after:020d}.checkpoint.parquet"
    )
    assert checkpoint.is_file()


def test_second_run_writes_no_checkpoint(tmp_path: Path) -> None:
    uri = str(tmp_path / "clean")
    small_files_table(uri, 3)
    compact(uri)
    log = tmp_path / "clean" / "_delta_log"
    checkpoints = sorted(p.name for p in log.glob("*.checkpoint.parquet"))
    again = compact(uri)
    assert not again.changed
    assert sorted(p.name for p in log.glob("*.checkpoint.parquet")) == checkpoints


def test_polars_reads_the_compacted_table(tmp_path: Path) -> None:
    pl = pytest.importorskip("polars")
    uri = str(tmp_path / "clean")
    small_files_table(uri, 10)
    before = pl.read_delta(uri).sort("user_id")
    compact(uri, retention_hours=0)
    after = pl.read_delta(uri)
    assert after.sort("user_id").equals(before)
    assert after.get_column("event_time").is_sorted()  # one file, sorted by time


def test_second_run_changes_nothing(tmp_path: Path) -> None:
    uri = str(tmp_path / "clean")
    small_files_table(uri, 5)
    compact(uri)
    version = DeltaTable(uri).version()
    again = compact(uri)
    assert [p.action for p in again.partitions] == ["unchanged"]
    assert again.version_before == again.version_after == version
    assert not again.changed


def test_one_small_file_is_left_alone(tmp_path: Path) -> None:
    uri = str(tmp_path / "clean")
    small_files_table(uri, 1)
    report = compact(uri)
    assert report.partitions[0].action == "unchanged"
    assert report.version_after == report.version_before


def test_partition_over_the_target_is_bin_packed_and_full_files_stay(tmp_path: Path) -> None:
    """Bigger than one target-size file: only the small files are rewritten, in commit order."""
    uri = str(tmp_path / "clean")
    table.create_table(uri)
    big = Write("big", "v1", 20_000)
    commit(uri, big, rows_of(big))
    (big_path,) = live_files(uri)
    target = 32 << 10
    assert (tmp_path / "clean" / big_path).stat().st_size > target
    writes = [Write(f"obj{i}", "v1", 30) for i in range(40)]
    for write in writes:
        commit(uri, write, rows_of(write))
    before = contents(uri)

    (report,) = compact(uri, target_size=target).partitions

    assert report.action == "compacted"
    assert contents(uri) == before
    files = live_files(uri)
    assert big_path in files  # a full file is never rewritten
    assert report.files_before == 41 and report.files_after == len(files) < 41 // 4
    assert report.rows_before == report.rows_after == len(before)


def test_dates_limit_the_partitions(tmp_path: Path) -> None:
    uri = str(tmp_path / "clean")
    small_files_table(uri, 6, spread_days=2)
    report = compact(uri, dates=["2025-08-21", date(2025, 8, 25)])
    assert [(p.date, p.action) for p in report.partitions] == [
        ("2025-08-21", "sorted"),
        ("2025-08-25", "unchanged"),  # asked for, absent: reported empty
    ]
    assert report.partitions[1].files_before == 0
    per_date = Counter(p.split("/")[0] for p in live_files(uri))
    assert per_date == {"date=2025-08-20": 6, "date=2025-08-21": 1}


def test_vacuum_deletes_removed_files_only_past_retention(tmp_path: Path) -> None:
    root = tmp_path / "clean"
    uri = str(root)
    small_files_table(uri, 12)
    written = files_on_disk(root)
    # A file a writer has uploaded but not committed yet, however old, is not the vacuum's.
    pending = root / "date=2025-08-20" / "part-00000-uploading.parquet"
    pending.write_bytes(b"not committed yet")
    os.utime(pending, (time.time() - 30 * 86400,) * 2)

    first = compact(uri)  # default retention: a week
    assert first.files_vacuumed == 0
    assert files_on_disk(root) == written | set(live_files(uri)) | {str(pending.relative_to(root))}

    within = compact(uri, retention_hours=1)  # removed seconds ago: still kept
    assert within.files_vacuumed == 0 and within.version_after == within.version_before
    assert written <= files_on_disk(root)

    expired = compact(uri, retention_hours=0)
    assert expired.files_vacuumed == len(written)
    assert files_on_disk(root) == set(live_files(uri)) | {str(pending.relative_to(root))}
    assert len(contents(uri)) == 12 * 40  # the current snapshot reads every file it names

    unvacuumed = compact(uri, retention_hours=0, vacuum=False)
    assert unvacuumed.files_vacuumed is None


def test_configured_retention_is_read_from_the_table(tmp_path: Path) -> None:
    uri = str(tmp_path / "clean")
    table.create_table(uri)
    configuration = DeltaTable(uri).metadata().configuration
    assert configured_retention_hours(configuration) == 168
    key = "delta.deletedFileRetentionDuration"
    assert configured_retention_hours({key: "interval 2 days"}) == 48
    assert configured_retention_hours({key: "interval 90 minutes"}) == 1.5
    assert configured_retention_hours({key: "a fortnight"}) == 168  # unreadable: delta's default
    assert configured_retention_hours({}) == 168


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(NoTableError, match="no Delta table at"):
        compact(str(tmp_path / "nothing-here"))
    uri = str(tmp_path / "clean")
    small_files_table(uri, 2)
    for bad in ("2025-13-01", "20250820", "yesterday", "2025-8-1"):
        with pytest.raises(ConfigError, match="is not a date"):
            compact(uri, dates=[bad])
    with pytest.raises(ConfigError, match="target size"):
        compact(uri, target_size=0)
    with pytest.raises(ConfigError, match="retention"):
        compact(uri, retention_hours=-1)
    with pytest.raises(ConfigError, match="not supported"):
        compact("http://example.invalid/clean")


# --- concurrency: writers, readers and compaction at once ---------------------------------


def overwrite_during_compaction(
    monkeypatch: pytest.MonkeyPatch, uri: str, times: int
) -> list[Write]:
    """Replace source obj0000 between compaction's planning and its commit, `times` times.

    compaction asks for the writer properties after it has planned from a snapshot and before
    delta-rs rewrites the files: the writer's overwrite lands exactly in that window.
    """
    import logsieve.storage.compact

    done: list[Write] = []
    real = logsieve.storage.compact.writer_properties

    def racing_writer() -> Any:
        if len(done) < times:
            write = Write("obj0000", f"v{len(done) + 2}", 7, overwrite=True)
            commit(uri, write, rows_of(write))
            done.append(write)
        return real()

    monkeypatch.setattr(logsieve.storage.compact, "writer_properties", racing_writer)
    monkeypatch.setattr(
        logsieve.storage.compact,
        "with_commit_retries",
        lambda attempt: table.with_commit_retries(attempt, attempts=3),
    )
    return done


def test_a_lost_commit_is_planned_again_from_the_new_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = str(tmp_path / "clean")
    writes = small_files_table(uri, 6)
    overwrites = overwrite_during_compaction(monkeypatch, uri, times=1)

    (report,) = compact(uri).partitions

    assert (report.action, report.conflicts) == ("sorted", 1)
    assert len(overwrites) == 1
    # The replaced source's old rows did not come back; its new ones are there once.
    rows = observed(DeltaTable(uri).to_pyarrow_table())
    expected = [Write("obj0000", "v2", 7), *writes[1:]]
    assert rows == Counter(
        (w.source_id, w.version, f"{w.source_id}/{w.version}/{i}")
        for w in expected
        for i in range(w.rows)
    )
    assert len(live_files(uri)) == 1


def test_a_partition_that_keeps_losing_is_left_for_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = str(tmp_path / "clean")
    small_files_table(uri, 4)
    overwrite_during_compaction(monkeypatch, uri, times=99)

    report = compact(uri, retention_hours=0)

    (partition,) = report.partitions
    assert (partition.action, partition.conflicts) == ("busy", 3)
    assert partition.files_before == partition.files_after == 4
    assert "1 busy with writers (left for the next run)" in report.summary()
    assert report.files_vacuumed == 3  # the sources the writer replaced; the run went on
    assert not report.rewritten


def expected_by_version(uri: str) -> dict[int, Counter[tuple[str, str, str]]]:
    """Rows each version must hold, replayed from what the writers' commits say they wrote."""
    history = sorted(DeltaTable(uri).history(), key=lambda h: h["version"])
    sources: dict[str, Write] = {}
    expected: dict[int, Counter[tuple[str, str, str]]] = {}
    for entry in history:
        if WRITE_TAG in entry:
            write = Write(**json.loads(entry[WRITE_TAG]))
            sources[write.source_id] = write
        else:
            assert entry["operation"] in ("CREATE TABLE", "OPTIMIZE", "VACUUM START", "VACUUM END")
        expected[entry["version"]] = Counter(
            (w.source_id, w.version, f"{w.source_id}/{w.version}/{i}")
            for w in sources.values()
            for i in range(w.rows)
        )
    return expected


def observed(snapshot: pa.Table) -> Counter[tuple[str, str, str]]:
    columns = [snapshot.column(n).to_pylist() for n in ("source_id", "source_version", "user_id")]
    return Counter(zip(*columns))


@pytest.mark.slow  # about 35 s on 2 cores: rounds of writers, readers and compaction
def test_writers_readers_and_compaction_at_once_never_lose_or_repeat_a_row(
    tmp_path: Path,
) -> None:
    uri = str(tmp_path / "clean")
    table.create_table(uri)
    deadline = time.monotonic() + 12
    failures: list[BaseException] = []
    reports: list[CompactionReport] = []
    readings: list[tuple[int, Counter[tuple[str, str, str]]]] = []
    writers_done = threading.Event()

    def guarded(body: Any) -> Any:
        def run() -> None:
            try:
                body()
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

        return run

    def writer(name: str) -> None:
        rng = random.Random(name)
        mine: dict[str, int] = {}
        while time.monotonic() < deadline:
            if mine and rng.random() < 0.4:  # replace one of its sources with a new version
                source = rng.choice(sorted(mine))
                mine[source] += 1
                write = Write(source, f"v{mine[source]}", rng.randint(1, 40), overwrite=True)
            else:
                source = f"{name}-{len(mine)}"
                mine[source] = 1
                write = Write(source, "v1", rng.randint(1, 40))
            data = rows_of(write, spread_days=2)
            table.with_commit_retries(lambda w=write, d=data: commit(uri, w, d), attempts=30)

    locked: list[CompactionLockedError] = []

    def compactor() -> None:
        # Two of them, as `up` and a manual run would be: the lock lets one work at a time.
        while True:
            last = writers_done.is_set()
            try:
                reports.append(compact(uri, retention_hours=168))
            except CompactionLockedError as exc:
                locked.append(exc)
            if last:
                break

    def reader() -> None:
        while not writers_done.is_set():
            snapshot = DeltaTable(uri)
            readings.append((snapshot.version(), observed(snapshot.to_pyarrow_table())))

    writers = [threading.Thread(target=guarded(lambda n=n: writer(n))) for n in ("a", "b")]
    others = [threading.Thread(target=guarded(f)) for f in (compactor, compactor, reader)]
    for thread in writers + others:
        thread.start()
    for thread in writers:
        thread.join()
    writers_done.set()
    for thread in others:
        thread.join()
    assert not failures, failures

    expected = expected_by_version(uri)
    rewritten = [p for r in reports for p in r.partitions if p.action in ("sorted", "compacted")]
    assert rewritten, "compaction never found anything to do"
    assert locked, "the two compactions never met"
    history = DeltaTable(uri).history()
    # The race that matters happened: sources were replaced while compaction rewrote them (a
    # run of about 12 s saw ~90 rewrites, ~100 overwrites and ~15 lost commits re-planned).
    assert any('"overwrite": true' in entry.get(WRITE_TAG, "") for entry in history)
    assert len(readings) > 5
    for version, rows in readings:
        assert rows == expected[version], f"version {version} as read while writing"
    latest = max(expected)
    for version in range(latest + 1):  # and every committed version, read afterwards
        assert observed(DeltaTable(uri, version=version).to_pyarrow_table()) == expected[version]
    assert any(entry["operation"] == "OPTIMIZE" for entry in history)


def test_two_optimizes_at_once_duplicate_rows_in_delta_rs_hence_the_lock(tmp_path: Path) -> None:
    """Why compactions take a lock: delta-rs 1.6 commits both of two optimizes that rewrote the
    same files (no delete-delete conflict between `dataChange=false` commits), so their rows
    are then there twice. Should this start failing, delta-rs detects it now; the lock stays
    harmless."""
    uri = str(tmp_path / "clean")
    small_files_table(uri, 4)
    first, second = DeltaTable(uri), DeltaTable(uri)
    first.optimize.compact()
    second.optimize.compact()
    assert len(contents(uri)) == 2 * 4 * 40


def test_a_second_compaction_is_refused_while_one_runs(tmp_path: Path) -> None:
    uri = str(tmp_path / "clean")
    small_files_table(uri, 3)
    with CompactionLock(uri):
        with pytest.raises(CompactionLockedError, match=r"another compaction of .* is running"):
            compact(uri)
        done = logsieve(uri)
        assert done.returncode == 1 and done.stdout == ""
        (line,) = done.stderr.splitlines()
        assert line.startswith("logsieve compact: another compaction of")
        assert line.endswith("nothing done, try again later")
        assert len(live_files(uri)) == 3
    assert compact(uri).partitions[0].files_after == 1  # released
    assert (tmp_path / "clean" / LOCK_NAME).exists()  # hidden from Delta readers by its "_"
    assert len(contents(uri)) == 3 * 40


# --- S3 (a moto server on loopback) and the Lambda handler --------------------------------


@pytest.fixture(scope="module")
def s3_endpoint(moto_server: str) -> str:
    """The session's moto server (tests here use their own bucket names, so no reset)."""
    return moto_server


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = f"clean-{random.randrange(1 << 30)}"
    client.create_bucket(Bucket=bucket)
    client.bucket = bucket  # type: ignore[attr-defined]
    return client


def s3_keys(client: Any, bucket: str, prefix: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def test_compaction_and_vacuum_on_s3(s3: Any) -> None:
    uri = f"s3://{s3.bucket}/clean"
    options = table.storage_options(uri, s3)
    table.create_table(uri, s3)
    for i in range(8):
        write = Write(f"obj{i}", "v1", 25)
        commit(uri, write, rows_of(write), options)
    before = DeltaTable(uri, storage_options=options).to_pyarrow_table()
    written = s3_keys(s3, s3.bucket, "clean/date=")
    assert len(written) == 8

    report = compact(uri, s3_client=s3, retention_hours=0)

    assert [(p.action, p.files_before, p.files_after) for p in report.partitions] == [
        ("sorted", 8, 1)
    ]
    assert report.files_vacuumed == 8
    after = DeltaTable(uri, storage_options=options)
    (live,) = [a for a in pa.table(after.get_add_actions(flatten=True))["path"].to_pylist()]
    assert s3_keys(s3, s3.bucket, "clean/date=") == {f"clean/{live}"}
    names = [f.name for f in table.table_schema()]
    assert (
        after.to_pyarrow_table()
        .select(names)
        .sort_by("user_id")
        .equals(before.select(names).sort_by("user_id"))
    )


def test_s3_lock_refuses_a_second_run_and_expires(
    s3: Any, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"s3://{s3.bucket}/clean"
    table.create_table(uri, s3)
    for i in range(3):
        write = Write(f"obj{i}", "v1", 5)
        commit(uri, write, rows_of(write), table.storage_options(uri, s3))
    key = f"clean/{LOCK_NAME}"
    with CompactionLock(uri, s3):
        assert key in s3_keys(s3, s3.bucket, "clean/_logsieve/")
        with pytest.raises(CompactionLockedError, match="held until"):
            compact(uri, s3_client=s3)
        monkeypatch.setenv("LOGSIEVE_CLEAN_URI", uri)
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
        assert handler({"dates": ["2025-08-20"]}, None) == {"uri": uri, "locked": True}
    assert key not in s3_keys(s3, s3.bucket, "clean/_logsieve/")  # released
    # A holder that died: its lease ran out, the next run takes the lock over.
    stale = {"owner": "crashed", "expires": time.time() - 1}
    s3.put_object(Bucket=s3.bucket, Key=key, Body=json.dumps(stale).encode())
    (partition,) = compact(uri, s3_client=s3).partitions
    assert (partition.action, partition.files_after) == ("sorted", 1)
    assert key not in s3_keys(s3, s3.bucket, "clean/_logsieve/")


def test_s3_refusals_name_the_problem(s3: Any) -> None:
    with pytest.raises(OutputError, match="NoSuchBucket"):
        compact("s3://no-such-bucket/clean", s3_client=s3)
    with pytest.raises(NoTableError, match=f"no Delta table at s3://{s3.bucket}/clean"):
        compact(f"s3://{s3.bucket}/clean", s3_client=s3)


def test_command_on_s3(s3: Any, s3_endpoint: str) -> None:
    uri = f"s3://{s3.bucket}/clean"
    table.create_table(uri, s3)
    for i in range(3):
        write = Write(f"obj{i}", "v1", 5)
        commit(uri, write, rows_of(write), table.storage_options(uri, s3))
    env = {**os.environ, "AWS_ENDPOINT_URL": s3_endpoint}
    done = logsieve(uri, "--json", "--retention-hours", "0", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [(p["files_before"], p["files_after"]) for p in report["partitions"]] == [(3, 1)]
    assert report["files_vacuumed"] == 3
    missing = logsieve("s3://no-such-bucket/clean", env=env)
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        "logsieve compact: error: cannot compact s3://no-such-bucket/clean: "
        "NoSuchBucket: The specified bucket does not exist"
    ]


def test_lambda_handler_compacts_yesterday_and_today(
    s3: Any, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"s3://{s3.bucket}/clean"
    monkeypatch.setenv("LOGSIEVE_CLEAN_URI", uri)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    assert handler({}, None) == {"uri": uri, "table": False}  # before the first ingest

    options = table.storage_options(uri, s3)
    table.create_table(uri, s3)
    today = datetime.now(UTC).date()
    for day in (today - timedelta(days=3), today):
        for i in range(3):
            write = Write(f"{day}-{i}", "v1", 10)
            commit(uri, write, rows_of(write, day=day), options)

    scheduled = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    result = handler(scheduled, None)

    assert json.loads(json.dumps(result)) == result
    parts = {p["date"]: p for p in result["partitions"]}
    assert set(parts) == {str(today - timedelta(days=1)), str(today)}
    assert (parts[str(today)]["action"], parts[str(today)]["files_after"]) == ("sorted", 1)
    assert parts[str(today - timedelta(days=1))]["files_before"] == 0
    # An older date is not the schedule's business; a manual event can name it.
    old = str(today - timedelta(days=3))
    assert Counter(p.split("/")[0] for p in live_files(uri, options))[f"date={old}"] == 3
    manual = handler({"dates": [old]}, None)
    assert [(p["date"], p["action"]) for p in manual["partitions"]] == [(old, "sorted")]

    monkeypatch.delenv("LOGSIEVE_CLEAN_URI")
    with pytest.raises(ConfigError, match="LOGSIEVE_CLEAN_URI"):
        handler({}, None)


# --- the command --------------------------------------------------------------------------


def logsieve(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logsieve.cli", "compact", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_command_prints_a_table_then_json(tmp_path: Path) -> None:
    uri = str(tmp_path / "clean")
    small_files_table(uri, 7, spread_days=2)

    done = logsieve(uri, "--date", "2025-08-20", "--target-size", "64MiB")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"date\s+action\s+files\s+rows", lines[0])
    assert re.fullmatch(r"2025-08-20\s+sorted\s+7 -> 1\s+\d+", lines[1])
    assert re.search(r"v\d+ -> v\d+, 1 of 1 partitions rewritten \(7 -> 1 files\)", lines[-1])

    again = logsieve(uri, "--json", "--no-vacuum")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert [(p["date"], p["action"]) for p in report["partitions"]] == [
        ("2025-08-20", "unchanged"),
        ("2025-08-21", "sorted"),
    ]
    assert report["files_vacuumed"] is None and report["uri"] == uri


def test_command_defaults_to_data_clean(tmp_path: Path) -> None:
    small_files_table(str(tmp_path / "data" / "clean"), 3)
    done = logsieve("--retention-hours", "0", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "sorted" in done.stdout and "3 files vacuumed" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "no Delta table at {missing}"),
        (["{table}", "--date", "2025-02-30"], "'2025-02-30' is not a date"),
        (["{table}", "--target-size", "lots"], "--target-size: not a positive size: 'lots'"),
        (["{table}", "--target-size", "0"], "--target-size: not a positive size"),
        (["{table}", "--retention-hours", "-3"], "--retention-hours: '-3' is not a whole number"),
        (["ftp://host/clean"], "is not supported"),
    ],
)
def test_command_refuses_bad_input_in_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    uri = str(tmp_path / "clean")
    small_files_table(uri, 2)
    places = {"missing": str(tmp_path / "missing"), "table": uri}
    done = logsieve(*(a.format(**places) for a in args))
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("logsieve compact: error: ")
    assert message.format(**places) in line
    assert done.stdout == ""
    assert len(live_files(uri)) == 2  # nothing was touched


# --- `logsieve up` compacts in the background ---------------------------------------------


#: How `logsieve up` starts each console line: the UTC time to the millisecond.
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def test_up_compacts_the_clean_table_and_stops_on_ctrl_c() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "logsieve.cli", "up", *UP_ARGS, "--compact-every", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []
    ready = threading.Event()
    compacted = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("curl") or "curl '" in line:
                ready.set()
            if re.match(rf"{STAMP} compacted ", line):
                compacted.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(120), lines
        text = "".join(lines)
        aws = re.search(r"AWS endpoint \(moto\): (http://127\.0\.0\.1:\d+)", text).group(1)  # type: ignore[union-attr]
        clean = re.search(r"clean table: +(s3://\S+?)/ ", text).group(1)  # type: ignore[union-attr]
        client = boto3.client(
            "s3",
            endpoint_url=aws,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        options = table.storage_options(clean, client)
        table.create_table(clean, client)
        for i in range(4):
            write = Write(f"obj{i}", "v1", 10)
            commit(clean, write, rows_of(write), options)
        assert compacted.wait(60), lines
        # Compaction may run between the commits too: wait for the one file all four fold into.
        deadline = time.monotonic() + 60
        while True:
            snapshot = DeltaTable(clean, storage_options=options)
            files = pa.table(snapshot.get_add_actions(flatten=True))
            if files.num_rows == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert files.num_rows == 1, lines
        assert snapshot.to_pyarrow_table().num_rows == 40
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        reader.join(10)
        stderr = proc.stderr.read() if proc.stderr else ""
        assert re.fullmatch(rf"{STAMP} logsieve up: stopped\n", lines[-1])
        assert "Traceback" not in stderr
        reports = [line for line in lines if re.match(rf"{STAMP} compacted ", line)]
        assert reports and all("1 of 1 partitions rewritten (" in line for line in reports)
        assert sum(int(re.search(r"\((\d+) -> ", r).group(1)) for r in reports) >= 4  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_compactor_thread_starts_only_when_asked(tmp_path: Path) -> None:
    from logsieve.sim.live import Compactor

    uri = str(tmp_path / "clean")
    said: list[str] = []
    idle = Compactor(uri, 0, output=said.append)
    idle.start()
    assert not idle._thread.is_alive()

    running = Compactor(uri, 0.05, output=said.append)
    running.start()
    time.sleep(0.3)  # no table yet: nothing to say
    assert said == [] and running.runs > 0
    small_files_table(uri, 3)
    deadline = time.monotonic() + 30
    while not said and time.monotonic() < deadline:
        time.sleep(0.05)
    running.stop()
    running.join(10)
    assert not running._thread.is_alive()
    assert len(said) == 1 and said[0].startswith("compacted ") and "(3 -> 1 files)" in said[0]


# --- the CloudFormation template ----------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return build_template()


def statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement
        for policy in resource["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def test_template_runs_the_compaction_lambda_on_a_schedule(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    function = resources["CompactFunction"]["Properties"]
    worker = resources["WorkerFunction"]["Properties"]
    assert function["Handler"] == COMPACT_HANDLER == f"{handler.__module__}.handler"
    assert function["Code"] == worker["Code"]  # the same artifact
    assert function["Runtime"] == worker["Runtime"]
    assert (
        function["Environment"]["Variables"]["LOGSIEVE_CLEAN_URI"]
        == worker["Environment"]["Variables"]["LOGSIEVE_CLEAN_URI"]
    )
    assert function["Role"] == {"Fn::GetAtt": ["CompactRole", "Arn"]}

    rule = resources["CompactScheduleRule"]
    assert rule["Type"] == "AWS::Events::Rule"
    assert rule["Properties"]["ScheduleExpression"] == {"Ref": "CompactSchedule"}
    assert template["Parameters"]["CompactSchedule"]["Default"] == "rate(1 hour)"
    assert rule["Properties"]["State"] == "ENABLED"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["CompactFunction", "Arn"]}

    permission = resources["CompactInvokePermission"]["Properties"]
    assert permission["Principal"] == "events.amazonaws.com"
    assert permission["FunctionName"] == {"Ref": "CompactFunction"}
    assert permission["SourceArn"] == {"Fn::GetAtt": ["CompactScheduleRule", "Arn"]}
    invoke = resources["CompactInvokeConfig"]["Properties"]
    assert invoke["MaximumRetryAttempts"] == 0

    alarm = resources["CompactErrorsAlarm"]["Properties"]
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "CompactFunction"}}]
    assert alarm["AlarmActions"] == [{"Ref": "AlertTopic"}]


def test_compaction_role_reaches_only_the_clean_prefix(template: dict[str, Any]) -> None:
    role = template["Resources"]["CompactRole"]
    assert "ManagedPolicyArns" not in role["Properties"]
    by_sid = {s["Sid"]: s for s in statements(role)}
    assert set(by_sid) == {"OwnLogGroup", "ListCleanTable", "RewriteCleanTable"}
    listing = by_sid["ListCleanTable"]
    assert listing["Action"] == "s3:ListBucket"
    bucket = "${NamePrefix}-clean-${AWS::AccountId}-${AWS::Region}"
    assert listing["Resource"]["Fn::Sub"].endswith(f":s3:::{bucket}")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["clean/*"]}}
    rewrite = by_sid["RewriteCleanTable"]
    assert set(rewrite["Action"]) == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
    }
    assert rewrite["Resource"]["Fn::Sub"].endswith(f":s3:::{bucket}/clean/*")
    logs = by_sid["OwnLogGroup"]["Resource"]["Fn::Sub"]
    assert logs.endswith("/aws/lambda/${NamePrefix}-compact:*")


def test_clean_glue_table_is_a_native_delta_table(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    clean = resources["CleanTable"]["Properties"]["TableInput"]
    assert clean["Parameters"] == {"table_type": "DELTA"}
    assert clean["TableType"] == "EXTERNAL_TABLE"
    descriptor = clean["StorageDescriptor"]
    env = resources["WorkerFunction"]["Properties"]["Environment"]["Variables"]
    assert descriptor["Location"] == {"Fn::Sub": env["LOGSIEVE_CLEAN_URI"]["Fn::Sub"] + "/"}
    assert "SerdeInfo" not in descriptor  # Athena reads the Delta log, not a Hive layout
    # The catalog's columns are the table's: what delta-rs writes, in order.
    schema = table.table_schema()
    athena = {pa.string(): "string", pa.timestamp("us", tz="UTC"): "timestamp"}
    data = [(f.name, athena[f.type]) for f in schema if f.name != table.PARTITION_COLUMN]
    assert [(c["Name"], c["Type"]) for c in descriptor["Columns"]] == data
    assert clean["PartitionKeys"] == [{"Name": "date", "Type": "string"}]
    # Athena only reads Delta tables with engine version 3.
    engine = resources["AthenaWorkGroup"]["Properties"]["WorkGroupConfiguration"]["EngineVersion"]
    assert engine == {"SelectedEngineVersion": "Athena engine version 3"}


def test_cfn_lint_accepts_the_template(template: dict[str, Any]) -> None:
    from cfnlint.api import lint_all

    problems = lint_all(render(template))
    assert [str(p) for p in problems if not p.rule.id.startswith("I")] == []


def test_stack_with_the_schedule_deploys_into_moto() -> None:
    import warnings

    from moto import mock_aws

    with mock_aws(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # moto warns about each resource type it skips
        session = boto3.session.Session(region_name=REGION)
        s3 = session.client("s3")
        s3.create_bucket(Bucket="deploy-artifacts")
        s3.put_object(Bucket="deploy-artifacts", Key="lambda.zip", Body=_tiny_zip())
        cfn = session.client("cloudformation")
        cfn.create_stack(
            StackName="logsieve-compact",
            TemplateBody=render(build_template()),
            Parameters=[
                {"ParameterKey": "CodeBucket", "ParameterValue": "deploy-artifacts"},
                {"ParameterKey": "CodeKey", "ParameterValue": "lambda.zip"},
                {"ParameterKey": "CompactSchedule", "ParameterValue": "rate(15 minutes)"},
            ],
            Capabilities=["CAPABILITY_IAM"],
        )
        (stack,) = cfn.describe_stacks(StackName="logsieve-compact")["Stacks"]
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        lam = session.client("lambda")
        function = lam.get_function_configuration(FunctionName=outputs["CompactFunctionName"])
        assert function["Handler"] == COMPACT_HANDLER
        assert function["Timeout"] == 900
        events = session.client("events")
        rule = events.describe_rule(Name="logsieve-compact")
        assert rule["ScheduleExpression"] == "rate(15 minutes)"
        (target,) = events.list_targets_by_rule(Rule="logsieve-compact")["Targets"]
        assert target["Arn"] == function["FunctionArn"]


def _tiny_zip() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("placeholder.py", "")
    return buffer.getvalue()
