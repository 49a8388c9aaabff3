"""Type stubs for `logsieve._core`, the Rust extension (see `rust/`)."""

import os
from collections.abc import Sequence
from typing import Any, Optional, final

import pyarrow as pa
from _typeshed import SupportsWrite

__all__ = [
    "ERROR_CODES",
    "Batch",
    "ColumnSummary",
    "DatePart",
    "ParquetFile",
    "Scan",
    "Stats",
    "__version__",
    "process",
    "process_lines",
    "purge_delay",
    "read_columns",
    "set_purge_delay",
    "split_by_date",
]

__version__: str
ERROR_CODES: tuple[str, ...]
"""The error codes of the record contract, in the order their rules are checked."""

@final
class Stats:
    """Counts for one call. Every non-blank line is processed and ends up valid or an error."""

    @property
    def processed(self) -> int:
        """Non-blank lines seen: `valid + errors`."""
    @property
    def valid(self) -> int:
        """Lines that became clean rows."""
    @property
    def errors(self) -> int:
        """Lines that became error records."""
    @property
    def blank(self) -> int:
        """Empty lines and lines of only spaces and tabs (skipped, but still numbered)."""
    @property
    def bytes(self) -> int:
        """Input bytes consumed, BOM and line endings included."""
    def as_dict(self) -> dict[str, int]:
        """The five counts as a dict (handy for JSON and logging)."""

@final
class Batch:
    """The result of one `process` call: clean rows, error records and their counts.

    The Arrow data was built in Rust; `clean` and `errors` hand it to pyarrow without a copy.
    `Batch` itself exports `clean` through the Arrow PyCapsule interface, so
    `pyarrow.record_batch(batch)`, `pyarrow.RecordBatchReader.from_stream(batch)`,
    `polars.DataFrame(batch)` and `duckdb.sql("select * from batch")` read it directly.
    """

    @property
    def clean(self) -> pa.RecordBatch:
        """Valid rows: timestamp, day_of_week, event_time, user_id, action, extra."""
    @property
    def errors(self) -> pa.RecordBatch:
        """Invalid lines: line (1-based, int64), error (code), detail (sentence), raw (bytes)."""
    @property
    def stats(self) -> Stats:
        """How many lines were processed, valid, errors and blank, and the bytes read."""
    @property
    def error_counts(self) -> dict[str, int]:
        """Error records per code, codes in `ERROR_CODES` order, those with none left out."""
    def error_lines(self, source: str) -> bytes:
        """The error records as JSON Lines, one per error, each ending in a newline.

        Each line is `{"source", "line", "error", "detail", "raw"}`, with `raw_base64` instead
        of `raw` for a line that is not UTF-8; rendered in Rust (the GIL released), byte for byte
        what `orjson.dumps` of the same record gives.
        """
    def write_error_lines(self, source: str, file: SupportsWrite[bytes]) -> None:
        """Write the same JSON Lines to `file` (anything with `write(bytes)`; a raw file that
        takes part of a write is given the rest), rendered without the GIL and handed over
        about 1 MiB at a time, so that a huge invalid line is never held twice. An exception
        `write` raises propagates."""
    def __len__(self) -> int:
        """Number of clean rows."""
    def __arrow_c_schema__(self) -> Any: ...
    def __arrow_c_array__(self, requested_schema: Optional[Any] = None) -> tuple[Any, Any]: ...
    def __arrow_c_stream__(self, requested_schema: Optional[Any] = None) -> Any: ...

def process(
    data: bytes | bytearray | memoryview,
    *,
    timestamp_field: str = "timestamp",
    user_id_field: str = "user_id",
    action_field: str = "action",
    first_line: int = 1,
) -> Batch:
    """Validate and transform whole lines of JSON into clean rows and error records.

    Runs without the GIL and in parallel over line ranges for large inputs. `bytes` are read in
    place; other buffers are copied once. The three field names say where to find the required
    members (output columns keep their standard names). `first_line` numbers the first line of
    `data` (for input cut into pieces); a UTF-8 BOM is ignored only when it is 1. Line numbers
    are int64 and must not wrap: `first_line` must be at least 1 and, since a line takes at
    least one byte, `first_line + len(data) - 1` at most 2**63 - 1.

    Raises `TypeError` for non-binary data, `logsieve.errors.ConfigError` (a `ValueError`) for
    unusable field names or a `first_line` out of that range, and
    `logsieve.errors.InputTooLargeError` beyond 2 GiB (use `process_stream`).
    """

def process_lines(
    data: bytes | bytearray,
    length: int,
    first_line: int,
    last: bool,
    timestamp_field: str,
    user_id_field: str,
    action_field: str,
) -> tuple[Optional[Batch], int]:
    """`process_stream`'s step: process the complete lines of `data[:length]` (all if `last`).

    A bytearray is read in place with the GIL released: the caller must not change it until
    the call returns. `first_line` is checked as in `process`, against the bytes processed.
    Returns the batch (None when no line is complete yet) and how many bytes it consumed.
    """

@final
class DatePart:
    """The rows of one UTC date (`split_by_date`), in their order in the batch they came from."""

    @property
    def date(self) -> str:
        """The date, `YYYY-MM-DD`."""
    @property
    def rows(self) -> pa.RecordBatch:
        """The rows, every column of the batch they came from."""

def split_by_date(batch: pa.RecordBatch, column: str) -> list[DatePart]:
    """`batch`'s rows per UTC date, the first ten bytes of the text `column` (a `timestamp` the
    core rendered), dates in the order they first appear; every row is in exactly one part.

    Logs are nearly in time order, so a run of 1,024 or more rows of one date is a zero-copy
    slice; rows where dates interleave (around midnight) are gathered per date. Without the
    GIL. `logsieve.errors.ConfigError` for a missing column or one that is not `pa.string()`, a
    null, or a value that does not start with `YYYY-MM-DD`; `TypeError` for anything that is
    not a record batch.
    """

@final
class Scan:
    """What `read_columns` read, and the files it could not."""

    @property
    def rows(self) -> pa.RecordBatch:
        """`file` (int32, the input's index) then the requested columns, inputs in order."""
    @property
    def failed(self) -> dict[int, str]:
        """Index -> reason of each input left out of `rows` (not Parquet, a codec other than
        zstd or snappy, a column missing or of another type than the schema asked for)."""

def read_columns(files: Sequence[str | os.PathLike[str] | bytes], schema: pa.Schema) -> Scan:
    """Read the columns of `schema` (top-level names) of many small Parquet files in parallel,
    without the GIL.

    Each input is a path (read by the core) or a file's bytes. A file's columns must have the
    types `schema` gives, as the Parquet schema says (strings as `string`, whatever Arrow type
    a writer hinted): a file of other types, or one that cannot be read, is left out and named
    in `Scan.failed`, whatever the other files hold. Raises `TypeError` for other inputs or a
    schema that is not Arrow, and `logsieve.errors.ConfigError` for a schema without fields.
    """

@final
class ParquetFile:
    """One Parquet data file being written, as the clean table's are: zstd level 1, data page
    version 2, plain values, a dictionary and min/max statistics only for the columns named.

    Each row group's columns are encoded and compressed in parallel on the core's threads,
    without the GIL; calls from several threads take turns. Creating the file truncates it.
    Raises `logsieve.errors.ConfigError` for a column in `dictionary` or `statistics` that
    `schema` lacks, `OSError` when the file cannot be created or written.
    """

    def __new__(
        cls,
        path: str | os.PathLike[str],
        schema: pa.Schema,
        *,
        dictionary: Sequence[str],
        statistics: Sequence[str],
    ) -> ParquetFile: ...
    def write(self, batches: Sequence[pa.RecordBatch], row_group_rows: int) -> None:
        """Append the rows of `batches` (zero-copy) as row groups of at most `row_group_rows`
        rows.

        Refused before anything is written: rows of another schema, or with nulls in a column
        the schema has none in (`logsieve.errors.ConfigError`), and anything that is not a
        record batch (`TypeError`). A failure while writing raises `OSError` naming the file;
        the file is then incomplete, and every later `write` or `close` says so (`OSError`).
        `ValueError` once the file is closed."""
    @property
    def bytes_written(self) -> int:
        """Bytes in the file after the last `write` (its footer comes with `close`)."""
    @property
    def rows(self) -> int:
        """Rows written."""
    def columns(self) -> dict[str, ColumnSummary]:
        """Each column's summary over the rows written, by name in the schema's order (also
        once the file is closed): what a Delta add action's statistics are made of."""
    def close(self) -> None:
        """Write the footer and close the file; closing again does nothing."""

@final
class ColumnSummary:
    """What a data file holds of one column, from the encoder's own statistics."""

    @property
    def nulls(self) -> int:
        """Null values."""
    @property
    def min(self) -> int | str | None:
        """The smallest non-null value where the file keeps statistics for the column (an
        instant as microseconds since the epoch, text as text), else None."""
    @property
    def max(self) -> int | str | None:
        """The largest, likewise."""

def purge_delay() -> int:
    """The purge delay of the core's allocator in force, in milliseconds."""

def set_purge_delay(ms: int) -> None:
    """How long the core's allocator (mimalloc) keeps freed memory for reuse, in milliseconds,
    from now on. For the entry points of streaming processes (`logsieve.memory`): the extension
    loads with 3 s, tuned for calls in a loop."""
