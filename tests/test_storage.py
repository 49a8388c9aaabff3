"""Storage: partitioned Parquet + error JSON Lines, locally and on S3 (moto), idempotent."""

from __future__ import annotations

import gzip
import io
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from logsieve.errors import ConcurrentIngestError, ConfigError, OutputError, SourceError
from logsieve.sources import decompressing
from logsieve.storage import IngestResult, ingest, raw_bytes, source_id, stored_result

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


def read_clean(root: Path) -> pa.Table:
    return ds.dataset(root, format="parquet", partitioning="hive").to_table()


def read_errors(root: Path) -> list[dict]:
    records = []
    for path in sorted(root.rglob("*.jsonl")):
        records.extend(orjson.loads(line) for line in path.read_bytes().splitlines())
    return records


def data_files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not str(p.relative_to(root)).startswith("_")
    )


def run(
    log_or_data: Log | bytes, tmp_path: Path, source: str = "/logs/app.jsonl", **kw
) -> IngestResult:
    data = log_or_data.data if isinstance(log_or_data, Log) else log_or_data
    kw.setdefault("arrival", ARRIVAL)
    return ingest(
        io.BytesIO(data),
        source=source,
        clean_uri=str(tmp_path / "clean"),
        error_uri=str(tmp_path / "errors"),
        **kw,
    )


def assert_accounted(log: Log, table: pa.Table, errors: list[dict]) -> None:
    """Every non-blank input line is in exactly one output, with its content intact."""
    extras = table.column("extra").to_pylist() if table.num_rows else []
    seqs = [orjson.loads(extra)["seq"] for extra in extras]
    assert sorted(seqs) == sorted(log.valid)
    assert Counter(seqs) == Counter(set(seqs))  # no duplicates
    assert {r["line"]: r["error"] for r in errors} == log.invalid
    assert len(errors) == len(log.invalid)
    for record in errors:
        assert raw_bytes(record) == log.lines[record["line"] - 1]


# --- source ids ---------------------------------------------------------------------------------


def test_source_id_is_stable_safe_and_distinct() -> None:
    sources = [
        "s3://bucket/logs/2025/app.jsonl.gz",
        "s3://bucket/other/2025/app.jsonl.gz",
        "s3://bucket/logs/my file+ü (1).jsonl",
        "/var/log/app.jsonl",
        "stdin-0123456789abcdef",
        "s3://bucket/dir/",
    ]
    ids = [source_id(s) for s in sources]
    assert ids == [source_id(s) for s in sources]
    assert len(set(ids)) == len(ids)
    for sid in ids:
        assert re.fullmatch(r"[A-Za-z0-9._-]{1,90}", sid), sid
    assert ids[0].startswith("app.jsonl.gz-")


def test_source_id_refuses_empty_source() -> None:
    with pytest.raises(ConfigError):
        source_id("")


# --- local sink ---------------------------------------------------------------------------------


def test_ingest_writes_partitioned_parquet_and_error_lines(tmp_path: Path) -> None:
    log = make_log()
    result = run(log, tmp_path)
    sid = source_id("/logs/app.jsonl")

    dates = sorted(set(log.valid.values()))
    assert len(dates) >= 3
    assert data_files(tmp_path / "clean") == [f"date={d}/{sid}.parquet" for d in dates]
    assert data_files(tmp_path / "errors") == [f"date=2025-09-02/{sid}.jsonl"]
    assert result.clean_keys == [
        str(tmp_path / "clean" / k) for k in data_files(tmp_path / "clean")
    ]
    assert result.error_keys == [str(tmp_path / "errors" / f"date=2025-09-02/{sid}.jsonl")]

    assert result.processed == len(log.valid) + len(log.invalid)
    assert (result.valid, result.errors, result.blank) == (
        len(log.valid),
        len(log.invalid),
        len(log.blank),
    )
    assert result.bytes == len(log.data)
    assert result.error_counts == dict(Counter(log.invalid.values()))
    assert result.sample_errors == [
        {"line": n, "error": log.invalid[n], "detail": result.sample_errors[i]["detail"]}
        for i, n in enumerate(sorted(log.invalid)[:5])
    ]
    summary = result.summary()
    assert (summary["processed"], summary["valid"], summary["errors"]) == (
        result.processed,
        result.valid,
        result.errors,
    )
    orjson.dumps(summary)  # JSON-ready

    table = read_clean(tmp_path / "clean")
    errors = read_errors(tmp_path / "errors")
    assert table.num_rows == result.valid
    assert_accounted(log, table, errors)
    assert {r["source"] for r in errors} == {"/logs/app.jsonl"}
    assert all(isinstance(r["detail"], str) and r["detail"] for r in errors)


def test_partition_column_comes_from_the_path_and_matches_event_time(tmp_path: Path) -> None:
    log = make_log()
    run(log, tmp_path)
    for path in (tmp_path / "clean").rglob("*.parquet"):
        assert pq.read_schema(path).names == CLEAN_COLUMNS  # no `date` inside the files
    table = read_clean(tmp_path / "clean")
    assert table.column_names == [*CLEAN_COLUMNS, "date"]
    event_dates = [t.strftime("%Y-%m-%d") for t in table.column("event_time").to_pylist()]
    assert table.column("date").to_pylist() == event_dates
    assert Counter(event_dates) == Counter(log.valid.values())
    seqs = [orjson.loads(x)["seq"] for x in table.column("extra").to_pylist()]
    assert [log.valid[s] for s in seqs] == event_dates


def test_parquet_schema_compression_dictionary_and_statistics(tmp_path: Path) -> None:
    run(make_log(), tmp_path)
    path = next((tmp_path / "clean").rglob("*.parquet"))
    schema = pq.read_schema(path)
    assert schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    for name in ("timestamp", "day_of_week", "user_id", "action", "extra"):
        assert schema.field(name).type == pa.string()
    metadata = pq.ParquetFile(path).metadata
    row_group = metadata.row_group(0)
    columns = {row_group.column(i).path_in_schema: row_group.column(i) for i in range(6)}
    for name, column in columns.items():
        assert column.compression == "ZSTD"
        # statistics on every column but `extra`, whose JSON text min/max would prune nothing
        assert column.is_stats_set == (name != "extra"), name
    for name in ("day_of_week", "action"):
        assert any("DICTIONARY" in enc for enc in columns[name].encodings), name
    stats = columns["event_time"].statistics
    table = pq.read_table(path)
    assert stats.min == min(table.column("event_time").to_pylist())
    assert stats.max == max(table.column("event_time").to_pylist())


def test_small_chunks_give_the_same_output_as_one_chunk(tmp_path: Path) -> None:
    log = make_log(days=4, per_day=60)
    run(log, tmp_path / "big")
    result = run(log, tmp_path / "small", chunk_size=256)
    big = read_clean(tmp_path / "big" / "clean").sort_by("extra")
    small = read_clean(tmp_path / "small" / "clean").sort_by("extra")
    assert small.equals(big)
    assert read_errors(tmp_path / "small" / "errors") == read_errors(tmp_path / "big" / "errors")
    assert result.valid == len(log.valid)
    for path in (tmp_path / "small" / "clean").rglob("*.parquet"):
        assert pq.ParquetFile(path).metadata.num_row_groups == 1  # rows coalesced, not 1 per chunk


@pytest.mark.parametrize("interleave", [1, 7, 500])
@pytest.mark.parametrize("chunk_size", [8 << 20, 4096])
def test_rows_of_each_date_keep_their_input_order(
    tmp_path: Path, interleave: int, chunk_size: int
) -> None:
    # Dates alternate every `interleave` rows: from a few long runs of one date to many short
    # ones, so batches are split into slices as well as reordered by date.
    log = Log()
    start = datetime(2025, 8, 20, 12, 0, tzinfo=timezone.utc)
    for i in range(3000):
        day = (i // interleave) % 3
        log.add_valid(start + timedelta(days=day, seconds=(i * 7919) % 3600))
        if i % 100 == 0:
            log.add_invalid(*BAD_LINES[i % len(BAD_LINES)])
    run(log, tmp_path, chunk_size=chunk_size)
    files = sorted((tmp_path / "clean").rglob("*.parquet"))
    assert len(files) == 3
    for path in files:
        table = pq.read_table(path)
        seqs = [orjson.loads(extra)["seq"] for extra in table.column("extra").to_pylist()]
        date = path.parent.name.removeprefix("date=")
        assert seqs == sorted(n for n, d in log.valid.items() if d == date)
    assert_accounted(log, read_clean(tmp_path / "clean"), read_errors(tmp_path / "errors"))


@pytest.mark.parametrize("times", [2, 3])
def test_reingesting_the_same_source_never_duplicates(tmp_path: Path, times: int) -> None:
    log = make_log()
    first = run(log, tmp_path)
    files = data_files(tmp_path / "clean") + data_files(tmp_path / "errors")
    for _ in range(times - 1):
        again = run(log, tmp_path)
        assert again.summary() | {"seconds": 0} == first.summary() | {"seconds": 0}
    assert data_files(tmp_path / "clean") + data_files(tmp_path / "errors") == files
    assert_accounted(log, read_clean(tmp_path / "clean"), read_errors(tmp_path / "errors"))


def test_reingest_with_fewer_dates_and_no_errors_removes_stale_files(tmp_path: Path) -> None:
    first = make_log(days=4)
    run(first, tmp_path)
    other = make_log(days=2)
    run(other, tmp_path, source="/logs/other.jsonl")  # shares dates with the first source
    before_other = data_files(tmp_path / "clean")

    smaller = Log()
    smaller.add_valid(datetime(2025, 8, 20, 22, 0, tzinfo=timezone.utc))
    smaller.add_valid(datetime(2025, 8, 20, 23, 0, tzinfo=timezone.utc))
    result = run(smaller, tmp_path, arrival=datetime(2025, 9, 5, tzinfo=timezone.utc))
    sid = source_id("/logs/app.jsonl")

    assert result.error_keys == []
    stale = len(set(first.valid.values()) - {"2025-08-20"}) + 1  # other dates + the error file
    assert len(result.removed_keys) == stale
    mine = [f for f in data_files(tmp_path / "clean") if sid in f]
    assert mine == [f"date=2025-08-20/{sid}.parquet"]
    assert [f for f in data_files(tmp_path / "errors") if sid in f] == []
    theirs = [f for f in before_other if source_id("/logs/other.jsonl") in f]
    assert [f for f in data_files(tmp_path / "clean") if f not in mine] == theirs
    # emptied date directories go away with the files
    assert sorted(p.name for p in (tmp_path / "clean").iterdir() if not p.name.startswith("_")) == (
        sorted({f.split("/")[0] for f in data_files(tmp_path / "clean")})
    )
    table = read_clean(tmp_path / "clean")
    assert table.num_rows == 2 + len(other.valid)


def test_reingest_with_new_arrival_moves_the_error_file(tmp_path: Path) -> None:
    log = make_log(days=1)
    run(log, tmp_path, arrival=datetime(2025, 9, 1, 12, tzinfo=timezone.utc))
    run(log, tmp_path, arrival=datetime(2025, 9, 3, 12, tzinfo=timezone.utc))
    sid = source_id("/logs/app.jsonl")
    assert data_files(tmp_path / "errors") == [f"date=2025-09-03/{sid}.jsonl"]
    assert len(read_errors(tmp_path / "errors")) == len(log.invalid)


def test_naive_arrival_is_taken_as_utc(tmp_path: Path) -> None:
    run(b"nope\n", tmp_path, arrival=datetime(2025, 1, 2, 23, 59))
    assert data_files(tmp_path / "errors")[0].startswith("date=2025-01-02/")


def test_empty_input_writes_nothing_and_clears_earlier_output(tmp_path: Path) -> None:
    result = run(b"", tmp_path)
    assert (result.processed, result.valid, result.errors, result.blank) == (0, 0, 0, 0)
    assert data_files(tmp_path / "clean") == []
    run(make_log(days=1), tmp_path)
    assert data_files(tmp_path / "clean")
    cleared = run(b"\n\n  \n", tmp_path)
    assert (cleared.processed, cleared.blank) == (0, 3)
    assert data_files(tmp_path / "clean") == data_files(tmp_path / "errors") == []


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
            assert "raw" not in by_line[number]
            assert "raw_base64" in by_line[number]
        else:
            assert by_line[number]["raw"] == text
            assert "raw_base64" not in by_line[number]


def failing_stream(data: bytes, fail_after: int) -> Iterator[bytes]:
    yield data[:fail_after]
    raise OSError("connection reset by peer")


def test_failure_mid_source_publishes_nothing_and_keeps_old_output(tmp_path: Path) -> None:
    old = make_log(days=2)
    run(old, tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    new = make_log(days=5, start=datetime(2024, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(OSError, match="connection reset"):
        ingest(
            failing_stream(new.data, len(new.data) // 2),
            source="/logs/app.jsonl",
            clean_uri=str(tmp_path / "clean"),
            error_uri=str(tmp_path / "errors"),
            chunk_size=1024,
        )
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # no partial file anywhere, staging cleaned up


def test_truncated_gzip_source_fails_whole(tmp_path: Path) -> None:
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
    assert data_files(tmp_path / "clean") == data_files(tmp_path / "errors") == []


def test_tampered_manifest_never_deletes_foreign_files(tmp_path: Path) -> None:
    run(make_log(days=1), tmp_path)
    victim = tmp_path / "clean" / "date=2025-08-20" / "someone-else.parquet"
    victim.write_bytes(b"not ours")
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    manifest = (
        tmp_path / "clean" / "_logsieve" / "manifests" / f"{source_id('/logs/app.jsonl')}.json"
    )
    content = orjson.loads(manifest.read_bytes())
    content["clean"] += ["date=2025-08-20/someone-else.parquet", "../precious.txt"]
    manifest.write_bytes(orjson.dumps(content))
    run(b"", tmp_path)
    assert victim.read_bytes() == b"not ours"
    assert outside.read_text() == "keep me"


def test_local_concurrent_ingests_of_one_source_are_detected_then_repaired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on S3: the run whose final manifest loses fails loudly; a retry leaves one run's files."""
    first = make_log(days=3)
    other = make_log(days=2, start=datetime(2025, 9, 20, tzinfo=timezone.utc))
    rename = os.replace
    interleaved: list[IngestResult] = []
    started = []

    def rename_then_let_another_run_publish(src: Any, dst: Any) -> None:
        rename(src, dst)
        if not started and str(dst).endswith(".parquet"):
            started.append(dst)
            interleaved.append(run(other, tmp_path))  # the same source, start to finish

    monkeypatch.setattr(os, "replace", rename_then_let_another_run_publish)
    with pytest.raises(ConcurrentIngestError, match="ingest it again to repair it"):
        run(first, tmp_path)
    monkeypatch.undo()

    manifest = orjson.loads(
        (
            tmp_path / "clean" / "_logsieve" / "manifests" / f"{source_id('/logs/app.jsonl')}.json"
        ).read_bytes()
    )
    assert len(interleaved) == 1 and manifest["complete"] is False
    assert set(data_files(tmp_path / "clean")) <= set(manifest["clean"])
    # The other run's dates, which the first run's output never had, are named there too.
    sid = source_id("/logs/app.jsonl")
    assert {f"date={d}/{sid}.parquet" for d in set(other.valid.values())} <= set(manifest["clean"])

    result = run(first, tmp_path)  # the retry
    assert data_files(tmp_path / "clean") == sorted(
        f"date={d}/{sid}.parquet" for d in set(first.valid.values())
    )
    assert read_clean(tmp_path / "clean").num_rows == result.valid == len(first.valid)


def test_unwritable_output_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot create output directory"):
        ingest(io.BytesIO(b""), source="s", clean_uri=str(blocker / "c"), error_uri=str(tmp_path))


# --- S3 sink (moto) -----------------------------------------------------------------------------


@pytest.fixture
def s3():
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in ("clean-bucket", "error-bucket"):
            client.create_bucket(Bucket=bucket)
        yield client


def s3_keys(client, bucket: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def download(client, bucket: str, prefix: str, target: Path) -> Path:
    for key in s3_keys(client, bucket):
        if key.startswith(prefix + "/") and "/_logsieve/" not in key:
            path = target / key[len(prefix) + 1 :]
            path.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(path))
    return target


def run_s3(client, log: Log, source: str = "s3://input/app.jsonl") -> IngestResult:
    return ingest(
        io.BytesIO(log.data),
        source=source,
        clean_uri="s3://clean-bucket/clean",
        error_uri="s3://error-bucket/errors/",
        arrival=ARRIVAL,
        s3_client=client,
    )


def test_s3_sink_writes_the_same_layout(s3, tmp_path: Path) -> None:
    log = make_log()
    result = run_s3(s3, log)
    sid = source_id("s3://input/app.jsonl")
    dates = sorted(set(log.valid.values()))
    assert s3_keys(s3, "clean-bucket") == [
        f"clean/_logsieve/manifests/{sid}.json",
        *[f"clean/date={d}/{sid}.parquet" for d in dates],
    ]
    assert s3_keys(s3, "error-bucket") == [f"errors/date=2025-09-02/{sid}.jsonl"]
    assert result.clean_keys == [f"clean/date={d}/{sid}.parquet" for d in dates]
    assert result.error_keys == [f"errors/date=2025-09-02/{sid}.jsonl"]

    table = read_clean(download(s3, "clean-bucket", "clean", tmp_path / "clean"))
    errors = read_errors(download(s3, "error-bucket", "errors", tmp_path / "errors"))
    assert table.num_rows == result.valid
    assert_accounted(log, table, errors)
    assert {r["source"] for r in errors} == {"s3://input/app.jsonl"}


def test_s3_same_event_three_times_then_changed_content(s3, tmp_path: Path) -> None:
    log = make_log(days=3)
    for _ in range(3):
        run_s3(s3, log)
    keys = s3_keys(s3, "clean-bucket")
    assert len(keys) == 1 + len(set(log.valid.values()))
    table = read_clean(download(s3, "clean-bucket", "clean", tmp_path / "a"))
    assert table.num_rows == len(log.valid)

    smaller = Log()
    for minute in range(5):
        smaller.add_valid(datetime(2025, 8, 21, 12, minute, tzinfo=timezone.utc))
    result = run_s3(s3, smaller)
    assert result.errors == 0 and result.valid == 5
    assert s3_keys(s3, "error-bucket") == []
    sid = source_id("s3://input/app.jsonl")
    assert s3_keys(s3, "clean-bucket") == [
        f"clean/_logsieve/manifests/{sid}.json",
        *[f"clean/date={d}/{sid}.parquet" for d in sorted(set(smaller.valid.values()))],
    ]
    table = read_clean(download(s3, "clean-bucket", "clean", tmp_path / "b"))
    assert table.num_rows == 5


def test_s3_manifest_records_what_was_written(s3) -> None:
    log = make_log(days=2)
    result = run_s3(s3, log)
    sid = source_id("s3://input/app.jsonl")
    body = s3.get_object(Bucket="clean-bucket", Key=f"clean/_logsieve/manifests/{sid}.json")["Body"]
    manifest = orjson.loads(body.read())
    assert manifest["source"] == "s3://input/app.jsonl"
    assert manifest["complete"] is True
    assert ["clean/" + k for k in manifest["clean"]] == result.clean_keys
    assert ["errors/" + k for k in manifest["errors"]] == result.error_keys
    assert manifest["stats"]["valid"] == len(log.valid)


def test_s3_concurrent_ingests_of_one_source_are_detected_then_repaired(s3, tmp_path: Path) -> None:
    """Two runs publishing one source at once: the loser fails loudly, a retry repairs all."""
    import boto3

    first = make_log(days=3)
    other = make_log(days=2, start=datetime(2025, 9, 20, tzinfo=timezone.utc))
    other_client = boto3.client("s3", region_name="us-east-1")
    interleaved = []

    def other_run_meanwhile(params, **kwargs) -> None:
        if not interleaved and params.get("Key", "").endswith(".parquet"):
            interleaved.append(run_s3(other_client, other))

    s3.meta.events.register("provide-client-params.s3.PutObject", other_run_meanwhile)
    try:
        with pytest.raises(ConcurrentIngestError, match="ingest it again to repair it"):
            run_s3(s3, first)
    finally:
        s3.meta.events.unregister("provide-client-params.s3.PutObject", other_run_meanwhile)

    # Both runs' files exist now, and the manifest names every one of them.
    sid = source_id("s3://input/app.jsonl")
    manifest_key = f"clean/_logsieve/manifests/{sid}.json"
    manifest = orjson.loads(s3.get_object(Bucket="clean-bucket", Key=manifest_key)["Body"].read())
    assert manifest["complete"] is False
    stored = [k for k in s3_keys(s3, "clean-bucket") if k != manifest_key]
    both = set(first.valid.values()) | set(other.valid.values())
    assert len(interleaved) == 1
    assert sorted(stored) == [f"clean/date={d}/{sid}.parquet" for d in sorted(both)]
    assert set(stored) <= {f"clean/{k}" for k in manifest["clean"]}

    result = run_s3(s3, first)  # the retry
    assert s3_keys(s3, "clean-bucket") == sorted([manifest_key, *result.clean_keys])
    table = read_clean(download(s3, "clean-bucket", "clean", tmp_path / "clean"))
    assert table.num_rows == len(first.valid)


def test_s3_missing_error_bucket_is_an_output_error_and_keeps_the_manifest(s3) -> None:
    log = make_log(days=1)
    with pytest.raises(OutputError, match=r"cannot write the output to .*NoSuchBucket"):
        ingest(
            io.BytesIO(log.data),
            source="s3://input/app.jsonl",
            clean_uri="s3://clean-bucket/clean",
            error_uri="s3://no-such-error-bucket/errors",
            s3_client=s3,
        )
    # The clean files went up before the error file failed: a manifest names them, so that
    # the next ingest, whatever it writes, removes those it does not write again.
    sid = source_id("s3://input/app.jsonl")
    manifest_key = f"clean/_logsieve/manifests/{sid}.json"
    published = [k for k in s3_keys(s3, "clean-bucket") if k != manifest_key]
    assert published
    manifest = orjson.loads(s3.get_object(Bucket="clean-bucket", Key=manifest_key)["Body"].read())
    assert manifest["complete"] is False
    assert {f"clean/{k}" for k in manifest["clean"]} >= set(published)

    later = make_log(days=1, start=datetime(2025, 10, 1, 12, tzinfo=timezone.utc))
    result = run_s3(s3, later)
    assert s3_keys(s3, "clean-bucket") == sorted([manifest_key, *result.clean_keys])


def test_stored_result_answers_only_for_the_version_ingested(s3) -> None:
    log = make_log(days=2)
    locations = {"clean_uri": "s3://clean-bucket/clean", "error_uri": "s3://error-bucket/errors/"}
    source = "s3://input/app.jsonl"
    assert stored_result(source=source, version="v1", s3_client=s3, **locations) is None
    result = ingest(
        io.BytesIO(log.data),
        source=source,
        arrival=ARRIVAL,
        s3_client=s3,
        source_version="v1",
        **locations,
    )
    stored = stored_result(source=source, version="v1", s3_client=s3, **locations)
    assert stored is not None
    assert (stored.processed, stored.valid, stored.errors, stored.blank, stored.bytes) == (
        result.processed,
        result.valid,
        result.errors,
        result.blank,
        result.bytes,
    )
    assert stored.error_counts == result.error_counts
    assert (stored.clean_keys, stored.error_keys) == (result.clean_keys, result.error_keys)
    assert stored_result(source=source, version="v2", s3_client=s3, **locations) is None
    assert stored_result(source=source, version="", s3_client=s3, **locations) is None


def test_s3_uri_without_bucket_is_a_config_error(s3) -> None:
    with pytest.raises(ConfigError, match="names no bucket"):
        ingest(io.BytesIO(b""), source="x", clean_uri="s3://", error_uri="s3://b", s3_client=s3)


def test_s3_large_files_go_up_as_multipart_uploads(s3, monkeypatch, tmp_path: Path) -> None:
    import hashlib

    from logsieve import storage

    monkeypatch.setattr(storage, "MULTIPART_THRESHOLD", 5 << 20)
    monkeypatch.setattr(storage, "MULTIPART_CHUNKSIZE", 5 << 20)
    # incompressible extras so that one day's Parquet file is well above 5 MiB
    lines = [
        b'{"timestamp":"2025-08-20T10:00:00Z","user_id":%d,"action":"login","pad":"%s"}'
        % (
            i,
            (
                hashlib.sha512(b"a%d" % i).hexdigest() + hashlib.sha512(b"b%d" % i).hexdigest()
            ).encode(),
        )
        for i in range(60_000)
    ]
    log = Log(lines=lines, valid={n: "2025-08-20" for n in range(1, len(lines) + 1)})
    result = ingest(
        io.BytesIO(b"\n".join(lines)),
        source="s3://input/big.jsonl",
        clean_uri="s3://clean-bucket/clean",
        error_uri="s3://error-bucket/errors",
        s3_client=s3,
    )
    (key,) = result.clean_keys
    head = s3.head_object(Bucket="clean-bucket", Key=key)
    assert head["ContentLength"] > 5 << 20
    parts = -(-head["ContentLength"] // (5 << 20))
    assert head["ETag"].strip('"').endswith(f"-{parts}")  # S3's ETag of a multipart upload
    table = read_clean(download(s3, "clean-bucket", "clean", tmp_path / "clean"))
    assert table.num_rows == result.valid == len(log.valid)


def test_stale_staging_of_a_killed_process_is_swept(tmp_path: Path) -> None:
    import os
    import time

    staging = tmp_path / "clean" / "_logsieve" / "staging"
    old, recent = staging / "tmpold", staging / "tmprecent"
    for directory in (old, recent):
        directory.mkdir(parents=True)
        (directory / "2025-08-20.parquet").write_bytes(b"half written")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    run(make_log(days=1), tmp_path)
    assert not old.exists()
    assert (recent / "2025-08-20.parquet").read_bytes() == b"half written"  # may be in use
