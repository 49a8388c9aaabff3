"""`logsieve._core.read_columns`: columns of many small Parquet files, read by the core."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from logsieve import _core
from logsieve.errors import ConfigError

ACTION = pa.schema([("action", pa.string())])
TIMES = pa.schema([("action", pa.string()), ("event_time", pa.timestamp("us", tz="UTC"))])


def write(path: Path, actions: list[str], compression: str = "zstd") -> Path:
    table = pa.table({"user_id": ["u"] * len(actions), "action": actions})
    pq.write_table(table, path, compression=compression)
    return path


def test_paths_and_bytes_give_the_rows_of_each_file_in_order(tmp_path: Path) -> None:
    files = [
        write(tmp_path / "a.parquet", ["login", "view"]),
        write(tmp_path / "b.parquet", [], "snappy"),
        write(tmp_path / "c.parquet", ["logout"], "snappy"),
    ]
    for inputs in ([str(f) for f in files], [f.read_bytes() for f in files], files):
        scan = _core.read_columns(inputs, ACTION)
        assert scan.failed == {}
        assert scan.rows.to_pydict() == {"file": [0, 0, 2], "action": ["login", "view", "logout"]}


def test_files_it_cannot_read_are_named_with_the_reason(tmp_path: Path) -> None:
    good = write(tmp_path / "good.parquet", ["login"])
    brotli = write(tmp_path / "brotli.parquet", ["view"], "brotli")  # a codec the core lacks
    missing = tmp_path / "missing.parquet"
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"action": pa.array([1, 2])}), other)  # another type than asked
    scan = _core.read_columns([good, b"not parquet", brotli, missing, other], ACTION)
    assert scan.rows.to_pydict() == {"file": [0], "action": ["login"]}
    assert sorted(scan.failed) == [1, 2, 3, 4]
    assert "No such file" in scan.failed[3]
    assert "Int64" in scan.failed[4]
    assert "no column" in _core.read_columns([good], pa.schema([("nope", pa.string())])).failed[0]


@pytest.mark.parametrize("odd_first", [True, False])
def test_types_are_the_schemas_whatever_the_order_of_files(tmp_path: Path, odd_first: bool) -> None:
    """A file with nanosecond times (or strings a writer hinted as large) is checked against
    the schema asked for, not against whichever file came first."""
    instants = pa.array([1_755_684_000_000_000_001], pa.timestamp("ns", tz="UTC"))
    odd = tmp_path / "nanos.parquet"
    pq.write_table(pa.table({"action": ["login"], "event_time": instants}), odd)
    large = tmp_path / "large.parquet"
    micros = pa.array([1_755_684_000_000_000], pa.timestamp("us", tz="UTC"))
    pq.write_table(
        pa.table({"action": pa.array(["view"], pa.large_string()), "event_time": micros}), large
    )
    files = [odd, large] if odd_first else [large, odd]
    scan = _core.read_columns(files, TIMES)
    assert scan.rows.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert scan.rows.column("action").to_pylist() == ["view"]
    assert list(scan.failed) == [files.index(odd)]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="paths"):
        _core.read_columns([3], ACTION)
    with pytest.raises(TypeError, match="schema"):
        _core.read_columns([], ["action"])
    with pytest.raises(ConfigError, match="at least one column"):
        _core.read_columns([], pa.schema([]))
