"""Write one source's clean rows and error records, to a local directory or an S3 prefix.

Layout (Hive-style, so pyarrow.dataset, DuckDB, Athena and Spark read it as is)::

    <clean>/date=YYYY-MM-DD/<source-id>.parquet     valid rows, by the UTC date of event_time
    <errors>/date=YYYY-MM-DD/<source-id>.jsonl      invalid lines, dated by the source's arrival
    <clean>/_logsieve/manifests/<source-id>.json    which files the source's last ingest wrote

Guarantees:

* Idempotent: the file names depend only on the source's identity, so ingesting the same source
  again overwrites its output; files it no longer touches (fewer dates, no errors any more) are
  removed using the manifest. No rows are ever duplicated.
* All or nothing per source: everything is staged in temporary files first (Parquet writers stay
  open per date while streaming) and only published once the whole source was read. A source
  that fails mid-way (a truncated gzip, a read error) publishes nothing and leaves its previous
  output untouched. On a local disk publication is a rename, so no partial file ever appears
  under a final name; on S3 each object appears whole or not at all.
* Bounded memory: rows go to disk a chunk at a time, whatever the source's size.
* Concurrency-safe: the manifest is replaced only conditionally (S3 If-Match / If-None-Match, a
  lock on a local disk), so two ingests of one source publishing at once never go unnoticed:
  the loser raises ConcurrentIngestError after leaving a manifest that lets a retry repair all.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from logsieve import DEFAULT_CHUNK_SIZE
from logsieve.errors import ConcurrentIngestError, ConfigError, LogsieveError, OutputError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from logsieve import Batch

MANIFEST_DIR = "_logsieve/manifests"
SAMPLE_ERRORS = 5
#: Low-cardinality columns only: on user ids (often one per few rows) a dictionary is slower to
#: write and gives bigger files than plain + zstd, as the dictionary overflows and falls back.
_DICTIONARY_COLUMNS = ["day_of_week", "action"]
_ROW_GROUP_ROWS = 128 * 1024
#: Flushes' worth of rows (flush_bytes each) that may wait for the Parquet writer thread. With 1
#: the ingesting thread waited for it most of the time; more than 2 gained nothing measurable.
_WRITE_AHEAD = 2
_STAT_NAMES = ("processed", "valid", "errors", "blank", "bytes")
#: Conditional manifest writes lost to other ingests of the same source before giving up.
_MANIFEST_ATTEMPTS = 5
#: Staging directories untouched for this long belong to a dead process and are removed.
STALE_STAGING_SECONDS = 24 * 3600
#: S3 uploads switch to multipart above this size (parts of MULTIPART_CHUNKSIZE bytes).
MULTIPART_THRESHOLD = 64 << 20
MULTIPART_CHUNKSIZE = 16 << 20
_SLUG_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


# --- identity -------------------------------------------------------------------------------


def source_id(source: str) -> str:
    """Stable, filename- and S3-safe id: a readable slug of the name plus a hash of all of it.

    `s3://logs/app/2025-08-20.jsonl.gz` -> `2025-08-20.jsonl.gz-<20 hex digits>`. The hash makes
    ids of different sources distinct even when their last path components are equal.
    """
    if not source:
        raise ConfigError("a source needs a non-empty name to derive its id from")
    digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    tail = source.rstrip("/").rsplit("/", 1)[-1]
    slug = _SLUG_CHARS.sub("_", tail).strip("._-")[:60]
    return f"{slug}-{digest}" if slug else digest


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    """What one source produced. Keys are S3 object keys for an S3 sink, else file paths."""

    source: str
    processed: int
    valid: int
    errors: int
    blank: int
    bytes: int
    error_counts: dict[str, int]
    clean_keys: list[str]
    error_keys: list[str]
    sample_errors: list[dict[str, Any]]
    seconds: float
    source_id: str = ""
    removed_keys: list[str] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.errors / self.processed if self.processed else 0.0

    def summary(self) -> dict[str, Any]:
        """The Lambda-style summary: `{"processed", "valid", "errors", ...}`, JSON-ready."""
        return {
            "processed": self.processed,
            "valid": self.valid,
            "errors": self.errors,
            "blank": self.blank,
            "bytes": self.bytes,
            "error_counts": dict(self.error_counts),
            "source": self.source,
            "source_id": self.source_id,
            "clean_keys": list(self.clean_keys),
            "error_keys": list(self.error_keys),
            "seconds": round(self.seconds, 6),
        }


# --- sinks: a local directory or an S3 prefix -------------------------------------------------


class _Sink:
    """Somewhere files are published under keys relative to a root."""

    def staging_dir(self) -> Path:
        raise NotImplementedError

    def publish(self, staged: Path, key: str) -> str:
        """Move a complete staged file to `key`; returns the key as reported to users."""
        raise NotImplementedError

    def delete(self, keys: Iterable[str]) -> None:
        raise NotImplementedError

    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        """The content and a token that changes whenever the content is replaced."""
        raise NotImplementedError

    def write_if(self, key: str, data: bytes, token: str | None) -> str:
        """Replace `key` only if its token is still `token` (None: only if it does not exist).

        Returns the new token; raises ConcurrentIngestError when someone else wrote it first.
        """
        raise NotImplementedError

    def display(self, key: str) -> str:
        raise NotImplementedError


class _LocalSink(_Sink):
    def __init__(self, root: str) -> None:
        self.root = Path(root).expanduser().absolute()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create output directory {self.root}: {exc.strerror}"
            ) from exc

    def staging_dir(self) -> Path:
        # Inside the root, so publishing is an atomic rename on the same filesystem; `_`-prefixed
        # paths are invisible to pyarrow.dataset and the like.
        staging = self.root / "_logsieve" / "staging"
        staging.mkdir(parents=True, exist_ok=True)
        _sweep_stale(staging)
        return Path(tempfile.mkdtemp(dir=staging))

    def publish(self, staged: Path, key: str) -> str:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)
        return str(target)

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            target = self.root / key
            target.unlink(missing_ok=True)
            _remove_empty_dir(target.parent, self.root)

    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        try:
            data = (self.root / key).read_bytes()
        except FileNotFoundError:
            return None, None
        return data, hashlib.sha256(data).hexdigest()

    def write_if(self, key: str, data: bytes, token: str | None) -> str:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        with _locked(target.parent):
            if self.read_versioned(key)[1] != token:
                raise ConcurrentIngestError(f"{target} was replaced by another ingest meanwhile")
            temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
            temp.write_bytes(data)
            os.replace(temp, target)  # readers see the old or the new manifest, never half
        return hashlib.sha256(data).hexdigest()

    def display(self, key: str) -> str:
        return str(self.root / key)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive advisory lock on a directory, between processes of this machine."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _sweep_stale(staging: Path) -> None:
    """Remove staging directories left by processes killed mid-ingest (older than a day)."""
    cutoff = time.time() - STALE_STAGING_SECONDS
    for entry in staging.iterdir():
        with contextlib.suppress(OSError):
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)


def _remove_empty_dir(directory: Path, root: Path) -> None:
    if directory != root and root in directory.parents:
        # Fails (and is meant to) while other sources still have files for that date.
        with contextlib.suppress(OSError):
            directory.rmdir()


class _S3Sink(_Sink):
    def __init__(self, uri: str, client: Any) -> None:
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not bucket:
            raise ConfigError(f"S3 location {uri!r} names no bucket (expected s3://bucket/prefix)")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def staging_dir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="logsieve-"))

    def publish(self, staged: Path, key: str) -> str:
        from boto3.s3.transfer import TransferConfig

        content_type = "application/vnd.apache.parquet" if key.endswith(".parquet") else None
        extra = {"ContentType": content_type or "application/x-ndjson"}
        config = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNKSIZE
        )
        full_key = self._key(key)
        self.client.upload_file(str(staged), self.bucket, full_key, ExtraArgs=extra, Config=config)
        staged.unlink(missing_ok=True)
        return full_key

    def delete(self, keys: Iterable[str]) -> None:
        objects = [{"Key": self._key(k)} for k in keys]
        for start in range(0, len(objects), 1000):
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects[start : start + 1000], "Quiet": True}
            )

    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            return None, None
        return response["Body"].read(), response["ETag"]

    def write_if(self, key: str, data: bytes, token: str | None) -> str:
        from botocore.exceptions import ClientError

        # S3 conditional writes: If-Match replaces only the version we read, If-None-Match: *
        # creates only what does not exist yet. Both fail with 412 (or 409 while racing).
        condition = {"IfMatch": token} if token is not None else {"IfNoneMatch": "*"}
        try:
            response = self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentType="application/json",
                **condition,
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise ConcurrentIngestError(
                    f"s3://{self.bucket}/{self._key(key)} was replaced by another ingest meanwhile"
                ) from exc
            raise
        return response["ETag"]

    def display(self, key: str) -> str:
        return self._key(key)


def open_sink(uri: str, s3_client: Any = None) -> _Sink:
    """A sink for `s3://bucket/prefix` or a local directory (a `file://` URL or a path)."""
    if not uri:
        raise ConfigError("an output location is required (a directory or s3://bucket/prefix)")
    if uri.startswith("s3://"):
        return _S3Sink(uri, s3_client)
    if uri.startswith("file:"):
        uri = file_url_path(uri)
    return _LocalSink(uri)


def file_url_path(url: str) -> str:
    """The local path of a `file:` URL (`file:///p`, `file://localhost/p`, `file:/p`)."""
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed "[" read as an IPv6 host
        parts = None
    if (
        parts is None
        or parts.netloc not in ("", "localhost")
        or not parts.path.startswith("/")
        or parts.query
        or parts.fragment
        or "\0" in unquote(parts.path)
    ):
        raise ConfigError(f"{url!r} is not a local file URL: use file:///absolute/path")
    return unquote(parts.path)


# --- staging while streaming ------------------------------------------------------------------


class _CleanPartitions:
    """One open ParquetWriter per UTC date, fed with row slices and buffered into row groups.

    Row groups are encoded and compressed by one background thread (pyarrow releases the GIL
    while writing), so Parquet writing overlaps with the core and with the error records. The
    thread writes in submission order, so every file gets its rows in input order. Up to
    `_WRITE_AHEAD` flushes' worth of rows may wait for it, so that the ingesting thread (and the
    core, one chunk ahead of it) rarely waits for the writer; memory stays bounded.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.writers: dict[str, pq.ParquetWriter] = {}
        # Per date: (rows, id of the batch they are a slice of), in input order.
        self.buffers: dict[str, list[tuple[pa.RecordBatch, int]]] = {}
        self.buffered_rows: dict[str, int] = {}
        # Slices keep their whole batch alive, so memory is counted per batch: its size and how
        # many dates still hold a slice of it.
        self.parents: dict[int, list[int]] = {}
        self.buffered_bytes = 0
        self.flush_bytes = 1 << 20
        self._next_parent = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logsieve-parquet")
        self._writing: deque[tuple[Future[None], int]] = deque()
        self._writing_bytes = 0

    def add(self, batch: pa.RecordBatch, flush_bytes: int) -> None:
        if batch.num_rows == 0:
            return
        self.flush_bytes = flush_bytes
        rows, parts = _split_by_date(batch)
        parent = self._next_parent
        self._next_parent += 1
        self.parents[parent] = [len(parts), rows.nbytes]
        self.buffered_bytes += rows.nbytes
        for date, slices in parts.items():
            self.buffers.setdefault(date, []).extend((piece, parent) for piece in slices)
            self.buffered_rows[date] = self.buffered_rows.get(date, 0) + sum(
                piece.num_rows for piece in slices
            )
        for date in parts:
            if self.buffered_rows.get(date, 0) >= _ROW_GROUP_ROWS:
                self._flush(date)
        if self.buffered_bytes > flush_bytes:
            for date in list(self.buffers):
                self._flush(date)

    def _flush(self, date: str) -> None:
        import pyarrow as pa

        pieces = self.buffers.pop(date, [])
        self.buffered_rows.pop(date, None)
        if not pieces:
            return
        table = pa.Table.from_batches([rows for rows, _ in pieces])
        nbytes = 0
        for parent in dict.fromkeys(parent for _, parent in pieces):
            holders = self.parents[parent]
            holders[0] -= 1
            if holders[0] == 0:
                del self.parents[parent]
                self.buffered_bytes -= holders[1]
                nbytes += holders[1]
        writer = self._writer(date, table.schema)
        # Wait for earlier row groups first, so that memory stays bounded.
        while self._writing and self._writing_bytes + nbytes > self.flush_bytes * _WRITE_AHEAD:
            self._wait_oldest()
        future = self._pool.submit(_write_row_groups, writer, table)
        self._writing.append((future, nbytes))
        self._writing_bytes += nbytes

    def _wait_oldest(self) -> None:
        future, nbytes = self._writing.popleft()
        self._writing_bytes -= nbytes
        future.result()  # a write error surfaces here, in the ingesting thread

    def _writer(self, date: str, schema: pa.Schema) -> pq.ParquetWriter:
        writer = self.writers.get(date)
        if writer is None:
            import pyarrow.parquet as pq

            writer = pq.ParquetWriter(
                self.directory / f"{date}.parquet",
                schema,
                compression="zstd",
                use_dictionary=[c for c in _DICTIONARY_COLUMNS if c in schema.names],
                # min/max of `extra` (JSON text) prunes nothing and costs ~4% of the work.
                write_statistics=[c for c in schema.names if c != "extra"],
            )
            self.writers[date] = writer
        return writer

    def finish(self) -> dict[str, Path]:
        """Flush and close every writer; date -> complete staged file."""
        for date in list(self.buffers):
            self._flush(date)
        while self._writing:
            self._wait_oldest()
        self._pool.shutdown()
        for writer in self.writers.values():
            writer.close()
        return {date: self.directory / f"{date}.parquet" for date in sorted(self.writers)}

    def abort(self) -> None:
        # Already failing; the staged files are discarded anyway. A writer must not be closed
        # while the thread may still be writing to it, hence the wait.
        for future, _ in self._writing:
            with contextlib.suppress(BaseException):
                future.result()
        self._writing.clear()
        self._pool.shutdown()
        for writer in self.writers.values():
            with contextlib.suppress(Exception):
                writer.close()


def _write_row_groups(writer: pq.ParquetWriter, table: pa.Table) -> None:
    # The slices of several batches are made contiguous first (in the writer thread): the writer
    # pays per chunk, and one copy of a flush costs less than writing hundreds of short chunks
    # (measured: 6-8% less writer CPU end to end on a time-ordered log).
    writer.write_table(table.combine_chunks(), row_group_size=_ROW_GROUP_ROWS)


#: Up to this many runs of equal dates a batch is split into zero-copy slices; beyond it (rows
#: of several dates interleaved) it is reordered by date with one stable sort and one copy.
_MAX_DATE_RUNS = 256


def _split_by_date(
    batch: pa.RecordBatch,
) -> tuple[pa.RecordBatch, dict[str, list[pa.RecordBatch]]]:
    """(batch the pieces are slices of, {UTC date: its rows in input order, as slices}).

    Logs are mostly in time order, so a batch usually holds a few runs of one date each; slicing
    them costs nothing, where one `filter` per date would copy every row and scan the batch for
    each date.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    # `timestamp` is the UTC instant as ASCII text (`YYYY-MM-DD HH:MM:SS`), so its first ten
    # bytes are the UTC date; slicing bytes skips the UTF-8 decoding a string slice does.
    dates = pc.binary_slice(batch.column("timestamp").cast(pa.binary()), 0, 10)
    n = len(dates)
    changes = pc.indices_nonzero(pc.not_equal(dates.slice(1), dates.slice(0, n - 1)))
    if len(changes) == 0:
        return batch, {dates[0].as_py().decode(): [batch]}
    if len(changes) < _MAX_DATE_RUNS:
        starts = [0, *(i + 1 for i in changes.to_pylist())]
        ends = [*starts[1:], n]
        parts: dict[str, list[pa.RecordBatch]] = {}
        for date, start, end in zip(pc.take(dates, pa.array(starts)).to_pylist(), starts, ends):
            parts.setdefault(date.decode(), []).append(batch.slice(start, end - start))
        return batch, parts
    encoded = pc.dictionary_encode(dates)
    # sort_indices is stable: the rows of each date keep their input order.
    rows = batch.take(pc.sort_indices(encoded.indices))
    counts = pc.value_counts(encoded.indices)
    names = [name.decode() for name in encoded.dictionary.to_pylist()]
    parts = {}
    start = 0
    for index, count in sorted(
        zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())
    ):
        parts[names[index]] = [rows.slice(start, count)]
        start += count
    return rows, parts


class _ErrorRecords:
    """Error records as JSON Lines, staged into one file opened at the first error."""

    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        self.source = source
        self.file: BinaryIO | None = None
        self.counts: Counter[str] = Counter()
        self.samples: list[dict[str, Any]] = []

    def add(self, batch: Batch) -> None:
        errors = batch.errors
        if errors.num_rows == 0:
            return
        if self.file is None:
            self.file = open(self.path, "wb")  # noqa: SIM115 -- closed in finish/abort
        # Rendered in Rust: the same bytes as orjson.dumps(error_record(...)) per row.
        self.file.write(batch.error_lines(self.source))
        import pyarrow.compute as pc

        for entry in pc.value_counts(errors.column("error")).to_pylist():
            self.counts[entry["values"]] += entry["counts"]
        wanted = SAMPLE_ERRORS - len(self.samples)
        if wanted > 0:
            head = errors.slice(0, wanted).select(["line", "error", "detail"])
            self.samples.extend(head.to_pylist())

    def finish(self) -> Path | None:
        if self.file is None:
            return None
        self.file.close()
        return self.path

    def abort(self) -> None:
        if self.file is not None:
            self.file.close()


def error_record(source: str, line: int, code: str, detail: str, raw: bytes) -> dict[str, Any]:
    """One error record: the raw line as text, or as `raw_base64` when it is not UTF-8."""
    record: dict[str, Any] = {"source": source, "line": line, "error": code, "detail": detail}
    try:
        record["raw"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["raw_base64"] = base64.b64encode(raw).decode("ascii")
    return record


def raw_bytes(record: dict[str, Any]) -> bytes:
    """The exact bytes of the line an error record describes (the inverse of `error_record`)."""
    if "raw_base64" in record:
        return base64.b64decode(record["raw_base64"])
    return record["raw"].encode("utf-8")


# --- ingest ---------------------------------------------------------------------------------


def clean_key(date: str, sid: str) -> str:
    return f"date={date}/{sid}.parquet"


def error_key(date: str, sid: str) -> str:
    return f"date={date}/{sid}.jsonl"


def manifest_key(sid: str) -> str:
    return f"{MANIFEST_DIR}/{sid}.json"


def _utc_date(moment: datetime | None) -> str:
    moment = moment or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d")


def ingest(
    stream: Any,
    *,
    source: str,
    clean_uri: str,
    error_uri: str,
    arrival: datetime | None = None,
    s3_client: Any = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    timestamp_field: str = "timestamp",
    user_id_field: str = "user_id",
    action_field: str = "action",
    source_version: str | None = None,
) -> IngestResult:
    """Process one source end to end and publish its outputs, replacing any earlier ones.

    `stream` is a binary file-like object (or iterable of byte chunks) of decompressed JSON Lines;
    `arrival` (default: now) dates the error file; `source_version` (an S3 ETag) is recorded in
    the manifest for `stored_result`. If reading or processing fails, nothing is
    published, the source's previous output stays as it was, and the exception propagates.
    """
    from logsieve import process_stream

    started = time.perf_counter()
    sid = source_id(source)
    clean_sink = open_sink(clean_uri, s3_client)
    error_sink = open_sink(error_uri, s3_client)
    clean_stage = clean_sink.staging_dir()
    error_stage = error_sink.staging_dir()
    partitions = _CleanPartitions(clean_stage)
    records = _ErrorRecords(error_stage / "errors.jsonl", source)
    totals = Counter[str]()
    try:
        try:
            for batch in process_stream(
                stream,
                chunk_size,
                timestamp_field=timestamp_field,
                user_id_field=user_id_field,
                action_field=action_field,
            ):
                stats = batch.stats
                for name in _STAT_NAMES:
                    totals[name] += int(getattr(stats, name))
                partitions.add(batch.clean, flush_bytes=max(chunk_size, 1 << 20))
                records.add(batch)
            staged_clean = partitions.finish()
            staged_errors = records.finish()
        except BaseException:
            partitions.abort()
            records.abort()
            raise
        new_clean = {clean_key(date, sid): path for date, path in staged_clean.items()}
        new_errors = {}
        if staged_errors is not None:
            new_errors[error_key(_utc_date(arrival), sid)] = staged_errors
        record: dict[str, Any] = {
            "stats": dict(totals),
            "error_counts": dict(records.counts),
            "source_version": source_version,
        }
        with _output_errors(f"write the output to {clean_uri} and {error_uri}"):
            published, removed = _publish(
                clean_sink, error_sink, sid, source, new_clean, new_errors, record
            )
    finally:
        shutil.rmtree(clean_stage, ignore_errors=True)
        shutil.rmtree(error_stage, ignore_errors=True)
    return IngestResult(
        source=source,
        processed=totals["processed"],
        valid=totals["valid"],
        errors=totals["errors"],
        blank=totals["blank"],
        bytes=totals["bytes"],
        error_counts=dict(sorted(records.counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        clean_keys=published["clean"],
        error_keys=published["errors"],
        sample_errors=records.samples,
        seconds=time.perf_counter() - started,
        source_id=sid,
        removed_keys=removed,
    )


@contextlib.contextmanager
def _output_errors(doing: str) -> Iterator[None]:
    """Failures of the output side (botocore's, OSError...) as OutputError: cannot `doing`."""
    try:
        yield
    except LogsieveError:
        raise
    except Exception as exc:
        raise OutputError(f"cannot {doing}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def _publish(
    clean_sink: _Sink,
    error_sink: _Sink,
    sid: str,
    source: str,
    new_clean: dict[str, Path],
    new_errors: dict[str, Path],
    record: dict[str, Any],
) -> tuple[dict[str, list[str]], list[str]]:
    """Publish staged files and drop the source's stale ones, with the manifest kept a superset.

    Order: manifest listing old + new files, then the new files, then deletion of old files the
    new run did not write, then the final manifest. A crash at any step leaves a manifest naming
    every file of this source that may exist, so the next ingest cleans up after it.

    The manifest is only replaced if nobody else replaced it since it was read (S3 conditional
    writes; a lock on a local disk). When two ingests of one source publish at once, their files
    may be mixed: the loser leaves a manifest naming every file either may have written and
    raises ConcurrentIngestError, and ingesting again repairs the output.
    """
    manifest = {"source": source, "source_id": sid}
    for _ in range(_MANIFEST_ATTEMPTS):
        old, token = _read_manifest(clean_sink, sid)
        recorded_clean, recorded_errors = _recorded(old, sid)
        old_clean, old_errors = recorded_clean - set(new_clean), recorded_errors - set(new_errors)
        if (
            not old_clean
            and not old_errors
            and recorded_clean | recorded_errors >= set(new_clean) | set(new_errors)
        ):
            break  # the manifest names every file that will exist (a repeat of the last run)
        intent = {
            **manifest,
            "clean": sorted(old_clean | set(new_clean)),
            "errors": sorted(old_errors | set(new_errors)),
            "complete": False,
        }
        try:
            token = clean_sink.write_if(manifest_key(sid), orjson.dumps(intent), token)
            break
        except ConcurrentIngestError:
            continue
    else:
        raise ConcurrentIngestError(f"{source}: other ingests of it keep replacing its manifest")
    published = {
        "clean": [clean_sink.publish(path, key) for key, path in sorted(new_clean.items())],
        "errors": [error_sink.publish(path, key) for key, path in sorted(new_errors.items())],
    }
    clean_sink.delete(sorted(old_clean))
    error_sink.delete(sorted(old_errors))
    final = {
        **manifest,
        "clean": sorted(new_clean),
        "errors": sorted(new_errors),
        "complete": True,
        **record,
        "written_at": datetime.now(timezone.utc).isoformat(),
    }
    data = orjson.dumps(final, option=orjson.OPT_INDENT_2)
    try:
        clean_sink.write_if(manifest_key(sid), data, token)
    except ConcurrentIngestError:
        _widen_manifest(clean_sink, sid, manifest, set(new_clean), set(new_errors))
        raise ConcurrentIngestError(
            f"{source} was ingested by another run at the same time, so its output may mix "
            "both runs; ingest it again to repair it"
        ) from None
    removed = [clean_sink.display(k) for k in sorted(old_clean)]
    removed += [error_sink.display(k) for k in sorted(old_errors)]
    return published, removed


def _widen_manifest(
    sink: _Sink, sid: str, manifest: dict[str, Any], clean: set[str], errors: set[str]
) -> None:
    """Add files this run published to the manifest another run wrote, marked incomplete."""
    for _ in range(_MANIFEST_ATTEMPTS):
        current, token = _read_manifest(sink, sid)
        recorded_clean, recorded_errors = _recorded(current, sid)
        wider = {
            **manifest,
            "clean": sorted(recorded_clean | clean),
            "errors": sorted(recorded_errors | errors),
            "complete": False,
        }
        try:
            sink.write_if(manifest_key(sid), orjson.dumps(wider), token)
            return
        except ConcurrentIngestError:
            continue


def _recorded(manifest: dict[str, Any], sid: str) -> tuple[set[str], set[str]]:
    """The clean and error keys a manifest names that really are this source's files."""
    return (
        _owned(manifest.get("clean"), sid, ".parquet"),
        _owned(manifest.get("errors"), sid, ".jsonl"),
    )


def _owned(keys: Any, sid: str, suffix: str) -> set[str]:
    """Keys from a manifest that really are this source's files: never delete anything else."""
    if not isinstance(keys, list):
        return set()
    pattern = re.compile(rf"date=\d{{4}}-\d{{2}}-\d{{2}}/{re.escape(sid + suffix)}")
    return {k for k in keys if isinstance(k, str) and pattern.fullmatch(k)}


def _read_manifest(sink: _Sink, sid: str) -> tuple[dict[str, Any], str | None]:
    """The manifest (empty if missing or unreadable) and the token to replace it with."""
    data, token = sink.read_versioned(manifest_key(sid))
    if not data:
        return {}, token
    try:
        manifest = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}, token
    return (manifest if isinstance(manifest, dict) else {}), token


def stored_result(
    *, source: str, version: str, clean_uri: str, error_uri: str, s3_client: Any = None
) -> IngestResult | None:
    """What the last complete ingest of `source` recorded, if it ingested this `version`.

    `version` is what `ingest` was given as `source_version` (an S3 ETag): a repeated event
    for an object already ingested can then be answered without reading it again.
    """
    if not version:
        return None
    clean_sink = open_sink(clean_uri, s3_client)
    sid = source_id(source)
    with _output_errors(f"read the manifests at {clean_uri}"):
        manifest, _ = _read_manifest(clean_sink, sid)
    stats = manifest.get("stats")
    if not (
        manifest.get("complete") is True
        and manifest.get("source_version") == version
        and isinstance(stats, dict)
    ):
        return None
    error_sink = open_sink(error_uri, s3_client)
    counts = manifest.get("error_counts")
    clean, errors = _recorded(manifest, sid)
    return IngestResult(
        source=source,
        **{name: int(stats.get(name, 0)) for name in _STAT_NAMES},
        error_counts=dict(counts) if isinstance(counts, dict) else {},
        clean_keys=[clean_sink.display(k) for k in sorted(clean)],
        error_keys=[error_sink.display(k) for k in sorted(errors)],
        sample_errors=[],
        seconds=0.0,
        source_id=sid,
    )


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "IngestResult",
    "error_record",
    "ingest",
    "open_sink",
    "raw_bytes",
    "source_id",
    "stored_result",
]
