"""The clean table's data files written by logsieve itself, for appends: memory stays bounded.

delta-rs's `write_deltalake` holds what a write is fed in memory until it ends (feeding it one
9 MB batch 80 times peaks at 747 MB), so a source the table has never held (the usual case: every
new S3 object) is written here instead: one Parquet writer per UTC date, the rows of each date
buffered and flushed as row groups whenever all buffers together pass a byte budget, encoded by a
background thread while the core parses the next chunk. The caller publishes the files into the
table's directory and commits them, with the statistics `add_action` computes, in one Delta
transaction (`DeltaTable.create_write_transaction`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from logsieve import table

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake.transaction import AddAction

#: Rows per row group at most (the same as the table's writer properties).
ROW_GROUP_ROWS = 128 * 1024
#: Flushes' worth of rows that may wait for the encoding thread: memory stays at a few budgets.
_WRITE_AHEAD = 2
#: Low-cardinality columns only: on user ids a dictionary overflows and costs time and size.
_DICTIONARY_COLUMNS = ["day_of_week", "action", table.SOURCE_ID_COLUMN, table.SOURCE_COLUMN]


@dataclass(frozen=True)
class StagedFile:
    """A complete data file for one date, not yet in the table."""

    date: str
    path: Path
    rows: int


class DateFiles:
    """One open ParquetWriter per date; rows buffered per date and flushed in row groups."""

    def __init__(self, directory: Path, flush_bytes: int) -> None:
        self.directory = directory
        self.flush_bytes = max(flush_bytes, 1 << 20)
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.rows: dict[str, int] = {}
        self.buffers: dict[str, list[pa.RecordBatch]] = {}
        self.buffered_rows: dict[str, int] = {}
        self.buffered_bytes = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logsieve-parquet")
        self._writing: deque[tuple[Future[None], int]] = deque()
        self._writing_bytes = 0

    def add(self, batch: pa.RecordBatch) -> None:
        """Rows in the table's schema (with `date`); each date's rows go to its file."""
        for date, rows in _by_date(batch):
            self.buffers.setdefault(date, []).append(rows)
            self.buffered_rows[date] = self.buffered_rows.get(date, 0) + rows.num_rows
            self.buffered_bytes += rows.nbytes
            if self.buffered_rows[date] >= ROW_GROUP_ROWS:
                self._flush(date)
        if self.buffered_bytes > self.flush_bytes:
            for date in list(self.buffers):
                self._flush(date)

    def _flush(self, date: str) -> None:
        import pyarrow as pa

        pieces = self.buffers.pop(date, [])
        self.buffered_rows.pop(date, None)
        if not pieces:
            return
        rows = pa.Table.from_batches(pieces)
        nbytes = sum(piece.nbytes for piece in pieces)
        self.buffered_bytes -= nbytes
        writer = self._writer(date, rows.schema)
        self.rows[date] = self.rows.get(date, 0) + rows.num_rows
        while self._writing and self._writing_bytes + nbytes > self.flush_bytes * _WRITE_AHEAD:
            self._wait_oldest()  # bounded: at most a few budgets wait for the encoder
        self._writing.append((self._pool.submit(_write, writer, rows), nbytes))
        self._writing_bytes += nbytes

    def _wait_oldest(self) -> None:
        future, nbytes = self._writing.popleft()
        self._writing_bytes -= nbytes
        future.result()  # an encoding error surfaces in the ingesting thread

    def _writer(self, date: str, schema: pa.Schema) -> pq.ParquetWriter:
        writer = self.writers.get(date)
        if writer is None:
            import pyarrow.parquet as pq

            writer = pq.ParquetWriter(
                self.directory / f"{date}-{uuid.uuid4().hex}.parquet",
                schema,
                compression="zstd",
                compression_level=1,
                use_dictionary=_DICTIONARY_COLUMNS,
                # min/max of JSON text prunes nothing.
                write_statistics=[name for name in schema.names if name != "extra"],
            )
            self.writers[date] = writer
        return writer

    def finish(self) -> list[StagedFile]:
        for date in list(self.buffers):
            self._flush(date)
        while self._writing:
            self._wait_oldest()
        self._pool.shutdown()
        for writer in self.writers.values():
            writer.close()
        return [
            StagedFile(date, Path(writer.where), self.rows[date])
            for date, writer in sorted(self.writers.items())
        ]

    def abort(self) -> None:
        # Failing already; a writer must not close while the thread may still write to it.
        for future, _ in self._writing:
            with contextlib.suppress(BaseException):
                future.result()
        self._writing.clear()
        self._pool.shutdown()
        for writer in self.writers.values():
            with contextlib.suppress(Exception):
                writer.close()


def _write(writer: pq.ParquetWriter, rows: pa.Table) -> None:
    writer.write_table(rows.combine_chunks(), row_group_size=ROW_GROUP_ROWS)


def _by_date(batch: pa.RecordBatch) -> list[tuple[str, pa.RecordBatch]]:
    """The batch's rows per date, without the `date` column (a partition lives in the path)."""
    import pyarrow.compute as pc

    dates = batch.column(table.PARTITION_COLUMN)
    data = batch.drop_columns([table.PARTITION_COLUMN])
    if dates.null_count == 0 and pc.min_max(dates)["min"] == pc.min_max(dates)["max"]:
        return [(dates[0].as_py(), data)] if batch.num_rows else []
    return [(date, data.filter(pc.equal(dates, date))) for date in pc.unique(dates).to_pylist()]


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
        stats=_stats(staged.path),
    )


def _stats(path: Path) -> str:
    """numRecords, minValues, maxValues and nullCount as Delta's JSON, from the file's footer."""
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata
    low: dict[str, Any] = {}
    high: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for index in range(row_group.num_columns):
            column = row_group.column(index)
            name, stats = column.path_in_schema, column.statistics
            if stats is None:
                continue
            nulls[name] = nulls.get(name, 0) + int(stats.null_count or 0)
            if stats.has_min_max:
                low[name] = stats.min if name not in low else min(low[name], stats.min)
                high[name] = stats.max if name not in high else max(high[name], stats.max)
    return orjson.dumps(
        {
            "numRecords": metadata.num_rows,
            "minValues": {name: _stat_value(value) for name, value in low.items()},
            "maxValues": {name: _stat_value(value) for name, value in high.items()},
            "nullCount": nulls,
        }
    ).decode()


def _stat_value(value: Any) -> Any:
    if isinstance(value, datetime):  # Delta writes instants as ISO 8601 in UTC, to the ms
        utc = value.astimezone(timezone.utc)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
