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

import shutil
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logsieve import DEFAULT_CHUNK_SIZE
from logsieve.errors import ConcurrentIngestError, ConfigError
from logsieve.locations import is_s3, resolve
from logsieve.storage import table
from logsieve.storage.group_writer import _files_may_hold, _GroupWriter
from logsieve.storage.identity import ContentMark, FieldNames, Source, source_id, stream_source
from logsieve.storage.ledgers import (
    IN_PROGRESS_SECONDS,
    Ledger,
    _finish,
    _read_ledger,
    group_key,
    mark_table,
    version_tag,
)
from logsieve.storage.results import _STAT_NAMES, GroupResult, IngestResult, SourceFailure
from logsieve.storage.sinks import _output_errors, _Sink, open_sink

if TYPE_CHECKING:
    from deltalake import DeltaTable


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
    with _output_errors(f"mark the error records at {error_sink.display('')}"):
        # str(): the stubs say int, delta-rs gives the table id (a UUID) as text.
        mark_table(error_sink, str(snapshot.metadata().id), table.table_uri(clean_uri))
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


def _refuse_old_layout(clean_uri: str) -> None:
    """A local directory of loose `date=` Parquet files (no `_delta_log`) is not ours to mix."""
    location = resolve(clean_uri)
    if is_s3(location):
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


__all__ = ["StoredContent", "ingest", "ingest_group", "stored_result"]
