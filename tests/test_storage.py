"""Storage: the clean Delta table + error JSON Lines, locally and on S3 (a moto server)."""

from __future__ import annotations

import contextlib
import gzip
import io
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from logsieve.errors import ConcurrentIngestError, ConfigError, OutputError, SourceError
from logsieve.sources import decompressing
from logsieve.storage import table
from logsieve.storage.error_files import raw_bytes
from logsieve.storage.identity import Source, source_id
from logsieve.storage.ingest import ingest, ingest_group, stored_result
from logsieve.storage.ledgers import ledger_key, version_tag
from logsieve.storage.results import IngestResult

CLEAN_COLUMNS = ["timestamp", "day_of_week", "event_time", "user_id", "action", "extra"]
ARRIVAL = datetime(2025, 9, 1, 23, 30, tzinfo=timezone(timedelta(hours=-2)))  # 2025-09-02 UTC


@dataclass
class Log:
    """A generated log: its bytes plus what every line is, so expectations come from the input."""

    lines: list[bytes] = field(default_factory=list)
    valid: dict[int, str] = field(default_factory=dict)  # line number -> UTC date
    invalid: dict[int, str] = field(default_factory=dict)  # line number -> error code
    blank: set[int] = field(default_factory=set)

    def add_valid(self, moment: datetime, action: str = "login") -> None:
        number = len(self.lines) + 1
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.lines.append(
            b'{"timestamp":"%s","user_id":%d,"action":"%s","seq":%d}'
            % (stamp.encode(), number % 7, action.encode(), number)
        )
        self.valid[number] = moment.strftime("%Y-%m-%d")

    def add_invalid(self, raw: bytes, code: str) -> None:
        self.lines.append(raw)
        self.invalid[len(self.lines)] = code

    def add_blank(self, raw: bytes = b"") -> None:
        self.lines.append(raw)
        self.blank.add(len(self.lines))

    @property
    def data(self) -> bytes:
        return b"".join(line + b"\n" for line in self.lines)


BAD_LINES = [
    (b'{"timestamp": "2025-08-20T10:00:00Z", "user_id": 1,', "invalid_json"),
    (b"[1, 2, 3]", "not_an_object"),
    (b'{"timestamp": "2025-08-20T10:00:00Z", "user_id": 1}', "missing_field"),
    (b'{"timestamp": "2025-08-20T10:00:00Z", "user_id": "", "action": "x"}', "invalid_field"),
    (b'{"timestamp": "2025-02-30T10:00:00Z", "user_id": 1, "action": "x"}', "invalid_timestamp"),
    (b'{"user_id": "\xff\xfe caf\xe9", "action": "login"}', "invalid_json"),
    (b"\x80\x81 not utf-8 at all \xc3", "invalid_json"),
    (b'{"note": "caf\xc3\xa9 \xe2\x9c\x93", "oops"}', "invalid_json"),
]


def make_log(days: int = 3, per_day: int = 40, start: datetime | None = None) -> Log:
    log = Log()
    start = start or datetime(2025, 8, 20, 21, 0, tzinfo=timezone.utc)
    bad = iter(BAD_LINES * (days * per_day))
    for i in range(days * per_day):
        log.add_valid(start + timedelta(minutes=i * 24 * 60 // per_day))
        if i % 9 == 0:
            log.add_invalid(*next(bad))
        if i % 13 == 0:
            log.add_blank(b" \t" if i % 2 else b"")
    for raw, code in BAD_LINES:
        log.add_invalid(raw, code)
    return log


def error_name(source: str, version: str) -> str:
    """A single source's error file name: its slug and its version's tag."""
    return f"{source_id(source)}-{tag(version)}.jsonl"


def tag(version: str) -> str:
    return version_tag(table.version_number(version))


def read_clean(location: str | Path, s3_client: Any = None) -> pa.Table:
    snapshot = table.open_table(str(location), s3_client)
    if snapshot is None:
        return table.table_schema().empty_table()
    return pa.table(snapshot.to_pyarrow_table())


def table_version(location: str | Path, s3_client: Any = None) -> int | None:
    snapshot = table.open_table(str(location), s3_client)
    return None if snapshot is None else snapshot.version()


def read_errors(root: Path) -> list[dict]:
    records = []
    for path in sorted(root.glob("date=*/*.jsonl")):
        records.extend(orjson.loads(line) for line in path.read_bytes().splitlines())
    return records


def error_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.glob("date=*/*.jsonl"))


def run(
    log_or_data: Log | bytes, tmp_path: Path, source: str = "/logs/app.jsonl", **kw: Any
) -> IngestResult:
    data = log_or_data.data if isinstance(log_or_data, Log) else log_or_data
    kw.setdefault("arrival", ARRIVAL)
    kw.setdefault("source_version", f"v-{hash(data)}")
    return ingest(
        io.BytesIO(data),
        source=source,
        clean_uri=str(tmp_path / "clean"),
        error_uri=str(tmp_path / "errors"),
        **kw,
    )


def retrying(attempt: Any, tries: int = 20) -> Any:
    """What a caller does with ConcurrentIngestError: run it again after a random pause that
    grows (the handler does this), so that the winner gets to finish its error records."""
    for number in range(tries):
        try:
            return attempt()
        except ConcurrentIngestError:
            time.sleep(random.uniform(0.01, 0.02 * 2 ** min(number, 5)))
    raise AssertionError(f"still losing commit races after {tries} tries")


def seqs_of(rows: pa.Table) -> list[int]:
    extras = rows.column("extra").to_pylist() if rows.num_rows else []
    return [orjson.loads(extra)["seq"] for extra in extras]


def assert_accounted(log: Log, rows: pa.Table, errors: list[dict]) -> None:
    """Every non-blank input line is in exactly one output, with its content intact."""
    seqs = seqs_of(rows)
    assert sorted(seqs) == sorted(log.valid)
    assert Counter(seqs) == Counter(set(seqs))  # no duplicates
    assert {r["line"]: r["error"] for r in errors} == log.invalid
    assert len(errors) == len(log.invalid)
    for record in errors:
        assert raw_bytes(record) == log.lines[record["line"] - 1]


# --- source ids ---------------------------------------------------------------------------------


def test_source_id_is_stable_safe_and_distinct() -> None:
    a = source_id("s3://logs/app/2025-08-20.jsonl.gz")
    assert a == source_id("s3://logs/app/2025-08-20.jsonl.gz")
    assert a.startswith("2025-08-20.jsonl.gz-")
    assert source_id("s3://other/app/2025-08-20.jsonl.gz") != a
    weird = source_id("s3://b/dir/we ird+name?&ü✓.log")
    assert all(c.isalnum() or c in "._-" for c in weird)


def test_source_id_refuses_empty_source() -> None:
    with pytest.raises(ConfigError):
        source_id("")


# --- the table ----------------------------------------------------------------------------------


def test_ingest_writes_a_delta_table_partitioned_by_date_and_error_lines(tmp_path: Path) -> None:
    log = make_log()
    result = run(log, tmp_path, source_version="v1")
    rows = read_clean(tmp_path / "clean")
    errors = read_errors(tmp_path / "errors")
    assert_accounted(log, rows, errors)
    assert rows.schema.names == [*CLEAN_COLUMNS, "source_id", "source", "source_version", "date"]
    assert set(rows.column("source_id").to_pylist()) == {"/logs/app.jsonl"}
    assert set(rows.column("source_version").to_pylist()) == {"v1"}
    assert result.rows_by_date == dict(sorted(Counter(log.valid.values()).items()))
    assert (result.processed, result.valid, result.errors, result.blank) == (
        len(log.valid) + len(log.invalid),
        len(log.valid),
        len(log.invalid),
        len(log.blank),
    )
    assert result.error_counts == dict(Counter(log.invalid.values()).most_common())
    # one data file per date, in its date= directory, and the partition matches event_time
    snapshot = DeltaTable(str(tmp_path / "clean"))
    files = [Path(uri) for uri in snapshot.file_uris()]
    assert sorted(p.parent.name for p in files) == sorted(
        f"date={d}" for d in set(log.valid.values())
    )
    for row in rows.to_pylist():
        assert row["date"] == row["event_time"].strftime("%Y-%m-%d") == row["timestamp"][:10]
    assert error_files(tmp_path / "errors") == [
        f"date=2025-09-02/{error_name('/logs/app.jsonl', 'v1')}"
    ]
    assert result.table_version == snapshot.version()


def test_add_actions_carry_the_statistics_of_their_files_rows(tmp_path: Path) -> None:
    """Readers prune by these: each add action's numRecords, min/max and null counts must be
    those of the rows in its file (computed here by pyarrow from the file itself)."""
    import pyarrow.compute as pc

    from logsieve.storage.datafiles import STATISTICS_COLUMNS

    log = make_log(days=3)
    run(log, tmp_path, source_version="v1")
    clean = tmp_path / "clean"
    actions = [
        entry["add"]
        for commit in sorted((clean / "_delta_log").glob("*.json"))
        for entry in map(orjson.loads, commit.read_bytes().splitlines())
        if "add" in entry
    ]
    assert len(actions) == len(set(log.valid.values()))  # a file per date
    for action in actions:
        rows = pq.read_table(clean / action["path"])
        stats = orjson.loads(action["stats"])
        assert stats["numRecords"] == rows.num_rows
        for name in rows.column_names:
            if name == "extra":
                assert name not in stats["nullCount"]
                continue
            assert stats["nullCount"][name] == rows.column(name).null_count, name
            if name not in STATISTICS_COLUMNS:
                assert name not in stats["minValues"], name
                continue
            low, high = pc.min_max(rows.column(name)).values()
            if name == "event_time":  # Delta keeps instants to the millisecond
                iso = "%Y-%m-%dT%H:%M:%S.%f"
                assert stats["minValues"][name] == low.as_py().strftime(iso)[:-3] + "Z"
                assert stats["maxValues"][name] == high.as_py().strftime(iso)[:-3] + "Z"
            else:
                assert (stats["minValues"][name], stats["maxValues"][name]) == (
                    low.as_py(),
                    high.as_py(),
                ), name


def test_other_readers_read_the_table_unchanged(tmp_path: Path) -> None:
    polars = pytest.importorskip("polars")
    log = make_log(days=2)
    run(log, tmp_path)
    frame = polars.read_delta(str(tmp_path / "clean"))
    assert sorted(orjson.loads(x)["seq"] for x in frame["extra"].to_list()) == sorted(log.valid)
    dataset = DeltaTable(str(tmp_path / "clean")).to_pyarrow_dataset()
    one_day = dataset.to_table(filter=pa.compute.field("date") == "2025-08-21")
    assert one_day.num_rows == sum(1 for d in log.valid.values() if d == "2025-08-21")


def test_parquet_files_are_zstd_with_statistics_but_none_on_extra(tmp_path: Path) -> None:
    run(make_log(days=1), tmp_path)
    (path,) = [Path(u) for u in DeltaTable(str(tmp_path / "clean")).file_uris()][:1]
    meta = pq.ParquetFile(path).metadata
    columns = {
        meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i)
        for i in range(meta.num_columns)
    }
    assert {c.compression for c in columns.values()} == {"ZSTD"}
    assert (
        columns["event_time"].statistics is not None
        and columns["event_time"].statistics.has_min_max
    )
    assert columns["extra"].statistics is None or not columns["extra"].statistics.has_min_max


def test_small_chunks_give_the_same_output_as_one_chunk(tmp_path: Path) -> None:
    log = make_log(days=4, per_day=60)
    run(log, tmp_path / "big")
    result = run(log, tmp_path / "small", chunk_size=256)
    big = read_clean(tmp_path / "big" / "clean").sort_by("extra")
    small = read_clean(tmp_path / "small" / "clean").sort_by("extra")
    assert small.equals(big)
    assert read_errors(tmp_path / "small" / "errors") == read_errors(tmp_path / "big" / "errors")
    assert result.valid == len(log.valid)


@pytest.mark.parametrize("interleave", [1, 7, 500])
def test_rows_of_interleaved_dates_each_land_in_their_partition(
    tmp_path: Path, interleave: int
) -> None:
    log = Log()
    start = datetime(2025, 8, 20, 12, 0, tzinfo=timezone.utc)
    for i in range(3000):
        day = (i // interleave) % 3
        log.add_valid(start + timedelta(days=day, seconds=(i * 7919) % 3600))
        if i % 100 == 0:
            log.add_invalid(*BAD_LINES[i % len(BAD_LINES)])
    run(log, tmp_path, chunk_size=4096)
    files = [Path(u) for u in DeltaTable(str(tmp_path / "clean")).file_uris()]
    assert len(files) == 3
    for path in files:
        date = path.parent.name.removeprefix("date=")
        # Row order inside a file is delta-rs's (compaction sorts by event_time anyway).
        assert sorted(seqs_of(pq.read_table(path))) == sorted(
            n for n, d in log.valid.items() if d == date
        )
    assert_accounted(log, read_clean(tmp_path / "clean"), read_errors(tmp_path / "errors"))


def test_custom_field_names(tmp_path: Path) -> None:
    data = b'{"ts": "2025-08-20T10:00:00+02:00", "uid": "u1", "act": "login", "timestamp": 5}\n'
    result = run(data, tmp_path, timestamp_field="ts", user_id_field="uid", action_field="act")
    assert result.valid == 1
    row = read_clean(tmp_path / "clean").to_pylist()[0]
    assert (row["timestamp"], row["user_id"], row["action"]) == (
        "2025-08-20 08:00:00",
        "u1",
        "login",
    )
    assert orjson.loads(row["extra"]) == {"timestamp": 5}


def test_non_utf8_lines_round_trip_exactly_through_raw_base64(tmp_path: Path) -> None:
    log = Log()
    for raw, code in BAD_LINES:
        log.add_invalid(raw, code)
    run(log, tmp_path)
    errors = read_errors(tmp_path / "errors")
    assert_accounted(log, read_clean(tmp_path / "clean"), errors)
    by_line = {r["line"]: r for r in errors}
    for number, raw in enumerate(log.lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            assert "raw" not in by_line[number] and "raw_base64" in by_line[number]
        else:
            assert by_line[number]["raw"] == text


# --- idempotence and replacement ----------------------------------------------------------------


@pytest.mark.parametrize("times", [2, 3])
def test_the_same_version_again_commits_nothing(tmp_path: Path, times: int) -> None:
    log = make_log()
    first = run(log, tmp_path, source_version="v1")
    version = table_version(tmp_path / "clean")
    files = error_files(tmp_path / "errors")
    for _ in range(times - 1):
        again = run(log, tmp_path, source_version="v1")
        assert again.already_ingested
        assert {
            k: v for k, v in again.summary().items() if k not in ("seconds", "already_ingested")
        } == {k: v for k, v in first.summary().items() if k != "seconds"}
    assert table_version(tmp_path / "clean") == version
    assert error_files(tmp_path / "errors") == files
    assert_accounted(log, read_clean(tmp_path / "clean"), read_errors(tmp_path / "errors"))


def test_a_new_version_replaces_the_old_rows_in_one_commit(tmp_path: Path) -> None:
    first = make_log(days=4)
    run(first, tmp_path, source_version="v1")
    other = make_log(days=2)
    run(other, tmp_path, source="/logs/other.jsonl", source_version="o1")  # shares dates
    before = table_version(tmp_path / "clean")
    smaller = Log()
    smaller.add_valid(datetime(2025, 8, 20, 22, 0, tzinfo=timezone.utc))
    smaller.add_valid(datetime(2025, 8, 20, 23, 0, tzinfo=timezone.utc))
    result = run(
        smaller, tmp_path, source_version="v2", arrival=datetime(2025, 9, 5, tzinfo=timezone.utc)
    )
    assert result.table_version == table_version(tmp_path / "clean") == (before or 0) + 1
    rows = read_clean(tmp_path / "clean")
    mine = rows.filter(pa.compute.equal(rows["source_id"], "/logs/app.jsonl"))
    assert seqs_of(mine) == [1, 2] and set(mine["source_version"].to_pylist()) == {"v2"}
    theirs = rows.filter(pa.compute.equal(rows["source_id"], "/logs/other.jsonl"))
    assert sorted(seqs_of(theirs)) == sorted(other.valid)
    # the old version's error file went (no errors now); the other source's stays
    assert error_files(tmp_path / "errors") == [
        f"date=2025-09-02/{error_name('/logs/other.jsonl', 'o1')}"
    ]
    # the previous snapshot still reads the old rows: nothing was rewritten in place
    old = DeltaTable(str(tmp_path / "clean"), version=before).to_pyarrow_table()
    assert old.num_rows == len(first.valid) + len(other.valid)


def test_a_new_arrival_moves_the_error_file(tmp_path: Path) -> None:
    log = make_log(days=1)
    run(log, tmp_path, arrival=datetime(2025, 9, 1, 12, tzinfo=timezone.utc), source_version="a")
    run(log, tmp_path, arrival=datetime(2025, 9, 3, 12, tzinfo=timezone.utc), source_version="b")
    assert error_files(tmp_path / "errors") == [
        f"date=2025-09-03/{error_name('/logs/app.jsonl', 'b')}"
    ]
    assert len(read_errors(tmp_path / "errors")) == len(log.invalid)


def test_naive_arrival_is_taken_as_utc(tmp_path: Path) -> None:
    run(b"nope\n", tmp_path, arrival=datetime(2025, 1, 2, 23, 59))
    assert error_files(tmp_path / "errors")[0].startswith("date=2025-01-02/")


def test_an_empty_version_clears_the_earlier_rows(tmp_path: Path) -> None:
    result = run(b"", tmp_path, source_version="0")
    assert (result.processed, result.valid, result.errors, result.blank) == (0, 0, 0, 0)
    assert read_clean(tmp_path / "clean").num_rows == 0
    run(make_log(days=1), tmp_path, source_version="1")
    assert read_clean(tmp_path / "clean").num_rows
    cleared = run(b"\n\n  \n", tmp_path, source_version="2")
    assert (cleared.processed, cleared.blank) == (0, 3)
    assert read_clean(tmp_path / "clean").num_rows == 0
    assert error_files(tmp_path / "errors") == []


def test_rows_another_tool_wrote_for_a_source_are_replaced_not_duplicated(tmp_path: Path) -> None:
    """No transaction recorded for the source: its file statistics still make it a replace."""
    log = make_log(days=1)
    run(log, tmp_path, source_version="v1")
    rows = read_clean(tmp_path / "clean")
    foreign = tmp_path / "foreign"
    write_deltalake(str(foreign), rows, partition_by=["date"])  # same rows, no transactions
    result = ingest(
        io.BytesIO(log.data),
        source="/logs/app.jsonl",
        clean_uri=str(foreign),
        error_uri=str(tmp_path / "errors2"),
        source_version="v1",
    )
    assert not result.already_ingested
    assert sorted(seqs_of(read_clean(foreign))) == sorted(log.valid)


# --- failures -------------------------------------------------------------------------------------


def failing_stream(data: bytes, fail_after: int) -> Iterator[bytes]:
    yield data[:fail_after]
    raise OSError("connection reset by peer")


def test_a_failure_mid_source_commits_nothing_and_keeps_the_old_rows(tmp_path: Path) -> None:
    old = make_log(days=2)
    run(old, tmp_path, source_version="old")
    version = table_version(tmp_path / "clean")
    errors_before = {p: p.read_bytes() for p in (tmp_path / "errors").rglob("*") if p.is_file()}
    new = make_log(days=5, start=datetime(2024, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(OSError, match="connection reset"):
        ingest(
            failing_stream(new.data, len(new.data) // 2),
            source="/logs/app.jsonl",
            clean_uri=str(tmp_path / "clean"),
            error_uri=str(tmp_path / "errors"),
            chunk_size=1024,
            source_version="new",
        )
    assert table_version(tmp_path / "clean") == version
    assert sorted(seqs_of(read_clean(tmp_path / "clean"))) == sorted(old.valid)
    errors_after = {p: p.read_bytes() for p in (tmp_path / "errors").rglob("*") if p.is_file()}
    assert errors_after == errors_before


def test_a_truncated_gzip_source_fails_whole(tmp_path: Path) -> None:
    log = make_log(days=3)
    stream = decompressing(io.BytesIO(gzip.compress(log.data)[:-40]), "app.jsonl.gz")
    with pytest.raises(SourceError, match="truncated"):
        ingest(
            stream,
            source="/logs/app.jsonl.gz",
            clean_uri=str(tmp_path / "clean"),
            error_uri=str(tmp_path / "errors"),
            chunk_size=512,
        )
    assert read_clean(tmp_path / "clean").num_rows == 0
    assert error_files(tmp_path / "errors") == []


def test_a_tampered_ledger_never_deletes_foreign_files(tmp_path: Path) -> None:
    run(make_log(days=1), tmp_path, source_version="1")
    victim = tmp_path / "errors" / "date=2025-09-02" / "someone-else.txt"
    victim.write_text("not ours")
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    path = tmp_path / "errors" / ledger_key(source_id("/logs/app.jsonl"), tag("1"))
    ledger = orjson.loads(path.read_bytes())
    ledger["files"] += ["date=2025-09-02/someone-else.txt", "../precious.txt", "../../precious.txt"]
    path.write_bytes(orjson.dumps(ledger))
    run(b"", tmp_path, source_version="2")
    assert victim.read_text() == "not ours"
    assert outside.read_text() == "keep me"


def test_a_directory_of_loose_parquet_is_refused_not_mixed(tmp_path: Path) -> None:
    old = tmp_path / "clean" / "date=2025-08-20"
    old.mkdir(parents=True)
    pq.write_table(pa.table({"x": [1]}), old / "app.parquet")
    with pytest.raises(ConfigError, match="no Delta table"):
        run(make_log(days=1), tmp_path)
    assert sorted(p.name for p in (tmp_path / "clean").iterdir()) == ["date=2025-08-20"]


def test_an_unwritable_output_is_an_output_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot"):
        ingest(
            io.BytesIO(b"x\n"),
            source="s",
            clean_uri=str(tmp_path / "c"),
            error_uri=str(blocker / "e"),
        )
    with pytest.raises(OutputError, match="cannot"):
        ingest(
            io.BytesIO(b"x\n"),
            source="s",
            clean_uri=str(blocker / "c"),
            error_uri=str(tmp_path / "e"),
        )


def test_stale_staging_of_a_killed_process_is_swept(tmp_path: Path) -> None:
    import os
    import time

    staging = tmp_path / "errors" / "_logsieve" / "staging"
    old, recent = staging / "tmpold", staging / "tmprecent"
    for directory in (old, recent):
        directory.mkdir(parents=True)
        (directory / "2025-08-20.jsonl").write_bytes(b"half written")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    run(make_log(days=1), tmp_path)
    assert not old.exists()
    assert (recent / "2025-08-20.jsonl").read_bytes() == b"half written"  # may be in use


# --- groups: many sources in one commit ---------------------------------------------------------


def source_of(name: str, log: Log | bytes, version: str = "v1") -> Source:
    data = log.data if isinstance(log, Log) else log
    return Source(
        identity=name,
        name=name,
        version=version,
        open=lambda: contextlib.nullcontext(io.BytesIO(data)),
        arrival=ARRIVAL,
    )


def test_a_group_is_one_commit_with_few_files_and_one_error_file_per_date(tmp_path: Path) -> None:
    logs = {
        f"/logs/{i}.jsonl": make_log(
            days=2, per_day=5, start=datetime(2025, 8, 20, tzinfo=timezone.utc)
        )
        for i in range(40)
    }
    outcome = ingest_group(
        [source_of(name, log) for name, log in logs.items()],
        clean_uri=str(tmp_path / "clean"),
        error_uri=str(tmp_path / "errors"),
    )
    assert not outcome.failures and len(outcome.results) == 40
    snapshot = DeltaTable(str(tmp_path / "clean"))
    assert snapshot.version() == 1  # created, then one commit
    assert len(snapshot.file_uris()) == 2  # one per date
    assert len(error_files(tmp_path / "errors")) == 1
    rows = read_clean(tmp_path / "clean")
    errors = read_errors(tmp_path / "errors")
    for name, log in logs.items():
        mine = rows.filter(pa.compute.equal(rows["source_id"], name))
        assert_accounted(log, mine, [r for r in errors if r["source"] == name])


class HeldStream(io.RawIOBase):
    """A source's bytes that stop before their end until `release` is set (first read only),
    so that other writers can commit while an ingest is in the middle of its work."""

    def __init__(self, data: bytes, reading: threading.Event, release: threading.Event) -> None:
        self.data, self.at = data, 0
        self.reading, self.release = reading, release

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.at > 0 and not self.release.is_set():
            self.reading.set()
            assert self.release.wait(30)
        chunk = self.data[self.at : self.at + min(len(buffer), max(1, len(self.data) // 2))]
        buffer[: len(chunk)] = chunk
        self.at += len(chunk)
        return len(chunk)


@pytest.mark.parametrize(
    "by", ["compaction", "compaction and a vacuum", "another replace of a neighbour"]
)
def test_a_replace_never_commits_over_a_rewrite_of_the_files_it_removes(
    tmp_path: Path, by: str
) -> None:
    """A new version of a source sharing data files with others removes those files and writes
    the others' rows again. If another commit rewrote the same files meanwhile (compaction,
    whose removes raise no conflict in delta-rs, or a neighbour's replace), committing would
    keep the source's old rows in the rewritten file or lose the neighbour's: the replace must
    plan again instead, and the table end with every source's rows exactly once."""
    clean, errors = str(tmp_path / "clean"), str(tmp_path / "errors")
    logs = {f"/logs/{i}.jsonl": make_log(days=2, per_day=6 + i) for i in range(6)}
    ingest_group([source_of(n, log) for n, log in logs.items()], clean_uri=clean, error_uri=errors)
    for extra in range(3):  # more small files per date, for compaction to merge
        name = f"/logs/extra{extra}.jsonl"
        logs[name] = make_log(days=2, per_day=3)
        ingest_group([source_of(name, logs[name])], clean_uri=clean, error_uri=errors)
    newer = make_log(days=2, per_day=11, start=datetime(2025, 8, 20, tzinfo=timezone.utc))
    reading, release = threading.Event(), threading.Event()
    attempts: list[int] = []

    def opened() -> Any:
        attempts.append(1)
        return contextlib.nullcontext(io.BufferedReader(HeldStream(newer.data, reading, release)))

    replacing = Source("/logs/0.jsonl", "/logs/0.jsonl", "v2", opened, arrival=ARRIVAL)
    outcome: list[Any] = []
    worker = threading.Thread(
        target=lambda: outcome.append(
            ingest_group([replacing], clean_uri=clean, error_uri=errors, chunk_size=1 << 16)
        )
    )
    worker.start()
    assert reading.wait(30)
    if by.startswith("compaction"):
        from logsieve.storage.compact import compact

        # With a vacuum and no retention, the files the replace planned on are gone from disk.
        report = compact(clean, vacuum=by.endswith("vacuum"), retention_hours=0)
        assert any(p.action in ("sorted", "compacted") for p in report.partitions)
    else:
        neighbour = make_log(days=2, per_day=4, start=datetime(2025, 8, 20, tzinfo=timezone.utc))
        logs["/logs/1.jsonl"] = neighbour
        ingest_group(
            [source_of("/logs/1.jsonl", neighbour, "v2")], clean_uri=clean, error_uri=errors
        )
    release.set()
    worker.join(60)
    assert outcome and not outcome[0].failures
    assert len(attempts) == 2  # planned again on the newer snapshot
    logs["/logs/0.jsonl"] = newer
    rows = read_clean(tmp_path / "clean")
    for name, log in logs.items():
        mine = rows.filter(pa.compute.equal(rows["source_id"], name))
        assert sorted(seqs_of(mine)) == sorted(log.valid), name
    assert rows.num_rows == sum(len(log.valid) for log in logs.values())


def test_a_replace_commits_over_appends_whose_statistics_only_span_its_source(
    tmp_path: Path,
) -> None:
    """Appends of other sources while a replace streams may add files whose `source_id` range
    spans the replaced source without holding its rows: the replace reads them, finds none of
    its rows, and commits on the first attempt instead of planning again (under a steady
    stream of such appends it would never commit)."""
    clean, errors = str(tmp_path / "clean"), str(tmp_path / "errors")
    logs = {name: make_log(days=1, per_day=5) for name in ("/logs/m-a.jsonl", "/logs/m-b.jsonl")}
    ingest_group([source_of(n, log) for n, log in logs.items()], clean_uri=clean, error_uri=errors)
    newer = make_log(days=1, per_day=7)
    reading, release = threading.Event(), threading.Event()
    attempts: list[int] = []

    def opened() -> Any:
        attempts.append(1)
        return contextlib.nullcontext(io.BufferedReader(HeldStream(newer.data, reading, release)))

    replacing = Source("/logs/m-a.jsonl", "/logs/m-a.jsonl", "v2", opened, arrival=ARRIVAL)
    outcome: list[Any] = []
    worker = threading.Thread(
        target=lambda: outcome.append(
            ingest_group([replacing], clean_uri=clean, error_uri=errors, chunk_size=1 << 16)
        )
    )
    worker.start()
    assert reading.wait(30)
    for round_ in range(3):  # groups whose first and last ids enclose /logs/m-a.jsonl
        group = {
            f"/logs/a-{round_}.jsonl": make_log(days=1),
            f"/logs/z-{round_}.jsonl": make_log(days=1),
        }
        logs.update(group)
        ingest_group(
            [source_of(n, log) for n, log in group.items()], clean_uri=clean, error_uri=errors
        )
    release.set()
    worker.join(60)
    assert outcome and not outcome[0].failures
    assert len(attempts) == 1
    logs["/logs/m-a.jsonl"] = newer
    rows = read_clean(tmp_path / "clean")
    for name, log in logs.items():
        mine = rows.filter(pa.compute.equal(rows["source_id"], name))
        assert sorted(seqs_of(mine)) == sorted(log.valid), name


def test_an_unreadable_source_in_a_group_is_left_out_and_keeps_its_rows(tmp_path: Path) -> None:
    good, bad_old = make_log(days=1), make_log(days=1, per_day=3)
    run(bad_old, tmp_path, source="/logs/bad.gz", source_version="old")
    truncated = gzip.compress(make_log(days=2).data)[:-40]
    broken = Source(
        identity="/logs/bad.gz",
        name="/logs/bad.gz",
        version="new",
        open=lambda: contextlib.nullcontext(decompressing(io.BytesIO(truncated), "bad.gz")),
    )
    outcome = ingest_group(
        [source_of("/logs/good.jsonl", good), broken],
        clean_uri=str(tmp_path / "clean"),
        error_uri=str(tmp_path / "errors"),
    )
    assert [f.source.identity for f in outcome.failures] == ["/logs/bad.gz"]
    assert isinstance(outcome.failures[0].error, SourceError)
    rows = read_clean(tmp_path / "clean")
    assert sorted(
        seqs_of(rows.filter(pa.compute.equal(rows["source_id"], "/logs/bad.gz")))
    ) == sorted(bad_old.valid)
    assert sorted(
        seqs_of(rows.filter(pa.compute.equal(rows["source_id"], "/logs/good.jsonl")))
    ) == sorted(good.valid)


def test_replacing_one_source_of_a_group_rewrites_the_shared_error_file_without_it(
    tmp_path: Path,
) -> None:
    a, b = make_log(days=1), make_log(days=1, per_day=20)
    ingest_group(
        [source_of("/logs/a.jsonl", a), source_of("/logs/b.jsonl", b)],
        clean_uri=str(tmp_path / "clean"),
        error_uri=str(tmp_path / "errors"),
    )
    (shared,) = error_files(tmp_path / "errors")
    assert shared.split("/")[1].startswith("group-")
    a2 = Log()
    a2.add_invalid(b"still broken", "invalid_json")
    ingest_group(
        [source_of("/logs/a.jsonl", a2, version="v2")],
        clean_uri=str(tmp_path / "clean"),
        error_uri=str(tmp_path / "errors"),
    )
    errors = read_errors(tmp_path / "errors")
    assert sorted((r["source"], r["line"]) for r in errors) == sorted(
        [("/logs/a.jsonl", 1)] + [("/logs/b.jsonl", n) for n in b.invalid]
    )


def test_the_same_source_twice_in_one_group_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="twice"):
        ingest_group(
            [source_of("/x", b""), source_of("/x", b"")],
            clean_uri=str(tmp_path / "c"),
            error_uri=str(tmp_path / "e"),
        )


# --- concurrency (threads) ----------------------------------------------------------------------


def test_concurrent_deliveries_of_one_version_commit_once(tmp_path: Path) -> None:
    log = make_log(days=2)
    results: list[IngestResult] = []
    lock = threading.Lock()

    def deliver() -> None:
        result = retrying(lambda: run(log, tmp_path, source="s3://in/k.jsonl", source_version="e1"))
        with lock:
            results.append(result)

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6
    assert sum(not r.already_ingested for r in results) == 1
    assert_accounted(log, read_clean(tmp_path / "clean"), read_errors(tmp_path / "errors"))


def test_many_sources_at_once_each_appear_exactly_once(tmp_path: Path) -> None:
    logs = {f"s3://in/{i}.jsonl": make_log(days=1, per_day=10 + i) for i in range(10)}
    errors: list[BaseException] = []

    results: dict[str, IngestResult] = {}

    def deliver(name: str, log: Log) -> None:
        try:
            results[name] = retrying(lambda: run(log, tmp_path, source=name, source_version="e"))
        except BaseException as exc:  # surfaces in the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=item) for item in logs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = read_clean(tmp_path / "clean")
    for name, log in logs.items():
        mine = rows.filter(pa.compute.equal(rows["source_id"], name))
        assert sorted(seqs_of(mine)) == sorted(log.valid)
    # Each result names the commit that stored it, whatever committed after it.
    clean = str(tmp_path / "clean")
    for name, result in results.items():
        app = table.app_id(name)
        assert DeltaTable(clean, version=result.table_version).transaction_version(app) is not None
        assert DeltaTable(clean, version=result.table_version - 1).transaction_version(app) is None


def test_readers_see_one_committed_version_while_a_source_is_replaced(tmp_path: Path) -> None:
    versions = {f"v{i}": make_log(days=1, per_day=5 + 7 * i) for i in range(6)}
    run(versions["v0"], tmp_path, source_version="v0")
    allowed = {len(log.valid) for log in versions.values()}
    seen: list[int] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.append(read_clean(tmp_path / "clean").num_rows)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for name, log in list(versions.items())[1:]:
            run(log, tmp_path, source_version=name)
    finally:
        done.set()
        reader.join()
    assert seen and set(seen) <= allowed  # never old + new rows, never none


# --- S3 (a moto server) -------------------------------------------------------------------------


@pytest.fixture
def s3(moto_endpoint: str) -> Any:
    import boto3

    client = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint)
    for bucket in ("clean-bucket", "error-bucket"):
        client.create_bucket(Bucket=bucket)
    return client


CLEAN_URI, ERROR_URI = "s3://clean-bucket/clean", "s3://error-bucket/errors/"


def s3_keys(client: Any, bucket: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def s3_errors(client: Any) -> list[dict]:
    records = []
    for key in s3_keys(client, "error-bucket"):
        if "/date=" in key:
            body = client.get_object(Bucket="error-bucket", Key=key)["Body"].read()
            records.extend(orjson.loads(line) for line in body.splitlines())
    return records


def run_s3(
    client: Any,
    log: Log,
    source: str = "s3://input/app.jsonl",
    version: str = "e1",
    arrival: datetime = ARRIVAL,
) -> IngestResult:
    return ingest(
        io.BytesIO(log.data),
        source=source,
        clean_uri=CLEAN_URI,
        error_uri=ERROR_URI,
        arrival=arrival,
        s3_client=client,
        source_version=version,
    )


def test_s3_table_and_error_records(s3: Any) -> None:
    log = make_log()
    result = run_s3(s3, log)
    keys = s3_keys(s3, "clean-bucket")
    assert "clean/_delta_log/00000000000000000001.json" in keys
    assert {k.split("/")[1] for k in keys if "/date=" in k} == {
        f"date={d}" for d in set(log.valid.values())
    }
    assert_accounted(log, read_clean(CLEAN_URI, s3), s3_errors(s3))
    assert result.error_keys == [
        f"errors/date=2025-09-02/{error_name('s3://input/app.jsonl', 'e1')}"
    ]


def test_s3_same_event_three_times_then_changed_content(s3: Any) -> None:
    log = make_log()
    first = run_s3(s3, log)
    for _ in range(2):
        assert run_s3(s3, log).already_ingested
    assert table_version(CLEAN_URI, s3) == first.table_version
    changed = make_log(days=1, start=datetime(2025, 10, 1, tzinfo=timezone.utc))
    run_s3(s3, changed, version="e2")
    assert_accounted(changed, read_clean(CLEAN_URI, s3), s3_errors(s3))


def test_s3_concurrent_deliveries_and_many_objects_at_once(s3: Any) -> None:
    logs = {f"s3://input/{i}.jsonl": make_log(days=1, per_day=8 + i) for i in range(6)}
    jobs = [(name, log) for name, log in logs.items()] + [
        ("s3://input/0.jsonl", logs["s3://input/0.jsonl"])
    ] * 3
    outcomes: list[IngestResult] = []
    failures: list[BaseException] = []

    def deliver(name: str, log: Log) -> None:
        try:
            outcomes.append(retrying(lambda: run_s3(s3, log, source=name)))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=deliver, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sum(not o.already_ingested for o in outcomes) == len(logs)
    rows = read_clean(CLEAN_URI, s3)
    for name, log in logs.items():
        assert sorted(seqs_of(rows.filter(pa.compute.equal(rows["source_id"], name)))) == sorted(
            log.valid
        )
    options = table.storage_options(CLEAN_URI, s3)
    for outcome in outcomes:  # the version each names is the commit that stored its source
        app = table.app_id(outcome.source)
        at = DeltaTable(CLEAN_URI, version=outcome.table_version, storage_options=options)
        before = DeltaTable(CLEAN_URI, version=outcome.table_version - 1, storage_options=options)
        assert at.transaction_version(app) is not None, outcome
        assert before.transaction_version(app) is None or outcome.already_ingested, outcome


def test_s3_missing_buckets_are_output_errors(s3: Any) -> None:
    log = make_log(days=1)
    with pytest.raises(OutputError, match="NoSuchBucket"):
        ingest(
            io.BytesIO(log.data),
            source="s3://input/a",
            clean_uri=CLEAN_URI,
            error_uri="s3://no-such-error-bucket/e",
            s3_client=s3,
        )
    assert read_clean(CLEAN_URI, s3).num_rows == 0  # nothing committed without its error records
    with pytest.raises(OutputError, match="NoSuchBucket"):
        ingest(
            io.BytesIO(log.data),
            source="s3://input/a",
            clean_uri="s3://no-such-clean-bucket/c",
            error_uri=ERROR_URI,
            s3_client=s3,
        )


def test_s3_a_failed_cleanup_after_the_commit_is_finished_by_the_next_delivery(s3: Any) -> None:
    """The commit stands when removing the old version's error file fails; a repeat cleans up."""
    run_s3(s3, make_log(days=1), version="e1")
    old_error = f"errors/date=2025-09-02/{error_name('s3://input/app.jsonl', 'e1')}"
    later = make_log(days=1)
    later_arrival = datetime(2025, 9, 9, tzinfo=timezone.utc)

    def refuse(**kwargs: Any) -> None:
        raise RuntimeError("simulated outage")

    s3.meta.events.register("before-call.s3.DeleteObjects", refuse)
    try:
        result = run_s3(s3, later, version="e2", arrival=later_arrival)
    finally:
        s3.meta.events.unregister("before-call.s3.DeleteObjects", refuse)
    assert not result.already_ingested
    assert old_error in s3_keys(s3, "error-bucket")  # not yet removed
    again = run_s3(s3, later, version="e2", arrival=later_arrival)
    assert again.already_ingested
    assert old_error not in s3_keys(s3, "error-bucket")
    assert_accounted(later, read_clean(CLEAN_URI, s3), s3_errors(s3))


def test_stored_result_answers_only_for_the_version_ingested(s3: Any) -> None:
    log = make_log(days=2)
    locations = {"clean_uri": CLEAN_URI, "error_uri": ERROR_URI}
    source = "s3://input/app.jsonl"
    assert stored_result(source=source, version="v1", s3_client=s3, **locations) is None
    result = run_s3(s3, log, version="v1")
    stored = stored_result(source=source, version="v1", s3_client=s3, **locations)
    assert stored is not None and stored.already_ingested
    assert (stored.processed, stored.valid, stored.errors, stored.blank, stored.bytes) == (
        result.processed,
        result.valid,
        result.errors,
        result.blank,
        result.bytes,
    )
    assert stored.error_counts == result.error_counts
    assert stored.error_keys == result.error_keys
    assert stored_result(source=source, version="v2", s3_client=s3, **locations) is None
    assert stored_result(source=source, version="", s3_client=s3, **locations) is None


def test_s3_uri_without_bucket_is_a_config_error(s3: Any) -> None:
    with pytest.raises(ConfigError, match="names no bucket"):
        ingest(io.BytesIO(b""), source="x", clean_uri="s3://", error_uri="s3://b", s3_client=s3)


def test_s3_a_version_whose_error_records_failed_is_cleaned_up_by_the_next(s3: Any) -> None:
    """v2 commits but its error file cannot be written (its run stops there, as if killed):
    v3 then removes v1's and v2's error records, keeping only its own."""
    run_s3(s3, make_log(days=1), version="v1")

    def refuse(params: dict[str, Any], **kwargs: Any) -> None:
        if params.get("Bucket") == "error-bucket" and "/date=" in params.get("Key", ""):
            raise RuntimeError("simulated: the error bucket went away")

    s3.meta.events.register("provide-client-params.s3.PutObject", refuse)
    try:
        with pytest.raises(OutputError, match="the rows are committed"):
            run_s3(s3, make_log(days=2), version="v2")
    finally:
        s3.meta.events.unregister("provide-client-params.s3.PutObject", refuse)
    latest = make_log(days=1, start=datetime(2025, 10, 1, tzinfo=timezone.utc))

    run_s3(s3, latest, version="v3")

    assert_accounted(latest, read_clean(CLEAN_URI, s3), s3_errors(s3))
    ledgers = [k for k in s3_keys(s3, "error-bucket") if "/_logsieve/sources/" in k]
    slug = source_id("s3://input/app.jsonl")
    assert [k.rsplit("/", 1)[-1] for k in ledgers] == [f"{slug}.{tag('v3')}.json"]


def test_appended_files_carry_the_statistics_delta_rs_would_write(tmp_path: Path) -> None:
    """Readers prune by the add actions' statistics: logsieve's own writer must give the same."""
    log = make_log(days=3)
    run(log, tmp_path)  # a new source: logsieve's data-file writer
    ours = DeltaTable(str(tmp_path / "clean"))
    theirs_uri = str(tmp_path / "theirs")
    write_deltalake(theirs_uri, read_clean(tmp_path / "clean"), partition_by=["date"])
    theirs = DeltaTable(theirs_uri)

    def stats(snapshot: DeltaTable) -> dict[str, dict[str, Any]]:
        actions = pa.table(snapshot.get_add_actions(flatten=True)).to_pylist()
        keep = ("num_records", "min.event_time", "max.event_time", "min.action", "max.action")
        return {a["partition.date"]: {k: a[k] for k in keep} for a in actions}

    assert stats(ours) == stats(theirs)
    assert len(ours.file_uris()) == len(set(log.valid.values()))


def test_statistics_hold_for_long_values_and_early_years(tmp_path: Path) -> None:
    """Parquet footers keep no min/max for values over 4 KiB, and years before 1000 need their
    zeros: the statistics come from the rows, as delta-rs's do, and pruning readers stay exact."""
    long_action, long_user = "x" * 5000, "L" * 5000
    lines = [
        b'{"timestamp":"2025-08-20T10:00:00Z","user_id":"u1","action":"login"}',
        b'{"timestamp":"2025-08-20T11:00:00Z","user_id":"%s","action":"%s"}'
        % (long_user.encode(), long_action.encode()),
        b'{"timestamp":"0999-06-01T10:00:00Z","user_id":"old","action":"login"}',
    ]
    run(b"\n".join(lines) + b"\n", tmp_path)
    dataset = DeltaTable(str(tmp_path / "clean")).to_pyarrow_dataset()
    field = pa.compute.field
    assert dataset.to_table(filter=field("action") == "login").num_rows == 2
    assert dataset.to_table(filter=field("action") == long_action).num_rows == 1
    assert dataset.to_table(filter=field("user_id") == long_user).num_rows == 1
    early = datetime(1500, 1, 1, tzinfo=timezone.utc)
    assert dataset.to_table(filter=field("event_time") < pa.scalar(early)).num_rows == 1


def test_a_source_over_many_more_dates_than_open_files_allowed(tmp_path: Path) -> None:
    """One open file per date would run out of file descriptors (Lambda allows 1,024)."""
    script = f"""
import io, resource
from datetime import date, timedelta
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
from logsieve.storage.ingest import ingest
day = date(2020, 1, 1)
lines = b"".join(
    b'{{"timestamp":"%sT10:00:00Z","user_id":"u","action":"login"}}\\n'
    % (day + timedelta(days=n % 600)).isoformat().encode()
    for n in range(6000)
)
result = ingest(io.BytesIO(lines), source="many-days", clean_uri={str(tmp_path / "clean")!r},
                error_uri={str(tmp_path / "errors")!r}, source_version="1")
print(result.valid)
"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "6000"
    rows = read_clean(tmp_path / "clean")
    assert rows.num_rows == 6000 and len(set(rows["date"].to_pylist())) == 600


# --- the log's transactions, read at once -----------------------------------------------------


def test_transactions_read_from_the_log_are_what_delta_rs_answers(tmp_path: Path) -> None:
    """Many sources' transaction numbers come from one read of the log segment (the latest
    checkpoint and the commits after it): the same answers delta-rs gives one id at a time,
    across checkpoints (every 10 commits), new versions and ids never recorded."""
    clean, errors = str(tmp_path / "clean"), str(tmp_path / "errors")
    names = [f"/logs/{i}.jsonl" for i in range(30)]
    for round_ in range(4):  # 4 x 8 commits: checkpoints at 10, 20, 30
        for start in range(0, 30, 4):
            ingest_group(
                [
                    source_of(n, make_log(days=1, per_day=2), f"v{round_}")
                    for n in names[start : start + 4]
                ],
                clean_uri=clean,
                error_uri=errors,
            )
    snapshot = DeltaTable(clean)
    assert any(
        p.name.endswith(".checkpoint.parquet") for p in (tmp_path / "clean/_delta_log").iterdir()
    )
    ids = [table.app_id(n) for n in [*names, "/logs/never.jsonl"]]
    files = table.data_files(clean)
    from_log = table.transaction_versions(snapshot, ids, files)
    whole_log = table.log_transactions(snapshot, files)
    assert whole_log is not None and len(whole_log) == len(names)
    assert from_log == {app: snapshot.transaction_version(app) for app in ids}
    assert from_log[table.app_id(names[0])] == table.version_number("v3")
    assert from_log[table.app_id("/logs/never.jsonl")] is None
    older = DeltaTable(clean, version=15)
    assert table.transaction_versions(older, ids, files) == {
        app: older.transaction_version(app) for app in ids
    }


def test_s3_transactions_read_from_the_log_and_a_group_replaced(s3: Any) -> None:
    """On S3 too: the log read through pyarrow's S3 filesystem with the client's settings, and a
    group's new versions replace its rows (files removed and rewritten) in one commit."""
    names = [f"s3://input/{i}.jsonl" for i in range(12)]
    logs = {n: make_log(days=2, per_day=3) for n in names}
    for version in ("v1", "v2"):
        if version == "v2":
            logs.update({n: make_log(days=2, per_day=4) for n in names[:5]})
        chosen = names if version == "v1" else names[:5]
        ingest_group(
            [source_of(n, logs[n], version) for n in chosen],
            clean_uri=CLEAN_URI,
            error_uri=ERROR_URI,
            s3_client=s3,
        )
    snapshot = table.open_table(CLEAN_URI, s3)
    assert snapshot is not None
    files = table.data_files(CLEAN_URI, s3)
    ids = [table.app_id(n) for n in names]
    assert table.log_transactions(snapshot, files) == {
        app: snapshot.transaction_version(app) for app in ids
    }
    rows = read_clean(CLEAN_URI, s3)
    for name, log in logs.items():
        mine = rows.filter(pa.compute.equal(rows["source_id"], name))
        assert sorted(seqs_of(mine)) == sorted(log.valid), name


# --- a commit whose reply is lost ---------------------------------------------------------------


class LosesOneCommitReply:
    """An HTTP proxy in front of the moto server that forwards everything, but after forwarding
    the first PUT of a Delta log entry closes the connection without the reply: the commit is
    stored, and the writer does not hear so (its retried PUT then gets 412)."""

    def __init__(self, endpoint: str) -> None:
        import http.client
        import re
        import socketserver
        from urllib.parse import urlsplit

        target = urlsplit(endpoint)
        self.dropped: list[str] = []
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while line := self.rfile.readline():
                    method, path, _ = line.decode().split(" ", 2)
                    headers: dict[str, str] = {}
                    while (header := self.rfile.readline().decode()) not in ("\r\n", "\n", ""):
                        key, value = header.split(":", 1)
                        headers[key.strip()] = value.strip()
                    length = int(
                        next((v for k, v in headers.items() if k.lower() == "content-length"), "0")
                    )
                    body = self.rfile.read(length)
                    upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                    upstream.request(method, path, body=body, headers=headers)
                    reply = upstream.getresponse()
                    data = reply.read()
                    if (
                        method == "PUT"
                        and re.search(r"_delta_log/\d{20}\.json", path)
                        and not proxy.dropped
                    ):
                        proxy.dropped.append(path)
                        return  # the connection closes: no reply
                    self.wfile.write(f"HTTP/1.1 {reply.status} {reply.reason}\r\n".encode())
                    length_of = {"HEAD": reply.getheader("Content-Length", "0")}
                    for key, value in reply.getheaders():
                        if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.wfile.write(f"{key}: {value}\r\n".encode())
                    size = length_of.get(method, str(len(data)))
                    self.wfile.write(f"Content-Length: {size}\r\n\r\n".encode() + data)
                    self.wfile.flush()

        class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("replace", [False, True], ids=["append", "replace"])
def test_s3_a_commit_whose_reply_is_lost_is_taken_as_committed(
    s3: Any, moto_endpoint: str, replace: bool
) -> None:
    """delta-rs reports such a commit as failed; taking that for a lost race would delete the
    data files the stored commit names (and with a replace, its neighbours' rewritten rows)."""
    import boto3

    first, neighbour = make_log(days=1, per_day=6), make_log(days=1, per_day=5)
    ingest_group(
        [source_of("s3://in/a", first), source_of("s3://in/b", neighbour)],
        clean_uri=CLEAN_URI,
        error_uri=ERROR_URI,
        s3_client=s3,
    )
    newer = make_log(days=1, per_day=4)
    name = "s3://in/a" if replace else "s3://in/new"
    proxy = LosesOneCommitReply(moto_endpoint)
    try:
        faulty = boto3.client("s3", region_name="us-east-1", endpoint_url=proxy.url)
        outcome = ingest_group(
            [source_of(name, newer, "v2")],
            clean_uri=CLEAN_URI,
            error_uri=ERROR_URI,
            s3_client=faulty,
        )
    finally:
        proxy.close()
    assert proxy.dropped, "the proxy never saw a commit"
    assert not outcome.failures and not outcome.results[name].already_ingested
    rows = read_clean(CLEAN_URI, s3)  # every data file the log names is there
    expected = {"s3://in/a": newer if replace else first, "s3://in/b": neighbour}
    if not replace:
        expected[name] = newer
    for source, log in expected.items():
        mine = rows.filter(pa.compute.equal(rows["source_id"], source))
        assert sorted(seqs_of(mine)) == sorted(log.valid), source


def test_s3_replaces_appends_compaction_and_readers_at_once(s3: Any) -> None:
    """On S3 (a moto server), with threads: two writers append new sources and replace earlier
    ones through logsieve's own commits, in groups that share files, while compaction rewrites
    the files and a reader reads snapshots. Every snapshot read holds each source at one of its
    versions, whole (never two versions, never a partial one), and the end is every source's
    latest version exactly once."""
    from logsieve.storage.compact import compact

    table.create_table(CLEAN_URI, s3)
    deadline = time.monotonic() + 8
    versions: dict[str, dict[str, Log]] = {}  # source -> version -> its log
    latest: dict[str, str] = {}
    lock = threading.Lock()
    failures: list[BaseException] = []
    done = threading.Event()
    snapshots: list[Counter[str]] = []

    def guarded(body: Any) -> Any:
        def run() -> None:
            try:
                body()
            except BaseException as exc:  # surfaces in the assertion below
                failures.append(exc)

        return run

    def writer(name: str) -> None:
        rng = random.Random(name)
        count = 0
        while time.monotonic() < deadline:
            group = []
            for _ in range(rng.randint(1, 3)):
                with lock:
                    mine = [s for s in latest if s.startswith(name)]
                if mine and rng.random() < 0.5:
                    source = rng.choice(mine)
                else:
                    source, count = f"{name}-{count}", count + 1
                if any(one.identity == f"s3://in/{source}" for one in group):
                    continue
                version = f"v{len(versions.get(source, {})) + 1}"
                log = make_log(days=2, per_day=rng.randint(2, 6))
                with lock:
                    versions.setdefault(source, {})[version] = log
                group.append(source_of(f"s3://in/{source}", log, version))
            retrying(
                lambda g=group: ingest_group(
                    g, clean_uri=CLEAN_URI, error_uri=ERROR_URI, s3_client=s3
                )
            )
            with lock:
                for one in group:
                    latest[one.identity.removeprefix("s3://in/")] = one.version

    def compactor() -> None:
        while not done.is_set():
            compact(CLEAN_URI, vacuum=False, s3_client=s3)
            time.sleep(0.2)

    def reader() -> None:
        while not done.is_set():
            rows = read_clean(CLEAN_URI, s3)
            snapshots.append(
                Counter(zip(rows["source_id"].to_pylist(), rows["source_version"].to_pylist()))
            )

    writers = [threading.Thread(target=guarded(lambda n=n: writer(n))) for n in ("a", "b")]
    others = [threading.Thread(target=guarded(f)) for f in (compactor, reader)]
    for thread in writers + others:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    for thread in others:
        thread.join()
    assert failures == []
    whole = {
        (f"s3://in/{source}", version): len(log.valid)
        for source, by_version in versions.items()
        for version, log in by_version.items()
    }
    assert len(snapshots) > 3
    for seen in snapshots:
        sources = [source for source, _ in seen]
        assert len(sources) == len(set(sources)), "a source with two versions at once"
        for key, count in seen.items():
            assert count == whole[key], f"{key}: {count} rows of {whole[key]}"
    rows = read_clean(CLEAN_URI, s3)
    assert rows.num_rows == sum(len(versions[s][v].valid) for s, v in latest.items())
    for source, version in latest.items():
        mine = rows.filter(pa.compute.equal(rows["source_id"], f"s3://in/{source}"))
        assert set(mine["source_version"].to_pylist()) == {version}
        assert sorted(seqs_of(mine)) == sorted(versions[source][version].valid)


def test_a_delete_waits_for_a_rewrite_of_the_same_error_file(tmp_path: Path) -> None:
    """A rewrite (a replay dropping lines, a group file losing a source) reads an error file and
    writes it back; a delete of that file meanwhile (a newer version's clean-up) must not be
    undone by the write, or lines no ledger names would come back."""
    from logsieve.storage.sinks import open_sink

    sink = open_sink(str(tmp_path / "errors"))
    key = "date=2025-08-20/app.jsonl-0123-4567.jsonl"
    sink.write(key, b'{"line":1}\n{"line":2}\n')
    reading, deleted = threading.Event(), threading.Event()

    def slow_transform(data: bytes) -> bytes:
        reading.set()
        deleted.wait(1)  # the delete cannot finish while the rewrite holds the file
        return data.splitlines(keepends=True)[0]

    rewriter = threading.Thread(target=lambda: sink.rewrite(key, slow_transform))
    rewriter.start()
    assert reading.wait(10)
    deleter = threading.Thread(target=lambda: (sink.delete([key]), deleted.set()))
    deleter.start()
    rewriter.join(10)
    deleter.join(10)
    assert sink.read(key) is None


def test_lineage_columns_fit_each_batch_as_batches_grow_and_shrink() -> None:
    from logsieve.storage.group_writer import _Lineage

    lineage = _Lineage(Source("id-1", "name", "v1", open=contextlib.nullcontext))
    for rows in (5, 100, 3, 0, 250, 100):
        columns = lineage.columns(rows)
        assert [column.to_pylist() for column in columns] == [
            ["id-1"] * rows,
            ["name"] * rows,
            ["v1"] * rows,
        ]


def test_files_placed_while_another_thread_empties_their_directory_all_arrive(
    tmp_path: Path,
) -> None:
    """A delete removes the partition directory it empties (a lost commit taking its data
    files back); a publish, write or create into that directory on another thread at the same
    moment must make it again, not fail with "File exists" or a missing directory."""
    from logsieve.storage.sinks import open_sink

    root = tmp_path / "clean"
    directory = "date=2025-08-20"
    failures: list[BaseException] = []

    def placing(writer: int) -> None:
        sink = open_sink(str(root))  # a sink per ingest, as concurrent ingests have
        staging = sink.staging_dir()
        try:
            for n in range(300):
                staged = staging / f"{writer}-{n}"
                staged.write_bytes(b"x")
                keys = [f"{directory}/{kind}-{writer}-{n}" for kind in ("p", "w", "c")]
                sink.publish(staged, keys[0])
                sink.write(keys[1], b"w")
                assert sink.create(keys[2], b"c")
                assert [sink.read(key) for key in keys] == [b"x", b"w", b"c"]
                sink.delete(keys)  # the last writer's delete empties the directory
        except BaseException as exc:  # surfaces in the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=placing, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert not (root / directory).exists()  # emptied at the end, and removed
