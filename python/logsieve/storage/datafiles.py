"""The clean table's data files written by logsieve itself, for appends: memory stays bounded.

delta-rs's `write_deltalake` holds what a write is fed in memory until it ends (feeding it one
9 MB batch 80 times peaks at 747 MB), so a source the table has never held (the usual case: every
new S3 object) is written here instead: one Parquet writer per UTC date, the rows of each date
buffered and flushed as row groups whenever all buffers together pass a byte budget, encoded by
the core (`_core.ParquetFile`: each row group's columns in parallel, without the GIL) from a
background thread while the core parses the next chunk. A file is handed over (`on_file`: the
caller publishes it into the table, invisible until committed) as soon as it reaches the target
size, or when too many dates are open, so local disk and open files stay bounded too. The caller
commits all of them, with the statistics gathered here, in one Delta transaction.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from logsieve._core import ParquetFile
from logsieve.storage import table

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake.transaction import AddAction

#: Rows per row group at most (the same as the table's writer properties).
ROW_GROUP_ROWS = 128 * 1024
#: A data file is closed and handed over once it is this big.
FILE_BYTES = 128 << 20
#: Dates with an open file at most; the least recently written one is closed beyond (a date may
#: then get several files). Lambda allows 1,024 open files.
MAX_OPEN_FILES = 64
#: Flushes' worth of rows that may wait for the encoding thread: memory stays at a few budgets.
_WRITE_AHEAD = 2
#: Low-cardinality columns only: on user ids a dictionary overflows and costs time and size.
_DICTIONARY_COLUMNS = ["day_of_week", "action", table.SOURCE_ID_COLUMN, table.SOURCE_COLUMN]
#: Columns with min/max statistics, in the Delta add actions and in the Parquet footers: the
#: ones readers use (the API prunes by `event_time` and `action`, a replace by `source_id`,
#: lookups by `user_id`; the dashboard names a file's source from `source`). The others (JSON
#: text, the rendered `timestamp`, `day_of_week`, the source's version) prune nothing, and
#: their min/max cost the encoder a comparison per value.
STATISTICS_COLUMNS = (
    "event_time",
    "action",
    table.SOURCE_ID_COLUMN,
    "user_id",
    table.SOURCE_COLUMN,
)
#: Columns without a null count either: `extra` (nulls are normal there, nothing prunes by them).
_NO_STATISTICS = {"extra"}


@dataclass
class _Statistics:
    """Delta's per-file statistics, from the encoder's summary of what it wrote."""

    rows: int = 0
    low: dict[str, Any] = field(default_factory=dict)
    high: dict[str, Any] = field(default_factory=dict)
    nulls: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, file: ParquetFile, schema: pa.Schema) -> _Statistics:
        import pyarrow as pa

        stats = cls(rows=file.rows)
        for name, column in file.columns().items():
            if name in _NO_STATISTICS:
                continue
            stats.nulls[name] = column.nulls
            if column.min is None or column.max is None:
                continue
            if pa.types.is_timestamp(schema.field(name).type):  # microseconds since the epoch
                stats.low[name], stats.high[name] = _instant(column.min), _instant(column.max)
            else:
                stats.low[name], stats.high[name] = column.min, column.max
        return stats

    def to_json(self) -> str:
        return orjson.dumps(
            {
                "numRecords": self.rows,
                "minValues": {name: _stat_value(value) for name, value in self.low.items()},
                "maxValues": {name: _stat_value(value) for name, value in self.high.items()},
                "nullCount": self.nulls,
            }
        ).decode()


@dataclass(frozen=True)
class StagedFile:
    """A complete data file for one date, not yet in the table, and its statistics."""

    date: str
    path: Path
    statistics: _Statistics


@dataclass
class _OpenFile:
    writer: ParquetFile
    path: Path
    schema: pa.Schema


class DateFiles:
    """Open Parquet files per date; rows buffered per date and flushed in row groups."""

    def __init__(
        self,
        directory: Path,
        flush_bytes: int,
        on_file: Callable[[StagedFile], None],
        *,
        file_bytes: int = FILE_BYTES,
        max_open: int = MAX_OPEN_FILES,
    ) -> None:
        self.directory = directory
        self.flush_bytes = max(flush_bytes, 1 << 20)
        self.on_file = on_file
        self.file_bytes = file_bytes
        self.max_open = max_open
        self.open: OrderedDict[str, _OpenFile] = OrderedDict()
        self.buffers: dict[str, list[pa.RecordBatch]] = {}
        self.buffered_rows: dict[str, int] = {}
        #: Bytes of each date's buffered rows (`nbytes` of a slice walks its buffers: once).
        self.buffered_sizes: dict[str, int] = {}
        self.buffered_bytes = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logsieve-parquet")
        self._writing: deque[tuple[Future[None], int]] = deque()
        self._writing_bytes = 0

    def add(self, date: str, rows: pa.RecordBatch) -> None:
        """Rows of one date in the data files' schema (no `date` column: a partition lives in
        the path), buffered for that date's file."""
        if not rows.num_rows:
            return
        nbytes = rows.nbytes
        self.buffers.setdefault(date, []).append(rows)
        self.buffered_rows[date] = self.buffered_rows.get(date, 0) + rows.num_rows
        self.buffered_sizes[date] = self.buffered_sizes.get(date, 0) + nbytes
        self.buffered_bytes += nbytes
        if self.buffered_rows[date] >= ROW_GROUP_ROWS:
            self._flush(date)
        if self.buffered_bytes > self.flush_bytes:
            for buffered in list(self.buffers):
                self._flush(buffered)

    def _flush(self, date: str) -> None:
        pieces = self.buffers.pop(date, [])
        self.buffered_rows.pop(date, None)
        nbytes = self.buffered_sizes.pop(date, 0)
        if not pieces:
            return
        self.buffered_bytes -= nbytes
        file = self._file(date, pieces[0].schema)
        while self._writing and self._writing_bytes + nbytes > self.flush_bytes * _WRITE_AHEAD:
            self._wait_oldest()  # bounded: at most a few budgets wait for the encoder
        self._writing.append((self._pool.submit(_write, file.writer, pieces), nbytes))
        self._writing_bytes += nbytes
        if file.writer.bytes_written >= self.file_bytes:
            self._close(date)

    def _file(self, date: str, schema: pa.Schema) -> _OpenFile:
        file = self.open.get(date)
        if file is not None:
            self.open.move_to_end(date)
            return file
        if len(self.open) >= self.max_open:
            self._close(next(iter(self.open)))  # the least recently written date
        path = self.directory / f"{date}-{uuid.uuid4().hex}.parquet"
        file = self.open[date] = _OpenFile(data_file(path, schema), path, schema)
        return file

    def _close(self, date: str) -> None:
        """Finish one date's file and hand it over (its pending row groups written first)."""
        while self._writing:
            self._wait_oldest()
        file = self.open.pop(date)
        file.writer.close()
        self.on_file(StagedFile(date, file.path, _Statistics.of(file.writer, file.schema)))

    def _wait_oldest(self) -> None:
        future, nbytes = self._writing.popleft()
        self._writing_bytes -= nbytes
        future.result()  # an encoding error surfaces in the ingesting thread

    def finish(self) -> None:
        """Flush every buffer and hand over every file."""
        for date in list(self.buffers):
            self._flush(date)
        for date in list(self.open):
            self._close(date)
        self._pool.shutdown()

    def abort(self) -> None:
        # Failing already; a writer must not close while the thread may still write to it.
        for future, _ in self._writing:
            with contextlib.suppress(BaseException):
                future.result()
        self._writing.clear()
        self._pool.shutdown()
        for file in self.open.values():
            with contextlib.suppress(Exception):
                file.writer.close()
            file.path.unlink(missing_ok=True)


def data_file(path: Path, schema: pa.Schema) -> ParquetFile:
    """A new data file written as the table's are: zstd level 1, data page v2 (a very long
    value is not copied once more with its levels), dictionaries and statistics only where
    they pay."""
    return ParquetFile(
        path,
        schema,
        dictionary=[name for name in schema.names if name in _DICTIONARY_COLUMNS],
        statistics=[name for name in schema.names if name in STATISTICS_COLUMNS],
    )


def _write(writer: ParquetFile, pieces: list[pa.RecordBatch]) -> None:
    # The pieces go as they are: the encoder reads each column's slices in turn, no copy.
    writer.write(pieces, ROW_GROUP_ROWS)


def data_file_path(date: str) -> str:
    """Where a new data file goes, relative to the table's root (delta-rs's naming)."""
    return f"{table.PARTITION_COLUMN}={date}/part-00000-{uuid.uuid4()}-c000.zstd.parquet"


def add_action(staged: StagedFile, path: str, size: int) -> AddAction:
    """The Delta add action of a published data file, with its statistics, so that readers
    prune by partition and by min/max (the API prunes days by `event_time` and `action`)."""
    from deltalake.transaction import AddAction

    return AddAction(
        path=path,
        size=size,
        partition_values={table.PARTITION_COLUMN: staged.date},
        modification_time=int(datetime.now(timezone.utc).timestamp() * 1000),
        data_change=True,
        stats=staged.statistics.to_json(),
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _instant(micros: int | str) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))


def _stat_value(value: Any) -> Any:
    if isinstance(value, datetime):  # Delta writes instants as ISO 8601 in UTC, to the ms
        utc = value.astimezone(timezone.utc)
        return (
            f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
            f"{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
        )
    return value
