"""The data files' writer: the split of rows into dates (`_core.split_by_date`: slices of long
runs, gathers of mixed stretches) and the core's Parquet encoder (`_core.ParquetFile`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest

from logsieve import process
from logsieve._core import ParquetFile, read_columns, split_by_date
from logsieve.errors import ConfigError
from logsieve.storage import table


def test_rows_split_by_date_keep_every_row_once_in_order() -> None:
    # A long run of one date, a stretch where two dates interleave, a long run of the next.
    dates = ["2025-08-01"] * 3000 + ["2025-08-01", "2025-08-02"] * 50 + ["2025-08-02"] * 2000
    batch = pa.RecordBatch.from_pydict(
        {"n": list(range(len(dates))), "timestamp": [f"{d} 23:59:59" for d in dates]}
    )
    parts = split_by_date(batch, "timestamp")
    assert all(part.rows.schema == batch.schema for part in parts)
    got: dict[str, list[int]] = {}
    for part in parts:
        got.setdefault(part.date, []).extend(part.rows.column("n").to_pylist())
    expected: dict[str, list[int]] = {}
    for n, date in enumerate(dates):
        expected.setdefault(date, []).append(n)
    assert got == expected
    # Two slices and one gather per date of the mixed stretch: never a part per short run.
    assert [(p.date, p.rows.num_rows) for p in parts] == [
        ("2025-08-01", 3001),
        ("2025-08-02", 49),
        ("2025-08-01", 49),
        ("2025-08-02", 2001),
    ]
    assert split_by_date(batch.slice(0, 0), "timestamp") == []


def test_the_cores_rows_split_by_the_utc_date_of_their_instant() -> None:
    lines = [
        b'{"timestamp": "2025-08-19T23:30:00-02:00", "user_id": "a", "action": "login"}',
        b'{"timestamp": "2025-08-20T00:10:00+02:00", "user_id": "b", "action": "login"}',
        b'{"timestamp": 1755734400, "user_id": "c", "action": "view"}',
    ]
    clean = process(b"\n".join(lines)).clean
    parts = split_by_date(clean, "timestamp")
    # 01:30Z on the 20th; 22:10Z on the 19th; the epoch second is midnight of the 21st.
    assert [(p.date, p.rows.column("user_id").to_pylist()) for p in parts] == [
        ("2025-08-20", ["a"]),
        ("2025-08-19", ["b"]),
        ("2025-08-21", ["c"]),
    ]


def test_split_by_date_refuses_rows_without_a_date() -> None:
    rows = pa.RecordBatch.from_pydict({"t": ["2025-08-01 00:00:00", "yesterday"], "n": [1, 2]})
    with pytest.raises(ConfigError, match='row 1 of column "t" does not start with a YYYY-MM-DD'):
        split_by_date(rows, "t")
    with pytest.raises(ConfigError, match='no column "nope"'):
        split_by_date(rows, "nope")
    with pytest.raises(ConfigError, match='"n" must be text'):
        split_by_date(rows, "n")
    with_null = pa.RecordBatch.from_pydict({"t": ["2025-08-01 00:00:00", None]})
    with pytest.raises(ConfigError, match="nulls"):
        split_by_date(with_null, "t")
    with pytest.raises(TypeError, match="split_by_date\\(\\) takes record batches"):
        split_by_date(pa.array(["2025-08-01"]), "t")  # type: ignore[arg-type]


def _rows(start: int, n: int, schema: pa.Schema) -> pa.RecordBatch:
    """Rows in the data files' schema (the table's, without the partition column)."""
    instants = [1_754_000_000_000_000 + i * 1_000_000 for i in range(start, start + n)]
    columns: dict[str, pa.Array] = {
        "timestamp": pa.array([f"t{i}" for i in range(start, start + n)]),
        "day_of_week": pa.array(["Monday", "Tuesday"] * (n // 2) + ["Monday"] * (n % 2)),
        "event_time": pa.array(instants, pa.timestamp("us", tz="UTC")),
        "user_id": pa.array([f"user-{i * 7919 % 1000}" for i in range(start, start + n)]),
        "action": pa.array(["login", "logout", "view"] * (n // 3) + ["login"] * (n % 3)),
        "extra": pa.array([f'{{"n":{i}}}' if i % 5 else None for i in range(start, start + n)]),
    }
    for name in schema.names:
        columns.setdefault(name, pa.array(["lineage"] * n))
    return pa.RecordBatch.from_arrays([columns[name] for name in schema.names], schema=schema)


def test_parquet_file_rows_read_back_by_pyarrow_and_delta_readers(tmp_path: Path) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = table.stored_schema()
    path = tmp_path / "x.parquet"
    file = ParquetFile(
        path,
        schema,
        dictionary=["day_of_week", "action"],
        statistics=["event_time", "action", "user_id"],
    )
    pieces = [_rows(0, 700, schema), _rows(700, 300, schema).slice(10, 250), _rows(1000, 9, schema)]
    file.write(pieces[:2], 400)
    written = file.bytes_written
    file.write(pieces[2:], 400)
    assert file.bytes_written > written > 0
    file.close()
    file.close()  # a second close does nothing

    back = pq.read_table(path)
    # The summary (what the table's statistics are made of) is that of the rows written.
    assert file.rows == back.num_rows == 959
    summary = file.columns()
    assert list(summary) == schema.names
    for name in schema.names:
        assert summary[name].nulls == back.column(name).null_count, name
    low, high = pc.min_max(back.column("user_id")).values()
    assert (summary["user_id"].min, summary["user_id"].max) == (low.as_py(), high.as_py())
    micros = back.column("event_time").cast(pa.int64())
    assert summary["event_time"].min == pc.min(micros).as_py()
    assert summary["event_time"].max == pc.max(micros).as_py()
    assert summary["extra"].nulls > 0 and summary["extra"].min is None
    assert back.schema == schema
    assert back.equals(pa.Table.from_batches(pieces, schema))
    meta = pq.read_metadata(path)
    # A writer string parquet-mr can parse ("<app> version <v>"): it ignores the text statistics
    # of files whose writer it cannot name.
    assert meta.created_by.startswith("parquet-rs version ")
    # Row groups never span writes and hold at most the limit.
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [400, 400, 150, 9]
    names = schema.names
    first = meta.row_group(0)
    action = first.column(names.index("action"))
    assert action.statistics.min == "login" and action.statistics.max == "view"
    assert action.has_dictionary_page
    assert not first.column(names.index("user_id")).has_dictionary_page
    assert not first.column(names.index("extra")).is_stats_set
    assert {first.column(i).compression for i in range(len(names))} == {"ZSTD"}
    assert "DELTA_BYTE_ARRAY" not in first.column(names.index("extra")).encodings
    # The core's own reader (the API's) reads the file too.
    scan = read_columns([path], pa.schema([schema.field("action"), schema.field("event_time")]))
    assert scan.failed == {}
    assert scan.rows.column("action").to_pylist() == back.column("action").to_pylist()


def test_parquet_file_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    schema = table.stored_schema()
    with pytest.raises(ConfigError, match='no column "nope"'):
        ParquetFile(tmp_path / "a.parquet", schema, dictionary=["nope"], statistics=[])
    with pytest.raises(OSError):
        ParquetFile(tmp_path / "missing" / "a.parquet", schema, dictionary=[], statistics=[])
    file = ParquetFile(tmp_path / "b.parquet", schema, dictionary=[], statistics=[])
    other = pa.RecordBatch.from_pydict({"n": [1, 2]})
    with pytest.raises(ConfigError, match="another schema"):
        file.write([other], 10)
    with pytest.raises(TypeError, match="record batches"):
        file.write([object()], 10)  # type: ignore[list-item]
    file.close()
    with pytest.raises(ValueError, match="closed"):
        file.write([_rows(0, 3, schema)], 10)


def test_parquet_file_writes_from_threads_take_turns(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    schema = table.stored_schema()
    path = tmp_path / "c.parquet"
    file = ParquetFile(path, schema, dictionary=["action"], statistics=["event_time"])
    batches = [_rows(i * 100, 100, schema) for i in range(16)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda b: file.write([b], 64), batches))
    file.close()
    back = pq.read_table(path)
    assert back.num_rows == 1600
    # Each write's rows stay together and whole, in some order.
    assert sorted(back.column("timestamp").to_pylist()) == sorted(f"t{i}" for i in range(1600))
    assert pq.read_metadata(path).num_row_groups == 32


def test_parquet_file_after_a_failed_write_says_so_and_names_the_file(tmp_path: Path) -> None:
    schema = table.stored_schema()
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full here")
    file = ParquetFile(full, schema, dictionary=[], statistics=[])
    with pytest.raises(OSError, match="/dev/full") as first:
        file.write([_rows(0, 50_000, schema)], 64 * 1024)
        file.close()  # the buffered bytes may only reach the device here
    assert "please report" not in str(first.value)
    with pytest.raises(OSError, match="incomplete after an earlier failure"):
        file.write([_rows(0, 10, schema)], 64)
    with pytest.raises(OSError, match="incomplete after an earlier failure"):
        file.close()


def test_parquet_file_refuses_rows_it_cannot_hold_and_stays_usable(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    schema = table.stored_schema()
    path = tmp_path / "d.parquet"
    file = ParquetFile(path, schema, dictionary=[], statistics=["user_id"])
    good = _rows(0, 5, schema)
    with_nulls = good.set_column(
        schema.get_field_index("user_id"),
        pa.field("user_id", pa.string(), nullable=False),
        pa.array(["a", None, "c", "d", "e"]),
    )
    with pytest.raises(ConfigError, match='"user_id" has no nulls'):
        file.write([with_nulls], 10)
    with pytest.raises(TypeError, match="record batches"):
        file.write([pa.array([1, 2])], 10)  # type: ignore[list-item]
    struct = pa.StructArray.from_arrays([pa.array([1, None])], ["n"], mask=pa.array([False, True]))
    with pytest.raises(TypeError, match="record batches"):
        file.write([struct], 10)  # type: ignore[list-item]
    file.write([good], 10)
    file.close()
    assert pq.read_table(path).num_rows == 5


def test_column_summary_has_no_extremes_for_text_that_is_not_utf8(tmp_path: Path) -> None:
    schema = pa.schema([pa.field("t", pa.string())])
    # pyarrow does not validate arrays built from buffers; a producer could hand such bytes.
    offsets = pa.py_buffer(pa.array([0, 1, 2], pa.int32()).buffers()[1])
    bad = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"a\xff")])
    file = ParquetFile(tmp_path / "e.parquet", schema, dictionary=[], statistics=["t"])
    file.write([pa.RecordBatch.from_arrays([bad], schema=schema)], 10)
    file.close()
    summary = file.columns()["t"]
    assert (summary.nulls, summary.min, summary.max) == (0, None, None)
