"""Compaction of the clean table: many small files per date become a few sorted ones.

The real-time pipeline commits one small file per object, so a busy day holds thousands of
files; every reader then pays one request and one footer per file. `compact` rewrites each
date's small files into files of about `target_size` and then vacuums files that no snapshot
within the retention period reads any more.

How a partition is rewritten (measured in docs/compaction.md):
- it fits in one target-size file: `optimize.z_order(["event_time"])`. delta-rs's `compact`
  would rewrite every file of such a partition anyway (each is below the target), so sorting
  costs only CPU, and the result is one file whose row groups prune by time;
- it is bigger: `optimize.compact`, which bin-packs only the files below the target and leaves
  full files alone, so a run costs the new data, not the whole day. Its output keeps commit
  order, which for a live stream is time order to within an object's span.
- fewer than two small files: nothing to gain, left alone (z_order is not idempotent).

Every partition is one commit that replaces files without changing data; it loses the race to
a writer that removed one of its files (a predicate overwrite of a source) and is then planned
again from the new snapshot. Appends by other writers do not conflict with it. Two compactions
must not run at once: delta-rs 1.6 lets two optimize commits that rewrote the same files both
succeed, which duplicates their rows, so a run holds a lock (`CompactionLock`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

from logsieve import settings
from logsieve.errors import ConfigError, LogsieveError, OutputError
from logsieve.locations import is_s3, resolve, s3_parts
from logsieve.storage.table import (
    PARTITION_COLUMN,
    delta_reason,
    is_commit_conflict,
    open_table,
    storage_options,
    with_commit_retries,
    writer_properties,
)

if TYPE_CHECKING:
    from deltalake import DeltaTable

logger = logging.getLogger("logsieve.compact")

#: About the size of each rewritten file (Parquet bytes; delta-rs treats it as approximate).
DEFAULT_TARGET_SIZE = 128 << 20
#: Files removed this long ago are deleted: readers of older snapshots have had a week.
DEFAULT_RETENTION_HOURS = 168
#: The column rewritten partitions are sorted by, so row-group statistics prune by time.
SORT_COLUMN = "event_time"
#: Memory a sort may hold before it spills to the temporary directory: without it, sorting a
#: partition took about 25 times its Parquet size in memory (docs/compaction.md).
SORT_MEMORY_BYTES = 256 << 20
#: A lock on S3 older than this is taken over: its holder crashed (a Lambda lives 15 minutes).
LOCK_LEASE_SECONDS = 3600
#: Where the lock lives, under the table root (Delta readers and vacuum skip `_` names).
LOCK_NAME = "_logsieve/compaction.lock"
#: What delta-rs assumes when the table sets no `delta.deletedFileRetentionDuration`.
_DELTA_DEFAULT_RETENTION_HOURS = 168
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_INTERVAL = re.compile(r"^\s*interval\s+(\d+)\s+(\w+?)s?\s*$", re.IGNORECASE)
_HOURS_PER_UNIT = {
    "microsecond": 1 / 3.6e9,
    "millisecond": 1 / 3.6e6,
    "second": 1 / 3600,
    "minute": 1 / 60,
    "hour": 1,
    "day": 24,
    "week": 168,
}

#: What compaction did to a partition; "busy": every attempt lost its commit to writers
#: replacing sources there, so it was left for the next run (not an error).
Action = Literal["sorted", "compacted", "unchanged", "busy"]


class NoTableError(ConfigError):
    """There is no Delta table at the location (nothing has been ingested there yet)."""


class CompactionLockedError(LogsieveError):
    """Another compaction of the same table is running; this one did nothing."""


@dataclass(frozen=True)
class PartitionFiles:
    """One partition of one snapshot: its files, rows and bytes, and how many files are small."""

    files: int = 0
    rows: int | None = 0  # None: a file without statistics (not written by logsieve)
    bytes: int = 0
    small_files: int = 0


@dataclass(frozen=True)
class PartitionReport:
    """One date: the snapshot compaction planned from and the one it committed."""

    date: str
    action: Action
    files_before: int
    files_after: int
    rows_before: int | None
    rows_after: int | None
    bytes_before: int
    bytes_after: int
    #: Commits lost to other writers before this one went through (each re-planned).
    conflicts: int = 0


@dataclass(frozen=True)
class CompactionReport:
    """What one `compact` call did to the table."""

    uri: str
    version_before: int
    version_after: int
    partitions: list[PartitionReport] = field(default_factory=list)
    #: Files deleted from storage by the vacuum (None: vacuum not run).
    files_vacuumed: int | None = None
    seconds: float = 0.0

    @property
    def rewritten(self) -> list[PartitionReport]:
        return [p for p in self.partitions if p.action in ("sorted", "compacted")]

    @property
    def busy(self) -> list[PartitionReport]:
        return [p for p in self.partitions if p.action == "busy"]

    @property
    def changed(self) -> bool:
        """Whether anything was rewritten or deleted (worth a log line)."""
        return bool(self.rewritten or self.files_vacuumed)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line: the versions, what was rewritten, what was vacuumed."""
        files_before = sum(p.files_before for p in self.rewritten)
        files_after = sum(p.files_after for p in self.rewritten)
        parts = [
            f"{self.uri} v{self.version_before} -> v{self.version_after}",
            f"{len(self.rewritten)} of {len(self.partitions)} partitions rewritten"
            + (f" ({files_before} -> {files_after} files)" if self.rewritten else ""),
        ]
        if self.busy:
            parts.append(f"{len(self.busy)} busy with writers (left for the next run)")
        if self.files_vacuumed is not None:
            parts.append(f"{self.files_vacuumed} files vacuumed")
        return ", ".join(parts) + f" ({self.seconds:.1f} s)"


# --- the library ------------------------------------------------------------------------------


def compact(
    clean_uri: str,
    *,
    dates: Iterable[str | date] | None = None,
    target_size: int = DEFAULT_TARGET_SIZE,
    retention_hours: int = DEFAULT_RETENTION_HOURS,
    vacuum: bool = True,
    s3_client: Any = None,
) -> CompactionReport:
    """Rewrite the small files of each partition (`dates`, default all), then vacuum.

    Raises NoTableError when there is no table at `clean_uri`, ConfigError for a bad date or
    size, OutputError when the storage refuses (no bucket, no permission).
    """
    started = time.perf_counter()
    location = resolve(clean_uri)
    if target_size <= 0:
        raise ConfigError(f"the target size must be positive, got {target_size}")
    if retention_hours < 0:
        raise ConfigError(f"the retention must be 0 hours or more, got {retention_hours}")
    wanted = None if dates is None else [parse_date(d) for d in dates]
    options = storage_options(location, s3_client)
    try:
        table = open_table(location, s3_client)
        if table is None:
            raise NoTableError(f"no Delta table at {location}")
    except NoTableError:
        raise
    except Exception as exc:
        if _is_delta_error(exc):
            raise OutputError(f"cannot compact {location}: {delta_reason(exc)}") from exc
        raise
    with CompactionLock(location, s3_client):
        return _compact_locked(
            table, location, options, wanted, target_size, retention_hours, vacuum, started
        )


def _compact_locked(
    table: DeltaTable,
    location: str,
    options: dict[str, str] | None,
    wanted: list[str] | None,
    target_size: int,
    retention_hours: int,
    vacuum: bool,
    started: float,
) -> CompactionReport:
    try:
        table.update_incremental()  # the snapshot after the lock: another run may just have ended
        version_before = table.version()
        present = partition_files(table, target_size)
        chosen = sorted(present) if wanted is None else sorted(set(wanted))
        reports = [
            _compact_partition(table, day, target_size)
            if present.get(day, PartitionFiles()).small_files >= 2
            else _unchanged(day, present.get(day, PartitionFiles()))
            for day in chosen
        ]
        vacuumed = _vacuum(location, options, retention_hours) if vacuum else None
        table.update_incremental()
        version_after = table.version()
        if version_after != version_before:
            # A rewrite commit names every file it removed: without a checkpoint, each new
            # reader replays those thousands of removes (a day of 5,000 objects: 16 ms to open
            # instead of 4). The compaction stands without one: a failure is only logged.
            try:
                table.create_checkpoint()
            except Exception as exc:
                logger.warning(
                    "checkpoint of %s at version %s failed: %s",
                    location,
                    version_after,
                    delta_reason(exc),
                )
    except Exception as exc:
        if _is_delta_error(exc):
            raise OutputError(f"cannot compact {location}: {delta_reason(exc)}") from exc
        raise
    return CompactionReport(
        uri=location,
        version_before=version_before,
        version_after=version_after,
        partitions=reports,
        files_vacuumed=vacuumed,
        seconds=round(time.perf_counter() - started, 3),
    )


class CompactionLock:
    """Mutual exclusion of compactions of one table (a context manager).

    Local tables: an exclusive `flock` on `<table>/_logsieve/compaction.lock`, released by the
    kernel if the process dies. S3: the object of that name created with `If-None-Match: *`
    (S3's conditional write, as delta-rs commits), holding its owner and an expiry; an expired
    one is replaced with `If-Match` on its ETag, so of two runs taking it over one wins.
    Entering raises CompactionLockedError while another run holds it.
    """

    def __init__(self, location: str, s3_client: Any = None) -> None:
        self.location = resolve(location)
        self.s3_client = s3_client
        self.token = f"{os.uname().nodename}:{os.getpid()}:{time.time_ns()}"
        self._file: Any = None

    @property
    def where(self) -> str:
        return f"{self.location}/{LOCK_NAME}"

    def __enter__(self) -> CompactionLock:
        if is_s3(self.location):
            self._acquire_s3()
        else:
            self._acquire_local()
        return self

    def __exit__(self, *exc: object) -> None:
        if is_s3(self.location):
            self._release_s3()
        elif self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None

    def _acquire_local(self) -> None:
        import fcntl

        path = os.path.join(self.location, *LOCK_NAME.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle = open(path, "a")  # noqa: SIM115 - held until __exit__
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise CompactionLockedError(
                f"another compaction of {self.location} is running (lock {self.where})"
            ) from None
        self._file = handle

    def _s3(self) -> tuple[Any, str, str]:
        import boto3

        bucket, prefix = s3_parts(self.location)
        key = f"{prefix}/{LOCK_NAME}" if prefix else LOCK_NAME
        return self.s3_client or boto3.client("s3"), bucket, key

    def _acquire_s3(self) -> None:
        client, bucket, key = self._s3()
        body = json.dumps({"owner": self.token, "expires": time.time() + LOCK_LEASE_SECONDS})
        try:
            client.put_object(Bucket=bucket, Key=key, Body=body.encode(), IfNoneMatch="*")
            return
        except client.exceptions.ClientError as exc:
            if not _precondition_failed(exc):
                raise OutputError(f"cannot take the lock {self.where}: {exc}") from exc
        try:
            held = client.get_object(Bucket=bucket, Key=key)
            expires = float(json.loads(held["Body"].read()).get("expires", 0))
        except client.exceptions.NoSuchKey:  # released meanwhile: one more try
            held, expires = None, 0.0
        except (ValueError, AttributeError):  # unreadable: treat as expired
            expires = 0.0
        if expires > time.time():
            until = datetime.fromtimestamp(expires, timezone.utc).strftime("%H:%M UTC")
            raise CompactionLockedError(
                f"another compaction of {self.location} is running "
                f"(lock {self.where}, held until {until} at the latest)"
            )
        condition = {"IfMatch": held["ETag"]} if held else {"IfNoneMatch": "*"}
        try:
            client.put_object(Bucket=bucket, Key=key, Body=body.encode(), **condition)
        except client.exceptions.ClientError as exc:
            if not _precondition_failed(exc):
                raise OutputError(f"cannot take the lock {self.where}: {exc}") from exc
            raise CompactionLockedError(
                f"another compaction of {self.location} took the lock {self.where} first"
            ) from None

    def _release_s3(self) -> None:
        client, bucket, key = self._s3()
        try:
            held = client.get_object(Bucket=bucket, Key=key)
            if json.loads(held["Body"].read()).get("owner") == self.token:
                client.delete_object(Bucket=bucket, Key=key)
        except Exception as exc:  # the lease expires by itself
            logger.warning("could not release %s: %s", self.where, exc)


def _precondition_failed(exc: Any) -> bool:
    """S3 refused a conditional write: the object exists, or changed (or a concurrent write)."""
    error = getattr(exc, "response", {}).get("Error", {})
    status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error.get("Code") in ("PreconditionFailed", "ConditionalRequestConflict") or status in (
        409,
        412,
    )


def parse_date(value: str | date) -> str:
    """A partition value (`YYYY-MM-DD`, a real date) from a string or a date."""
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    text = str(value).strip()
    try:
        if _DATE.fullmatch(text):
            return date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    raise ConfigError(f"{value!r} is not a date: expected YYYY-MM-DD, e.g. 2025-08-20")


def partition_files(table: DeltaTable, target_size: int) -> dict[str, PartitionFiles]:
    """Files, rows and bytes per partition of the table's current snapshot."""
    import pyarrow as pa

    actions = pa.table(table.get_add_actions(flatten=True))
    if table.metadata().partition_columns != [PARTITION_COLUMN]:
        raise ConfigError(
            f"{table.table_uri} is not partitioned by {PARTITION_COLUMN!r} alone (partitions: "
            f"{table.metadata().partition_columns}): not a logsieve clean table"
        )
    dates = actions.column(f"partition.{PARTITION_COLUMN}").to_pylist()
    sizes = actions.column("size_bytes").to_pylist()
    records = actions.column("num_records").to_pylist()
    found: dict[str, PartitionFiles] = {}
    for day, size, rows in zip(dates, sizes, records):
        seen = found.get(day, PartitionFiles())
        found[day] = PartitionFiles(
            files=seen.files + 1,
            rows=None if seen.rows is None or rows is None else seen.rows + rows,
            bytes=seen.bytes + size,
            small_files=seen.small_files + (size < target_size),
        )
    return found


def _unchanged(day: str, files: PartitionFiles, conflicts: int = 0) -> PartitionReport:
    return PartitionReport(
        date=day,
        action="unchanged",
        files_before=files.files,
        files_after=files.files,
        rows_before=files.rows,
        rows_after=files.rows,
        bytes_before=files.bytes,
        bytes_after=files.bytes,
        conflicts=conflicts,
    )


def _compact_partition(table: DeltaTable, day: str, target_size: int) -> PartitionReport:
    """One commit rewriting one partition, planned again from the latest snapshot on a conflict.

    The commit fails when a writer removed one of the files it rewrote (that writer's rows
    would come back otherwise): delta-rs detects it, and the next attempt sees the new files.
    A partition that keeps losing is left alone this run: compaction only saves reads, and the
    writers must not wait for it.
    """
    attempts = 0
    before = PartitionFiles()

    def attempt() -> PartitionReport:
        nonlocal attempts, before
        attempts += 1
        if attempts > 1:
            table.update_incremental()
        before = partition_files(table, target_size).get(day, PartitionFiles())
        if before.small_files < 2:
            return _unchanged(day, before, attempts - 1)
        action: Action = "sorted" if before.bytes <= target_size else "compacted"
        options: dict[str, Any] = {
            "partition_filters": [(PARTITION_COLUMN, "=", day)],
            "target_size": target_size,
            "writer_properties": writer_properties(),
        }
        if action == "sorted":
            table.optimize.z_order([SORT_COLUMN], max_spill_size=SORT_MEMORY_BYTES, **options)
        else:
            table.optimize.compact(**options)
        # The handle is now at the version it committed: what a reader of it sees.
        after = partition_files(table, target_size).get(day, PartitionFiles())
        return PartitionReport(
            date=day,
            action=action,
            files_before=before.files,
            files_after=after.files,
            rows_before=before.rows,
            rows_after=after.rows,
            bytes_before=before.bytes,
            bytes_after=after.bytes,
            conflicts=attempts - 1,
        )

    try:
        return with_commit_retries(attempt)
    except Exception as exc:
        if not is_commit_conflict(exc):
            raise
        logger.info("date=%s: %d commits lost to writers, left for the next run", day, attempts)
        return dataclasses.replace(_unchanged(day, before, attempts), action="busy")


def _vacuum(location: str, options: dict[str, str] | None, retention_hours: int) -> int:
    """Delete files removed more than `retention_hours` ago; returns how many.

    Only files some commit removed are candidates (delta-rs's default "lite" vacuum): files a
    writer has uploaded but not committed yet are never touched, whatever their age. A dry
    run first keeps runs with nothing to delete from adding two commits to the log.
    """
    from deltalake import DeltaTable

    def attempt() -> int:
        table = DeltaTable(location, storage_options=options)
        enforce = retention_hours >= configured_retention_hours(table.metadata().configuration)
        if not table.vacuum(retention_hours, dry_run=True, enforce_retention_duration=enforce):
            return 0
        return len(table.vacuum(retention_hours, dry_run=False, enforce_retention_duration=enforce))

    return with_commit_retries(attempt)


def configured_retention_hours(configuration: Mapping[str, str | None]) -> float:
    """The table's `delta.deletedFileRetentionDuration` in hours (`interval 7 days` -> 168)."""
    text = configuration.get("delta.deletedFileRetentionDuration") or ""
    match = _INTERVAL.match(text)
    if match and match.group(2).lower() in _HOURS_PER_UNIT:
        return int(match.group(1)) * _HOURS_PER_UNIT[match.group(2).lower()]
    return _DELTA_DEFAULT_RETENTION_HOURS


def _is_delta_error(exc: BaseException) -> bool:
    from deltalake.exceptions import DeltaError

    return isinstance(exc, (DeltaError, OSError))


# --- the scheduled Lambda ---------------------------------------------------------------------


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Lambda entry point: compact yesterday's and today's partitions (UTC) of LOGSIEVE_CLEAN_URI.

    An event carrying `{"dates": ["YYYY-MM-DD", ...]}` (a manual invocation) compacts those
    instead. Before the first ingest there is no table: that is reported, not an error, so the
    schedule does not alarm on a new stack.
    """
    uri = settings.value(settings.CLEAN_URI)
    if not uri:
        raise ConfigError(f"environment variable {settings.CLEAN_URI} is not set")
    dates = event.get("dates") if isinstance(event, Mapping) else None
    if not isinstance(dates, list):
        today = datetime.now(timezone.utc).date()
        dates = [today - timedelta(days=1), today]
    try:
        report = compact(uri, dates=dates)
    except NoTableError as exc:
        logger.info("%s", exc)
        return {"uri": resolve(uri), "table": False}
    except CompactionLockedError as exc:  # a manual run, or the previous run still going
        logger.info("%s", exc)
        return {"uri": resolve(uri), "locked": True}
    logger.info("compaction: %s", report.summary())
    return report.to_json()


__all__ = [
    "DEFAULT_RETENTION_HOURS",
    "DEFAULT_TARGET_SIZE",
    "CompactionLock",
    "CompactionLockedError",
    "CompactionReport",
    "NoTableError",
    "PartitionReport",
    "compact",
    "handler",
]
