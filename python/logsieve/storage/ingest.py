"""Write sources' clean rows into the clean Delta table and their invalid lines as error records.

Layout::

    <clean>/                                   a Delta Lake table partitioned by `date` (UTC)
    <clean>/_delta_log/                        its commits: the only truth about which rows exist
    <errors>/date=YYYY-MM-DD/<name>.jsonl      invalid lines, dated by the source's arrival
    <errors>/_logsieve/sources/<sid>.<tag>.json  per source version: its error files and counts
    <errors>/_logsieve/groups/<group>.json     a group's error files are written

Guarantees:

* One commit per ingest: a source's (or a group of sources') rows are written and its earlier
  rows removed in a single Delta commit: logsieve's own data files added and, for a source the
  table may hold, the files with its earlier rows removed (their other rows written again).
  Readers see the old rows or the new ones, never both and never neither.
* Idempotent: every commit records a Delta application transaction per source (its id and a
  number derived from its version). A version already committed is not written again, and
  two deliveries of one version racing each other cannot both commit: the loser's commit
  conflicts, and its retry finds the version stored (`IngestResult.already_ingested`).
* Error records with their rows: before the commit, a ledger for the source's version names
  the error files it will have (`complete: false`); the run that commits writes them, removes
  the previous version's and marks the ledger complete. A run that loses the commit race has
  written no error file. A committed version whose ledger stays incomplete (its run died in
  between) is ingested again by its next delivery, so no invalid line is lost.
* All or nothing per source: a source that fails mid-way (a truncated gzip) commits nothing,
  its previous rows stay; in a group the others are committed without it.
* Memory: rows are written by `logsieve.storage.datafiles` as they come and earlier files are
  rewritten a row group at a time, so memory stays bounded (docs/storage.md, "Memory", has the
  measurements).
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import errno
import functools
import hashlib
import itertools
import logging
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypedDict

import orjson

from logsieve import DEFAULT_CHUNK_SIZE
from logsieve.errors import ConcurrentIngestError, ConfigError, LogsieveError, OutputError
from logsieve.storage import table
from logsieve.storage.table import file_url_path

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable

    from logsieve import Batch

logger = logging.getLogger("logsieve.storage")

#: Where per-source ledgers live, under the error location (`_` keeps it out of readers' way).
LEDGER_DIR = "_logsieve/sources"
#: Where groups' markers live (see `group_key`).
GROUP_DIR = "_logsieve/groups"
SAMPLE_ERRORS = 5
_STAT_NAMES = ("processed", "valid", "errors", "blank", "bytes")
#: Data files delta-rs rolls over to a new one at (before compression).
TARGET_FILE_SIZE = 128 << 20
#: Chunks' worth of rows the data-file writer buffers across dates before flushing them.
_FLUSH_CHUNKS = 2
#: Conflicts delta-rs resolves itself per commit (appends of other sources) before giving up.
_COMMIT_RETRIES = 25
#: S3 uploads of error files switch to multipart above this size.
MULTIPART_THRESHOLD = 64 << 20
MULTIPART_CHUNKSIZE = 16 << 20
#: Staging directories untouched for this long belong to a dead process and are removed.
STALE_STAGING_SECONDS = 24 * 3600
_SLUG_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


# --- identity -------------------------------------------------------------------------------


def source_id(source: str) -> str:
    """Stable, filename- and S3-safe name: a readable slug of the identity plus a hash of it.

    `s3://logs/app/2025-08-20.jsonl.gz` -> `2025-08-20.jsonl.gz-<20 hex digits>`. The hash makes
    names of different sources distinct even when their last path components are equal.
    """
    if not source:
        raise ConfigError("a source needs a non-empty name to derive its id from")
    digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    tail = source.rstrip("/").rsplit("/", 1)[-1]
    slug = _SLUG_CHARS.sub("_", tail).strip("._-")[:60]
    return f"{slug}-{digest}" if slug else digest


@dataclass(frozen=True)
class ContentMark:
    """How a source's content begins: its first `length` bytes hash to `sha256`.

    Recorded in the ledger for local files, whose identity is a fingerprint of the first line:
    a later file with that fingerprint is the same source only if it begins with these bytes
    (a copy, or the file grown), not merely with the same line.
    """

    length: int
    sha256: str

    def begins(self, head: bytes) -> bool:
        """Whether content starting with `head` starts with the marked bytes."""
        return len(head) >= self.length and (
            hashlib.sha256(head[: self.length]).hexdigest() == self.sha256
        )


@dataclass(frozen=True)
class Source:
    """One source to ingest.

    `identity` decides which earlier rows an ingest replaces (`s3://bucket/key` for an object,
    a content fingerprint for a local file); `name` is what rows and error records call it;
    `version` tells a repeat from a change (an ETag, a size and mtime); `arrival` dates its
    error records; `open` gives its decompressed bytes, once per attempt.
    """

    identity: str
    name: str
    version: str
    open: Callable[[], contextlib.AbstractContextManager[Any]]
    arrival: datetime | None = None
    size: int | None = None
    content: ContentMark | None = None

    @property
    def slug(self) -> str:
        return source_id(self.identity)


def stream_source(
    stream: Any, *, name: str, identity: str | None = None, version: str | None = None, **kw: Any
) -> Source:
    """A Source for an already open stream (one attempt only)."""
    return Source(
        identity=identity or name,
        name=name,
        version=version or f"unversioned-{time.time_ns()}",
        open=lambda: contextlib.nullcontext(stream),
        **kw,
    )


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    """What one source produced. Error keys are S3 object keys for S3, else file paths."""

    source: str
    processed: int
    valid: int
    errors: int
    blank: int
    bytes: int
    error_counts: dict[str, int]
    error_keys: list[str]
    sample_errors: list[dict[str, Any]]
    seconds: float
    source_id: str = ""
    rows_by_date: dict[str, int] = field(default_factory=dict)
    table_version: int | None = None
    already_ingested: bool = False

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
            "rows_by_date": dict(self.rows_by_date),
            "table_version": self.table_version,
            "error_keys": list(self.error_keys),
            "seconds": round(self.seconds, 6),
            **({"already_ingested": True} if self.already_ingested else {}),
        }


@dataclass(frozen=True)
class SourceFailure:
    """A source that could not be read: nothing of it was committed."""

    source: Source
    error: BaseException


# --- error-record sinks: a local directory or an S3 prefix ----------------------------------


class _Sink:
    """Where error files and ledgers are published, under keys relative to a root."""

    def staging_dir(self) -> Path:
        raise NotImplementedError

    def publish(self, staged: Path, key: str) -> str:
        """Move a complete staged file to `key`; returns the key as reported to users."""
        raise NotImplementedError

    def read(self, key: str) -> bytes | None:
        raise NotImplementedError

    def write(self, key: str, data: bytes) -> None:
        """Replace `key` whole: readers see the old content or the new, never half."""
        raise NotImplementedError

    def create(self, key: str, data: bytes) -> bool:
        """Write `key` only if it does not exist yet (atomically); False if it did."""
        raise NotImplementedError

    def rewrite(self, key: str, transform: Callable[[bytes], bytes | None]) -> None:
        """Replace `key`'s content by `transform(content)` (None: delete it), safe against
        another rewrite of it at the same time (a lock locally, If-Match on S3)."""
        raise NotImplementedError

    def delete(self, keys: Iterable[str]) -> None:
        raise NotImplementedError

    def display(self, key: str) -> str:
        raise NotImplementedError

    def list(self, prefix: str = "") -> list[str]:
        """Every key under `prefix` (relative to the root), sorted: replay and `logsieve errors`
        find the error files and ledgers this way."""
        raise NotImplementedError


class _LocalSink(_Sink):
    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self._made: set[Path] = set()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"cannot create output directory {self.root}: {exc.strerror}"
            ) from exc

    def _make(self, directory: Path) -> None:
        """mkdir -p, once per directory and sink (thousands of ledgers share one)."""
        if directory not in self._made:
            directory.mkdir(parents=True, exist_ok=True)
            self._made.add(directory)

    def staging_dir(self) -> Path:
        # Inside the root, so publishing is an atomic rename on the same filesystem.
        staging = self.root / "_logsieve" / "staging"
        staging.mkdir(parents=True, exist_ok=True)
        _sweep_stale(staging)
        return Path(tempfile.mkdtemp(dir=staging))

    def publish(self, staged: Path, key: str) -> str:
        target = self.root / key
        self._make(target.parent)
        try:
            os.replace(staged, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # Staged on another filesystem (data files stage beside the error records): copy
            # under a hidden name, then rename, so the final name never shows half a file.
            temp = _temp_beside(target)
            shutil.copyfile(staged, temp)
            os.replace(temp, target)
            staged.unlink()
        return str(target)

    def read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        target = self.root / key
        self._make(target.parent)
        temp = _temp_beside(target)
        temp.write_bytes(data)
        os.replace(temp, target)

    def create(self, key: str, data: bytes) -> bool:
        target = self.root / key
        self._make(target.parent)
        try:
            # O_EXCL: only if absent. A reader that meets it half written finds no ledger, which
            # for a version not yet committed (what is created here) is what it means anyway.
            handle = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        return True

    def rewrite(self, key: str, transform: Callable[[bytes], bytes | None]) -> None:
        import fcntl

        locks = self.root / "_logsieve" / "locks"
        self._make(locks)
        lock = locks / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".lock")
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
            data = self.read(key)
            if data is None:
                return
            new = transform(data)
            if new is None:
                self.delete([key])
            elif new != data:
                self.write(key, new)

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            target = self.root / key
            target.unlink(missing_ok=True)
            _remove_empty_dir(target.parent, self.root)
            self._made.discard(target.parent)  # it may be gone now

    def display(self, key: str) -> str:
        return str(self.root / key)

    def list(self, prefix: str = "") -> list[str]:
        # A key prefix, as on S3: walk only the directory it lies in.
        base = self.root / prefix.rpartition("/")[0]
        if not base.is_dir():
            return []
        keys = (path.relative_to(self.root).as_posix() for path in base.rglob("*"))
        return sorted(k for k in keys if k.startswith(prefix) and (self.root / k).is_file())


def _temp_beside(target: Path) -> Path:
    """A hidden name next to `target` to write under, then rename: readers never see half."""
    return target.with_name(f".{target.name}.{os.getpid()}.{time.time_ns()}.tmp")


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

        config = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNKSIZE
        )
        full_key = self._key(key)
        kind = "application/vnd.apache.parquet" if key.endswith(".parquet") else None
        extra = {"ContentType": kind or "application/x-ndjson"}
        self.client.upload_file(str(staged), self.bucket, full_key, ExtraArgs=extra, Config=config)
        staged.unlink(missing_ok=True)
        return full_key

    def read(self, key: str) -> bytes | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            return None
        return bytes(response["Body"].read())

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(
            Bucket=self.bucket, Key=self._key(key), Body=data, ContentType="application/json"
        )

    def create(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentType="application/json",
                IfNoneMatch="*",  # S3's conditional write: only if absent
            )
        except ClientError as exc:
            if _lost_condition(exc):
                return False
            raise
        return True

    def rewrite(self, key: str, transform: Callable[[bytes], bytes | None]) -> None:
        from botocore.exceptions import ClientError

        for _ in range(_REWRITE_ATTEMPTS):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            except self.client.exceptions.NoSuchKey:
                return
            data, etag = bytes(response["Body"].read()), response["ETag"]
            new = transform(data)
            if new is None:
                self.delete([key])  # rewrites only take lines away: nothing can be lost
                return
            if new == data:
                return
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(key),
                    Body=new,
                    ContentType="application/x-ndjson",
                    IfMatch=etag,  # only over the content just read
                )
                return
            except ClientError as exc:
                if not _lost_condition(exc):
                    raise
        raise ConcurrentIngestError(f"s3://{self.bucket}/{self._key(key)} kept changing")

    def delete(self, keys: Iterable[str]) -> None:
        objects = [{"Key": self._key(k)} for k in keys]
        for start in range(0, len(objects), 1000):
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects[start : start + 1000], "Quiet": True}
            )

    def display(self, key: str) -> str:
        return self._key(key)

    def list(self, prefix: str = "") -> list[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=root + prefix
        )
        for page in pages:
            keys.extend(item["Key"][len(root) :] for item in page.get("Contents", []))
        return sorted(keys)


def _lost_condition(exc: Any) -> bool:
    """Whether S3 refused a conditional write because the key changed (or exists) meanwhile."""
    code = exc.response.get("Error", {}).get("Code", "")
    return code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


def open_sink(uri: str, s3_client: Any = None) -> _Sink:
    """A sink for `s3://bucket/prefix` or a local directory (a `file://` URL or a path)."""
    location = table.table_uri(uri, delta=False)
    if location.startswith("s3://"):
        return _S3Sink(location, s3_client)
    return _LocalSink(location)


# --- error records --------------------------------------------------------------------------


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


def error_key(date: str, name: str) -> str:
    return f"date={date}/{name}.jsonl"


@dataclass
class _SourceTally:
    """What the core counted for one source while it streamed."""

    totals: Counter[str] = field(default_factory=Counter)
    error_counts: Counter[str] = field(default_factory=Counter)
    samples: list[dict[str, Any]] = field(default_factory=list)
    rows_by_date: Counter[str] = field(default_factory=Counter)
    error_date: str | None = None

    @property
    def has_errors(self) -> bool:
        return bool(self.error_counts)


class _ErrorFiles:
    """Staged error records: one JSON Lines file per arrival date for the whole group."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: dict[str, BinaryIO] = {}

    def add(self, batch: Batch, name: str, date: str, tally: _SourceTally) -> None:
        errors = batch.errors
        if errors.num_rows == 0:
            return
        import pyarrow.compute as pc

        file = self.files.get(date)
        with _output_errors(f"stage error records in {self.directory}"):
            if file is None:
                file = self.files[date] = open(self.directory / f"{date}.jsonl", "wb")  # noqa: SIM115
            # Rendered in Rust, a piece at a time: the same bytes as orjson.dumps(error_record(
            # ...)) per row, and a huge invalid line is never held twice.
            batch.write_error_lines(name, file)
        for entry in pc.value_counts(errors.column("error")).to_pylist():
            tally.error_counts[entry["values"]] += entry["counts"]
        tally.error_date = date
        wanted = SAMPLE_ERRORS - len(tally.samples)
        if wanted > 0:
            head = errors.slice(0, wanted).select(["line", "error", "detail"])
            tally.samples.extend(head.to_pylist())

    def finish(self) -> dict[str, Path]:
        """Date -> complete staged file."""
        with _output_errors(f"stage error records in {self.directory}"):
            for file in self.files.values():
                file.close()
        return {date: self.directory / f"{date}.jsonl" for date in sorted(self.files)}

    def close(self) -> None:
        for file in self.files.values():
            with contextlib.suppress(OSError):
                file.close()


# --- ledgers: which error files each version of a source has ---------------------------------


def version_tag(number: int) -> str:
    """A source version's Delta transaction number as it names files: 16 hex digits."""
    return f"{number:016x}"


def ledger_key(slug: str, tag: str) -> str:
    # One directory for all ledgers: a directory per source cost a mkdir per new source.
    return f"{LEDGER_DIR}/{slug}.{tag}.json"


def group_key(group: str) -> str:
    """The marker a group's run writes once the group's error files are written."""
    return f"{GROUP_DIR}/{group}.json"


@dataclass(frozen=True)
class Ledger:
    """One version of a source: the error files holding its invalid lines, what it counted, and
    the version it replaces (`previous`, a version tag), whose leftovers its commit makes stale.

    A ledger is written before the commit, under the version's own key, so racing versions never
    overwrite each other's; the error files are written after the commit, by the run that made
    it, and `complete` turns True once they are there and the previous version's files are gone.
    `group` names the group whose files these are (they hold other sources' lines too).
    """

    identity: str
    name: str
    version: str
    files: list[str]
    stats: dict[str, int]
    error_counts: dict[str, int]
    rows_by_date: dict[str, int]
    previous: str | None
    complete: bool
    written_at: float = 0.0
    content: ContentMark | None = None
    errors_written: bool = False
    #: For a group's shared files: the group, whose marker says its files are written.
    group: str | None = None

    def pending(self, tag: str) -> bool:
        """Whether this version (`tag`) still has the version it replaced to remove."""
        return self.previous is not None and self.previous != tag

    def to_json(self) -> bytes:
        fields = {**self.__dict__, "content": self.content and self.content.__dict__}
        return orjson.dumps(fields, option=orjson.OPT_INDENT_2)

    @classmethod
    def parse(cls, data: bytes | None) -> Ledger | None:
        if not data:
            return None
        try:
            raw = orjson.loads(data)
            content = raw.get("content")
            return cls(
                identity=str(raw["identity"]),
                name=str(raw["name"]),
                version=str(raw["version"]),
                files=[str(k) for k in raw["files"]],
                stats={str(k): int(v) for k, v in raw["stats"].items()},
                error_counts={str(k): int(v) for k, v in raw["error_counts"].items()},
                rows_by_date={str(k): int(v) for k, v in raw["rows_by_date"].items()},
                previous=str(raw["previous"]) if raw.get("previous") else None,
                complete=bool(raw["complete"]),
                written_at=float(raw.get("written_at", 0.0)),
                errors_written=bool(raw.get("errors_written", False)),
                group=str(raw["group"]) if raw.get("group") else None,
                content=ContentMark(int(content["length"]), str(content["sha256"]))
                if content
                else None,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return None


_ERROR_FILE = re.compile(r"date=\d{4}-\d{2}-\d{2}/[A-Za-z0-9._-]+\.jsonl")
#: Conditional rewrites of a shared error file lost to others before giving up.
_REWRITE_ATTEMPTS = 10
#: Versions followed back through unfinished clean-ups (each a run that died after its commit).
_MAX_CHAIN = 16
#: A committed version whose ledger is still incomplete after this long lost its run between the
#: commit and writing its error records (which takes milliseconds): it is ingested again.
IN_PROGRESS_SECONDS = 60
#: How often a run writing error files says so (see IN_PROGRESS_SECONDS).
HEARTBEAT_SECONDS = 15


def _owned(keys: Iterable[str]) -> list[str]:
    """Keys from a ledger that really are error files: never delete anything else."""
    return [k for k in keys if _ERROR_FILE.fullmatch(k)]


def _read_ledger(sink: _Sink, slug: str, tag: str) -> Ledger | None:
    return Ledger.parse(sink.read(ledger_key(slug, tag)))


@dataclass
class _Removal:
    """Versions to remove, as what that comes to: whole error files, the lines of some sources
    in files shared with others (each file rewritten once), and ledgers."""

    files: set[str] = field(default_factory=set)
    lines: dict[str, set[str]] = field(default_factory=dict)
    ledgers: set[str] = field(default_factory=set)

    def add_lines(self, ledger: Ledger) -> None:
        """The error lines a ledger's version wrote: its files, or its lines in shared ones."""
        if ledger.group is not None:
            for key in _owned(ledger.files):
                self.lines.setdefault(key, set()).add(ledger.name)
        else:
            self.files.update(_owned(ledger.files))

    def add_version(self, sink: _Sink, slug: str, tag: str, depth: int = 0) -> None:
        """A version and its ledger. A version whose own clean-up never finished (its run died
        after its commit) still has its previous version's lines: those go too."""
        ledger = _read_ledger(sink, slug, tag)
        if ledger is not None:
            self.add_lines(ledger)
            if not ledger.complete and ledger.pending(tag) and depth < _MAX_CHAIN:
                self.add_version(sink, slug, str(ledger.previous), depth + 1)
        self.ledgers.add(ledger_key(slug, tag))

    def apply(self, sink: _Sink) -> None:
        sink.delete(sorted(self.files))
        for key, names in sorted(self.lines.items()):
            sink.rewrite(key, functools.partial(_without_sources, names=frozenset(names)))
        sink.delete(sorted(self.ledgers))


def _without_sources(data: bytes, names: frozenset[str]) -> bytes | None:
    """A shared error file's content without the lines of `names`; None when nothing is left."""
    kept = [
        line
        for line in data.splitlines(keepends=True)
        if line.strip() and orjson.loads(line).get("source") not in names
    ]
    return b"".join(kept) or None


def _complete(sink: _Sink, slug: str, tag: str, ledger: Ledger) -> None:
    done = replace(ledger, complete=True, errors_written=True, written_at=time.time())
    sink.write(ledger_key(slug, tag), done.to_json())


def _finish(sink: _Sink, slug: str, tag: str, ledger: Ledger) -> None:
    """After the commit of `ledger`'s version and its error files: remove the version it replaced
    (and what its unfinished clean-up left), then mark it complete.

    Ledgers of versions that were never committed (a lost race, a run that died before its
    commit) name no written file, since error files are written only after a commit: they are
    left, a few hundred bytes each.
    """
    removal = _Removal()
    if ledger.pending(tag):
        removal.add_version(sink, slug, str(ledger.previous))
    removal.apply(sink)
    _complete(sink, slug, tag, ledger)


# --- ingest ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldNames:
    """The input's names for the three required fields (output columns keep standard names)."""

    timestamp: str = "timestamp"
    user_id: str = "user_id"
    action: str = "action"


@dataclass
class GroupResult:
    """What one group ingest did: a result per ingested source, and the sources that failed."""

    results: dict[str, IngestResult] = field(default_factory=dict)
    failures: list[SourceFailure] = field(default_factory=list)


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
    identity: str | None = None,
) -> IngestResult:
    """Process one open stream end to end and commit it, replacing the source's earlier rows.

    `stream` is a binary file-like object (or iterable of byte chunks) of decompressed JSON
    Lines; `source` names it; `identity` (default: `source`) decides which earlier rows it
    replaces; `source_version` (an S3 ETag) makes a repeat a no-op
    (`IngestResult.already_ingested`). If reading fails, nothing is committed and the exception
    propagates; a lost commit race raises ConcurrentIngestError (open the source again and retry).
    """
    one = stream_source(
        stream, name=source, identity=identity, version=source_version, arrival=arrival
    )
    outcome = ingest_group(
        [one],
        clean_uri=clean_uri,
        error_uri=error_uri,
        s3_client=s3_client,
        chunk_size=chunk_size,
        fields=FieldNames(timestamp_field, user_id_field, action_field),
        attempts=1,
    )
    if outcome.failures:
        raise outcome.failures[0].error
    return outcome.results[one.identity]


def ingest_group(
    sources: Sequence[Source],
    *,
    clean_uri: str,
    error_uri: str,
    s3_client: Any = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    fields: FieldNames = FieldNames(),
    attempts: int = table.COMMIT_ATTEMPTS,
) -> GroupResult:
    """Ingest several sources in one commit (a few data files per date, not one per source).

    A source that cannot be read is left out (its earlier rows stay) and reported in
    `failures`; the others are committed without it. Lost commit races are retried from the
    start (each source opened again) up to `attempts` times, then raise ConcurrentIngestError.
    """
    _check_distinct(sources)
    outcome = GroupResult()
    pending = list(sources)
    tries = 0
    while pending:
        tries += 1
        try:
            done, failed = _ingest_once(
                pending, clean_uri, error_uri, s3_client, chunk_size, fields
            )
        except ConcurrentIngestError:
            if tries >= attempts:
                raise
            import random

            time.sleep(random.uniform(0.02, 0.05 * 2 ** min(tries, 6)))
            continue
        outcome.results.update(done)
        if failed is None:
            break
        outcome.failures.append(failed)
        pending = [s for s in pending if s is not failed.source and s.identity not in done]
    return outcome


def _check_distinct(sources: Sequence[Source]) -> None:
    seen: set[str] = set()
    for one in sources:
        if one.identity in seen:
            raise ConfigError(f"{one.name}: the same source twice in one ingest")
        seen.add(one.identity)


def _ingest_once(
    sources: list[Source],
    clean_uri: str,
    error_uri: str,
    s3_client: Any,
    chunk_size: int,
    fields: FieldNames,
) -> tuple[dict[str, IngestResult], SourceFailure | None]:
    """One attempt: answer repeats from the ledger, stream the rest into one commit."""
    started = time.perf_counter()
    error_sink = open_sink(error_uri, s3_client)
    with _output_errors(f"open the clean table at {clean_uri}"):
        _refuse_old_layout(clean_uri)
        snapshot = table.create_table(clean_uri, s3_client)
    done: dict[str, IngestResult] = {}
    todo: list[Source] = []
    recorded: dict[str, int | None] = {}
    markers: dict[str, bool] = {}
    ids = {one.identity: table.app_id(one.identity) for one in sources}
    versions = table.transaction_versions(
        snapshot, ids.values(), table.data_files(clean_uri, s3_client)
    )
    for one in sources:
        recorded[one.identity] = versions[ids[one.identity]]
        stored = _stored(snapshot, error_sink, one, recorded[one.identity], markers)
        if stored is not None:
            done[one.identity] = stored
        else:
            todo.append(one)
    if not todo:
        return done, None
    staging = error_sink.staging_dir()
    try:
        held = {one.identity for one in todo if recorded[one.identity] is not None}
        held |= _files_may_hold(snapshot, [o.identity for o in todo if o.identity not in held])
        replaced = {one.identity: recorded[one.identity] for one in todo}
        writer = _GroupWriter(
            todo, error_sink, staging, snapshot, chunk_size, fields, held, replaced
        )
        failure = writer.write(clean_uri, s3_client)
        if failure is not None:
            return done, failure
        elapsed = time.perf_counter() - started
        for one in todo:
            done[one.identity] = writer.result(one, elapsed)
        writer.publish()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return done, None


def _check_schema(snapshot: DeltaTable, clean_uri: str) -> None:
    """Appends write files in logsieve's schema: a table of another one is refused, not mixed."""
    import pyarrow as pa

    theirs = pa.schema(snapshot.schema().to_arrow())
    ours = table.table_schema()
    if [(f.name, f.type) for f in theirs] != [(f.name, f.type) for f in ours]:
        raise OutputError(
            f"the clean table at {clean_uri} has another schema than logsieve writes "
            f"({', '.join(theirs.names)}): write to a new location"
        )


def _refuse_old_layout(clean_uri: str) -> None:
    """A local directory of loose `date=` Parquet files (no `_delta_log`) is not ours to mix."""
    location = table.table_uri(clean_uri)
    if location.startswith("s3://"):
        return
    root = Path(location)
    if (root / "_delta_log").is_dir() or not root.is_dir():
        return
    if any(root.glob("date=*/*.parquet")):
        raise ConfigError(
            f"{root} holds Parquet files but no Delta table (_delta_log): an older logsieve "
            "layout or another tool's data; write to a new location, or move them away"
        )


def _stored(
    snapshot: DeltaTable,
    sink: _Sink,
    one: Source,
    committed: int | None,
    markers: dict[str, bool] | None = None,
) -> IngestResult | None:
    """The stored result if the table already holds exactly this version of the source.

    `committed` is the source's transaction version in `snapshot` (None: none recorded);
    `markers` remembers groups' markers already read (a group's sources share one).
    """
    if committed is None or committed != table.version_number(one.version):
        return None
    slug, tag = one.slug, version_tag(committed)
    with _output_errors(f"read the ledger of {one.name}"):
        ledger = _read_ledger(sink, slug, tag)
        written = ledger is not None and _errors_written(sink, ledger, markers)
    if ledger is not None and not ledger.complete:
        if written and ledger.pending(tag):
            # Its run stopped after writing the error files: remove the replaced version's now.
            with _output_errors(f"remove the previous error records of {one.name}"):
                _finish(sink, slug, tag, ledger)
        elif not written and time.time() - ledger.written_at < IN_PROGRESS_SECONDS:
            raise ConcurrentIngestError(
                f"{one.name}: another run committed this version and is writing its error records"
            )
        elif not written:
            return None  # that run died after its commit: ingest again, writing them this time
    recorded = ledger if ledger is not None and ledger.version == one.version else None
    stats = recorded.stats if recorded else {}
    return IngestResult(
        source=one.name,
        **{name: int(stats.get(name, 0)) for name in _STAT_NAMES},
        error_counts=dict(recorded.error_counts) if recorded else {},
        error_keys=[sink.display(k) for k in (recorded.files if recorded else [])],
        sample_errors=[],
        seconds=0.0,
        source_id=slug,
        rows_by_date=dict(recorded.rows_by_date) if recorded else {},
        table_version=snapshot.version(),
        already_ingested=True,
    )


def _errors_written(sink: _Sink, ledger: Ledger, markers: dict[str, bool] | None) -> bool:
    """Whether a version's error files are written: its ledger says so, or its group's marker."""
    if ledger.errors_written or ledger.group is None:
        return ledger.errors_written
    markers = {} if markers is None else markers
    if ledger.group not in markers:
        markers[ledger.group] = sink.read(group_key(ledger.group)) is not None
    return markers[ledger.group]


class _SourceFailed(Exception):
    """Raised inside the row stream to abort the commit when a source cannot be read."""


class _GroupWriter:
    """Streams a group's sources through the core into one Delta commit."""

    def __init__(
        self,
        sources: list[Source],
        sink: _Sink,
        staging: Path,
        snapshot: DeltaTable,
        chunk_size: int,
        fields: FieldNames,
        held: set[str],
        replaced: dict[str, int | None],
    ) -> None:
        self.sources = sources
        #: Sources whose earlier rows the table may hold: a replace, not an append.
        self.held = held
        self.sink = sink
        self.snapshot = snapshot
        self.chunk_size = chunk_size
        self.fields = fields
        self.errors = _ErrorFiles(staging)
        self.staging = staging
        self.tallies = {one.identity: _SourceTally() for one in sources}
        self.failure: SourceFailure | None = None
        #: An output-side failure raised inside the row stream (delta-rs only sees "aborted").
        self.stream_error: BaseException | None = None
        self.ledgers: dict[str, Ledger] = {}
        #: Several sources share their error files, named for the group; one names them itself.
        self.group = _group_name(sources) if len(sources) > 1 else None
        self.error_name = self.group or f"{sources[0].slug}-{_tag_of(sources[0])}"
        self.staged: dict[str, Path] = {}
        self.version: int | None = None
        #: The transaction number each source's earlier version is committed under, if any.
        self.replaced = replaced
        self.table_files: table.DataFiles | None = None

    def write(self, clean_uri: str, s3_client: Any = None) -> SourceFailure | None:
        """Commit the group; a SourceFailure (nothing committed) if one source was unreadable.

        Sources' rows go to logsieve's own data files; earlier rows of the sources the table
        may hold leave in the same commit.
        """
        self.table_files = table.data_files(clean_uri, s3_client)
        try:
            self._commit(clean_uri, s3_client)
        except Exception as exc:
            self.errors.close()
            if self.failure is not None:
                return self.failure
            if self.stream_error is not None:
                raise self.stream_error from None
            if isinstance(exc, LogsieveError):
                raise
            if table.is_commit_conflict(exc):
                raise ConcurrentIngestError(
                    f"{self._names()}: another writer committed first; open it again and retry"
                ) from exc
            raise OutputError(
                f"cannot commit to the clean table at {clean_uri}: {_reason(exc)}"
            ) from exc
        self.version = self.snapshot.version()
        return None

    def _properties(self, retries: int) -> Any:
        """The commit's properties: a Delta app transaction per source, `retries` conflicts
        delta-rs may resolve itself."""
        from deltalake import CommitProperties, Transaction

        return CommitProperties(
            app_transactions=[
                Transaction(table.app_id(one.identity), table.version_number(one.version))
                for one in self.sources
            ],
            custom_metadata={"logsieve.sources": str(len(self.sources))},
            max_commit_retries=retries,
        )

    def _commit(self, clean_uri: str, s3_client: Any) -> None:
        """logsieve's own data files, published into the table as each is complete (invisible
        until the commit), and the files holding the sources' earlier rows removed, all in one
        commit; the published files are taken back if it fails. Memory stays bounded: rows
        are written as they come, earlier files are rewritten a row group at a time."""
        from logsieve.storage import datafiles

        _check_schema(self.snapshot, clean_uri)
        clean = open_sink(clean_uri, s3_client)
        actions: list[Any] = []
        published: list[str] = []

        def publish(staged: datafiles.StagedFile) -> None:
            path = datafiles.data_file_path(staged.date)
            with _output_errors(f"write data files to the clean table at {clean_uri}"):
                action = datafiles.add_action(staged, path, staged.path.stat().st_size)
                clean.publish(staged.path, path)
            published.append(path)
            actions.append(action)

        files = datafiles.DateFiles(self.staging, self.chunk_size * _FLUSH_CHUNKS, publish)
        committing = False
        try:
            for batch in self._batches():
                files.add(batch)
            held = {one.identity for one in self.sources if one.identity in self.held}
            removal = None
            if held:
                reading = f"read the clean table's data files at {clean_uri}"
                with _output_errors(reading):
                    removal = _remove_rows(self.snapshot, clean_uri, s3_client, held, files)
            files.finish()
            committing = True
            if removal is None:
                # Blind appends of different sources merge: delta-rs retries them itself.
                self._transact(actions, _COMMIT_RETRIES)
            else:
                self._commit_removal(actions, removal)
        except BaseException as exc:
            files.abort()
            # Not committed (a failure before the commit, or a lost race): the files published
            # so far are nobody's. Any other failure of the commit may have committed them.
            if not committing or table.is_commit_conflict(exc):
                with contextlib.suppress(Exception):
                    clean.delete(published)
            raise
        self.snapshot.update_incremental()  # the object does not move to its own commit

    def _transact(self, actions: list[Any], retries: int) -> None:
        self.snapshot.create_write_transaction(
            actions,
            mode="append",
            schema=table.table_schema(),
            partition_by=[table.PARTITION_COLUMN],
            commit_properties=self._properties(retries),
        )

    def _commit_removal(self, adds: list[Any], removal: _RowRemoval) -> None:
        """Commit adds and removes on this snapshot, moving it over other writers' commits only
        where they leave the plan valid.

        delta-rs would move it over a compaction that rewrote a file this commit removes (an
        optimize's `dataChange=false` removes raise no conflict), and the sources' earlier
        rows would live on in the rewritten file. So delta-rs may not retry; this does, after
        checking that every removed file is still live, that no new file may hold the sources'
        rows and that no other commit recorded one of the sources.
        """
        recorded = {
            one.identity: self.snapshot.transaction_version(table.app_id(one.identity))
            for one in self.sources
        }
        for _ in range(_COMMIT_RETRIES):
            try:
                self._transact(adds + removal.removes, 0)
                return
            except Exception as exc:
                if not table.is_commit_conflict(exc):
                    raise
                self.snapshot.update_incremental()
                if not removal.still_valid(self.snapshot, recorded):
                    raise
        self._transact(adds + removal.removes, 0)

    def _names(self) -> str:
        names = [one.name for one in self.sources]
        return names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} more sources"

    def _batches(self) -> Iterator[pa.RecordBatch]:
        """Every source's clean rows with lineage; errors staged, ledgers written at the end."""
        for one in self.sources:
            tally = self.tallies[one.identity]
            error_date = _utc_date(one.arrival)
            try:
                with one.open() as stream:
                    chunk_size = _chunk_size(self.chunk_size, one.size)
                    for batch in _core_batches(stream, chunk_size, self.fields):
                        stats = batch.stats
                        for name in _STAT_NAMES:
                            tally.totals[name] += int(getattr(stats, name))
                        self.errors.add(batch, one.name, error_date, tally)
                        if batch.clean.num_rows:
                            yield _with_lineage(batch.clean, one, tally.rows_by_date)
            except OutputError as exc:
                self.stream_error = exc
                raise
            except Exception as exc:
                self.failure = SourceFailure(one, exc)
                raise _SourceFailed(one.name) from exc
        try:
            self._write_intents()
        except Exception as exc:
            self.stream_error = exc
            raise

    def _write_intents(self) -> None:
        """Before the commit: each source's ledger names the error files its version will have
        (`complete: false`), so that a commit whose error records never got written is known."""
        self.staged = self.errors.finish()
        with _output_errors(f"write the ledgers under {self.sink.display(LEDGER_DIR)}"):
            for one in self.sources:
                tally = self.tallies[one.identity]
                previous = self._previous(one)
                date = tally.error_date
                ledger = Ledger(
                    identity=one.identity,
                    name=one.name,
                    version=one.version,
                    files=[error_key(date, self.error_name)] if date and tally.has_errors else [],
                    stats={name: int(tally.totals[name]) for name in _STAT_NAMES},
                    error_counts=dict(tally.error_counts),
                    rows_by_date=dict(sorted(tally.rows_by_date.items())),
                    previous=previous,
                    complete=False,
                    written_at=time.time(),
                    content=one.content,
                    group=self.group,
                )
                # Create-only: another run of this version may have committed and completed it
                # already (then this run will lose its commit), or an earlier run's intent is
                # there (the same files and counts).
                self.sink.create(ledger_key(one.slug, _tag_of(one)), ledger.to_json())
                self.ledgers[one.identity] = ledger

    def _superseded(self) -> set[str]:
        """The sources whose committed version is no longer this run's (a newer one won since)."""
        try:
            self.snapshot.update_incremental()
        except Exception:  # then the newer run's own clean-up, or the next delivery, sees to it
            return set()
        assert self.table_files is not None
        ids = {one.identity: table.app_id(one.identity) for one in self.sources}
        versions = table.transaction_versions(self.snapshot, ids.values(), self.table_files)
        return {
            one.identity
            for one in self.sources
            if versions[ids[one.identity]] != table.version_number(one.version)
        }

    def _previous(self, one: Source) -> str | None:
        """The tag of the version this commit replaces. Ingesting the committed version again
        (its run died before writing its error records) replaces what that run replaced."""
        replaced = self.replaced.get(one.identity)
        if replaced is None:
            return None
        if replaced != table.version_number(one.version):
            return version_tag(replaced)
        earlier = _read_ledger(self.sink, one.slug, version_tag(replaced))
        return earlier.previous if earlier is not None else None

    def publish(self) -> None:
        """After the commit: the error files, then the previous versions' leftovers go and the
        ledgers are complete. Raises OutputError if the error files cannot be written: the rows
        stand, and the next delivery of the source, finding its ledger incomplete, ingests it
        again and writes them."""
        with _output_errors(
            f"write the error records to {self.sink.display('')} (the rows are committed; "
            "ingesting the source again writes them)"
        ):
            if self.staged:
                with _Heartbeat(self.sink, self.sources, self.ledgers):
                    for date, path in self.staged.items():
                        self.sink.publish(path, error_key(date, self.error_name))
            if self.group is not None:  # one marker for the group, not a write per ledger
                self.sink.write(group_key(self.group), b'{"errors_written": true}')
        superseded = self._superseded()
        finishing: list[tuple[Source, str, Ledger]] = []
        for one in self.sources:
            ledger, tag = self.ledgers[one.identity], _tag_of(one)
            if one.identity in superseded:
                # A newer version committed meanwhile; its run may have cleaned up before these
                # files were there, so they go now.
                with contextlib.suppress(Exception):
                    mine = _Removal(ledgers={ledger_key(one.slug, tag)})
                    mine.add_lines(ledger)  # its ledger may be gone already
                    mine.apply(self.sink)
                continue
            if self.group is not None and not ledger.pending(tag):
                continue  # the group's marker stands for its ledger's errors_written
            ledger = replace(
                ledger,
                errors_written=True,
                complete=not ledger.pending(tag),
                written_at=time.time(),
            )
            with _output_errors(f"write the ledger of {one.name}"):
                self.sink.write(ledger_key(one.slug, tag), ledger.to_json())
            if ledger.pending(tag):
                finishing.append((one, tag, ledger))
        try:
            # The replaced versions go together: a group's shared file is rewritten once.
            removal = _Removal()
            for one, _, ledger in finishing:
                removal.add_version(self.sink, one.slug, str(ledger.previous))
            removal.apply(self.sink)
            for one, tag, ledger in finishing:
                _complete(self.sink, one.slug, tag, ledger)
        except Exception as exc:  # the next delivery of each source finishes it
            logger.warning(
                "%s: could not remove the previous versions' error records: %s", self._names(), exc
            )

    def result(self, one: Source, elapsed: float) -> IngestResult:
        tally = self.tallies[one.identity]
        totals = tally.totals
        ledger = self.ledgers[one.identity]
        return IngestResult(
            source=one.name,
            processed=totals["processed"],
            valid=totals["valid"],
            errors=totals["errors"],
            blank=totals["blank"],
            bytes=totals["bytes"],
            error_counts=dict(sorted(tally.error_counts.items(), key=lambda kv: (-kv[1], kv[0]))),
            error_keys=[self.sink.display(k) for k in ledger.files],
            sample_errors=list(tally.samples),
            seconds=elapsed,
            source_id=one.slug,
            rows_by_date=dict(sorted(tally.rows_by_date.items())),
            table_version=self.version,
        )


class _Heartbeat:
    """While the error files upload, rewrite the ledgers every few seconds, so that a delivery
    of the same version sees a run at work (not a dead one) however long the upload takes."""

    def __init__(self, sink: _Sink, sources: list[Source], ledgers: dict[str, Ledger]) -> None:
        import threading

        self.sink, self.sources, self.ledgers = sink, sources, ledgers
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="logsieve-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    def _beat(self) -> None:
        while not self.done.wait(HEARTBEAT_SECONDS):
            for one in self.sources:
                fresh = replace(self.ledgers[one.identity], written_at=time.time())
                with contextlib.suppress(Exception):  # a missed beat only shortens the grace
                    self.sink.write(ledger_key(one.slug, _tag_of(one)), fresh.to_json())


class _FieldKeywords(TypedDict):
    """`FieldNames` as the keyword arguments of `process` and `process_stream`."""

    timestamp_field: str
    user_id_field: str
    action_field: str


def _core_batches(stream: Any, chunk_size: int, fields: FieldNames) -> Iterator[Batch]:
    """The core's batches for a stream. One that fits in a chunk is processed in one call, without
    `process_stream`'s reader and worker threads, which cost more than a small file does."""
    from logsieve import process, process_stream
    from logsieve.sources import read_exactly

    names: _FieldKeywords = {
        "timestamp_field": fields.timestamp,
        "user_id_field": fields.user_id,
        "action_field": fields.action,
    }
    if not callable(getattr(stream, "read", None)):
        yield from process_stream(stream, chunk_size, **names)
        return
    head = read_exactly(stream, chunk_size + 1)
    if len(head) <= chunk_size:
        if head:
            yield process(head, **names)
        return
    rest = iter(lambda: stream.read(chunk_size), b"")
    yield from process_stream(itertools.chain([head], rest), chunk_size, **names)


#: The smallest chunk worth a core call; a small source gets a chunk of about its size.
_MIN_CHUNK = 64 << 10


def _chunk_size(chunk_size: int, source_size: int | None) -> int:
    """The chunk for a source: never bigger than the source (its buffers are allocated and
    zeroed up front, which for 2,000 small files cost more than reading them)."""
    if source_size is None:
        return chunk_size
    return min(chunk_size, max(_MIN_CHUNK, source_size + 1))


def _tag_of(one: Source) -> str:
    return version_tag(table.version_number(one.version))


def _group_name(sources: Sequence[Source]) -> str:
    """An error-file name for a group: the same sources and versions give the same name."""
    digest = hashlib.sha256()
    for one in sorted(sources, key=lambda s: s.identity):
        digest.update(one.identity.encode("utf-8", "surrogatepass") + b"\0")
        digest.update(one.version.encode("utf-8", "surrogatepass") + b"\0")
    return f"group-{digest.hexdigest()[:20]}"


def _with_lineage(clean: pa.RecordBatch, one: Source, rows_by_date: Counter[str]) -> pa.RecordBatch:
    """The core's clean rows plus lineage and the `date` partition column, in table order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = clean.num_rows
    # `timestamp` is the UTC instant as ASCII text (`YYYY-MM-DD HH:MM:SS`): its first ten
    # bytes are the UTC date.
    dates = pc.utf8_slice_codeunits(clean.column("timestamp"), 0, 10)
    for entry in pc.value_counts(dates).to_pylist():
        rows_by_date[entry["values"]] += entry["counts"]
    return pa.RecordBatch.from_arrays(
        [
            *clean.columns,
            pa.repeat(pa.scalar(one.identity, pa.string()), n),
            pa.repeat(pa.scalar(_text(one.name), pa.string()), n),
            pa.repeat(pa.scalar(_text(one.version), pa.string()), n),
            dates,
        ],
        schema=table.table_schema(),
    )


def _text(value: str) -> str:
    """Text Arrow can store: a name that is not valid UTF-8 (surrogate-escaped) is escaped."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class _RowRemoval:
    """What a commit removes to drop sources' earlier rows, and the files it looked at."""

    identities: frozenset[str]
    removes: list[Any]
    examined: frozenset[str]  #: paths of the candidate files, removed or found without the rows

    def still_valid(self, snapshot: DeltaTable, recorded: dict[str, int | None]) -> bool:
        """Whether the plan holds for a newer snapshot: no other commit recorded one of the
        group's sources, every removed file is live, no new file may hold the rows."""
        for identity, version in recorded.items():
            if snapshot.transaction_version(table.app_id(identity)) != version:
                return False
        candidates = {f.path for f in _candidate_files(snapshot, set(self.identities))}
        removed = {action.path for action in self.removes}
        return removed <= candidates and candidates <= self.examined


def _remove_rows(
    snapshot: DeltaTable, clean_uri: str, s3_client: Any, identities: set[str], files: Any
) -> _RowRemoval:
    """Remove actions for the live files that hold rows of `identities`; the other rows of
    those files go to `files` (a `datafiles.DateFiles`) to be written again.

    Removing a file another commit removed first (compaction, say) makes this commit conflict,
    so rows are never rewritten twice; other sources' appends merge with it.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from deltalake.transaction import RemoveAction

    located = table.data_files(clean_uri, s3_client)
    wanted = pa.array(sorted(identities), pa.string())
    schema = table.table_schema()
    stored = pa.schema([f for f in schema if f.name != table.PARTITION_COLUMN])
    removes = []
    candidates = _candidate_files(snapshot, identities)
    for candidate in candidates:
        with located.fs.open_input_file(located.location(candidate.path)) as raw:
            parquet = pq.ParquetFile(raw)
            held = pc.is_in(parquet.read(columns=[table.SOURCE_ID_COLUMN])[0], wanted)
            if not pc.any(held).as_py():
                continue
            for group in range(parquet.num_row_groups):
                rows = parquet.read_row_group(group).select(stored.names).cast(stored)
                rows = rows.filter(pc.invert(pc.is_in(rows[table.SOURCE_ID_COLUMN], wanted)))
                if rows.num_rows:
                    date = pa.repeat(pa.scalar(candidate.date, pa.string()), rows.num_rows)
                    rows = rows.append_column(table.PARTITION_COLUMN, date).cast(schema)
                    for batch in rows.to_batches():
                        files.add(batch)
        removes.append(
            RemoveAction(
                candidate.path,
                data_change=True,
                deletion_timestamp=int(time.time() * 1000),
                size=candidate.size,
                partition_values={table.PARTITION_COLUMN: candidate.date},
            )
        )
    examined = frozenset(c.path for c in candidates)
    return _RowRemoval(frozenset(identities), removes, examined)


@dataclass(frozen=True)
class _LiveFile:
    path: str
    size: int
    date: str


def _candidate_files(snapshot: DeltaTable, identities: set[str]) -> list[_LiveFile]:
    """The live files whose `source_id` statistics admit one of `identities` (every file
    without statistics)."""
    import pyarrow as pa

    actions = pa.table(snapshot.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return []
    columns = actions.column_names
    low, high = f"min.{table.SOURCE_ID_COLUMN}", f"max.{table.SOURCE_ID_COLUMN}"
    lows = actions.column(low).to_pylist() if low in columns else [None] * actions.num_rows
    highs = actions.column(high).to_pylist() if high in columns else [None] * actions.num_rows
    ordered = sorted(identities)
    found = []
    for path, size, date, lowest, highest in zip(
        actions.column("path").to_pylist(),
        actions.column("size_bytes").to_pylist(),
        actions.column(f"partition.{table.PARTITION_COLUMN}").to_pylist(),
        lows,
        highs,
    ):
        if lowest is None or highest is None:
            found.append(_LiveFile(path, size, date))
            continue
        first = bisect.bisect_left(ordered, lowest)  # the smallest identity >= lowest
        if first < len(ordered) and ordered[first] <= highest:
            found.append(_LiveFile(path, size, date))
    return found


def _files_may_hold(snapshot: DeltaTable, identities: list[str]) -> set[str]:
    """The identities that some live file's min/max statistics of `source_id` admit.

    Rows without a recorded transaction are rare (another tool wrote them, or the transaction
    expired); checking the statistics keeps an append from ever duplicating them.
    """
    if not identities:
        return set()
    import pyarrow as pa

    actions = pa.table(snapshot.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return set()
    import pyarrow.compute as pc  # only here: an empty table's first ingest never loads it

    low, high = f"min.{table.SOURCE_ID_COLUMN}", f"max.{table.SOURCE_ID_COLUMN}"
    if low not in actions.column_names or high not in actions.column_names:
        return set(identities)
    lows, highs = actions.column(low), actions.column(high)
    if pc.any(pc.or_(pc.is_null(lows), pc.is_null(highs))).as_py():
        return set(identities)
    merged = _merged(zip(lows.to_pylist(), highs.to_pylist()))
    return {identity for identity in identities if _covered(merged, identity)}


def _merged(ranges: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Overlapping [low, high] ranges merged into disjoint ones, sorted."""
    merged: list[tuple[str, str]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _covered(merged: list[tuple[str, str]], value: str) -> bool:
    import bisect

    index = bisect.bisect_right(merged, (value, chr(0x10FFFF))) - 1
    return index >= 0 and merged[index][0] <= value <= merged[index][1]


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
    return table.delta_reason(exc)


class StoredContent:
    """How the stored version of a source begins (`ContentMark`), by identity: one table
    snapshot, read once, for many questions (`logsieve process` asks once per input)."""

    def __init__(self, *, clean_uri: str, error_uri: str, s3_client: Any = None) -> None:
        self.sink = open_sink(error_uri, s3_client)
        with _output_errors(f"open the clean table at {clean_uri}"):
            _refuse_old_layout(clean_uri)
            self.snapshot = table.open_table(clean_uri, s3_client)

    def __call__(self, identity: str) -> ContentMark | None:
        if self.snapshot is None:
            return None
        committed = self.snapshot.transaction_version(table.app_id(identity))
        if committed is None:
            return None
        with _output_errors(f"read the ledger of {identity}"):
            ledger = _read_ledger(self.sink, source_id(identity), version_tag(committed))
        return ledger.content if ledger is not None else None


def stored_result(
    *, source: str, version: str, clean_uri: str, error_uri: str, s3_client: Any = None
) -> IngestResult | None:
    """What is stored for `source` if the clean table already holds exactly this `version`."""
    if not version:
        return None
    with _output_errors(f"open the clean table at {clean_uri}"):
        snapshot = table.open_table(clean_uri, s3_client)
    if snapshot is None:
        return None
    one = stream_source(None, name=source, version=version)
    committed = snapshot.transaction_version(table.app_id(one.identity))
    return _stored(snapshot, open_sink(error_uri, s3_client), one, committed)


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ContentMark",
    "FieldNames",
    "GroupResult",
    "IngestResult",
    "Source",
    "SourceFailure",
    "StoredContent",
    "error_record",
    "file_url_path",
    "ingest",
    "ingest_group",
    "open_sink",
    "raw_bytes",
    "source_id",
    "stored_result",
]
