"""The group writer: streams each source of a group through the core, writes its rows into
data files and its invalid lines into error files, then commits the group once, replacing the
sources' earlier rows (row removal) in the same commit."""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from logsieve._core import split_by_date
from logsieve.errors import ConcurrentIngestError, LogsieveError, OutputError
from logsieve.storage import table
from logsieve.storage.error_files import _ErrorFiles, _SourceTally, error_key
from logsieve.storage.identity import FieldNames, Source
from logsieve.storage.ledgers import (
    LEDGER_DIR,
    Ledger,
    _complete,
    _Heartbeat,
    _read_ledger,
    _Removal,
    _tag_of,
    group_key,
    ledger_key,
    version_tag,
)
from logsieve.storage.results import _STAT_NAMES, IngestResult, SourceFailure
from logsieve.storage.sinks import _output_errors, _reason, _Sink, open_sink

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable

    from logsieve import Batch
    from logsieve._core import DatePart


logger = logging.getLogger("logsieve.storage")


#: The commit-info key naming one ingest's commit.
COMMIT_ID_KEY = "logsieve.commit"
#: Data files delta-rs rolls over to a new one at (before compression).
TARGET_FILE_SIZE = 128 << 20


#: Chunks' worth of rows the data-file writer buffers across dates before flushing them.
_FLUSH_CHUNKS = 2


#: Conflicts delta-rs resolves itself per commit (appends of other sources) before giving up.
_COMMIT_RETRIES = 25


def _utc_date(moment: datetime | None) -> str:
    moment = moment or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d")


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
        #: Names this run's commit in its commit info, to find its version afterwards.
        self.commit_id = uuid.uuid4().hex
        self.planned_version: int | None = None

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
        self.version = self._committed_version()
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
            custom_metadata={
                "logsieve.sources": str(len(self.sources)),
                COMMIT_ID_KEY: self.commit_id,
            },
            max_commit_retries=retries,
        )

    def _committed_version(self) -> int:
        """The version this run's commit became: other writers may have committed after it
        by the time the snapshot moved forward, so it is found by the id in its commit info
        (read from the log: delta-rs numbers `history()` from the snapshot it is asked on)."""
        try:
            found = self._find_commit()
        except Exception:  # the log cannot be read now: the snapshot's version will do
            found = None
        return self.snapshot.version() if found is None else found

    def _commit(self, clean_uri: str, s3_client: Any) -> None:
        """logsieve's own data files, published into the table as each is complete (invisible
        until the commit), and the files holding the sources' earlier rows removed, all in one
        commit; the published files are taken back if it fails. Memory stays bounded: rows
        are written as they come, earlier files are rewritten a row group at a time."""
        from logsieve.storage import datafiles

        _check_schema(self.snapshot, clean_uri)
        self.planned_version = self.snapshot.version()
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
            for part in self._parts():
                files.add(part.date, part.rows)
            held = {one.identity for one in self.sources if one.identity in self.held}
            removal = None
            if held:
                reading = f"read the clean table's data files at {clean_uri}"
                with _output_errors(reading):
                    removal = _remove_rows(self.snapshot, clean_uri, s3_client, held, files)
            files.finish()
            committing = True
            self._commit_actions(actions, removal)
        except BaseException as exc:
            files.abort()
            # Not committed (a failure before the commit, or a lost race the log confirms):
            # the files published so far are nobody's. Any other failure of the commit may
            # have committed them.
            if not committing or table.is_commit_conflict(exc):
                with contextlib.suppress(Exception):
                    clean.delete(published)
            raise
        self.snapshot.update_incremental()  # the object does not move to its own commit

    def _commit_actions(self, adds: list[Any], removal: _RowRemoval | None) -> None:
        """One commit of `adds` (and `removal`'s removes). A commit delta-rs reports as failed
        may have landed (a retried PUT of the log entry answered 412 after the first one was
        stored; delta-rs conflicting with its own commit): the log says, by this run's id."""
        try:
            if removal is None or not removal.removes:
                # Blind appends of different sources merge: delta-rs retries them itself. A
                # concurrent commit of one of these sources conflicts on its app transaction.
                self._transact(adds, _COMMIT_RETRIES)
            else:
                self._commit_removal(adds, removal)
        except Exception as exc:
            if table.is_commit_conflict(exc) and self._find_commit() is not None:
                return
            raise

    def _find_commit(self) -> int | None:
        """The version this run's commit became, from the log (None: it is not there). Raises
        when the log cannot be read: then nobody knows, and nothing may be taken back."""
        assert self.table_files is not None and self.planned_version is not None
        self.snapshot.update_incremental()
        for version in range(self.planned_version + 1, self.snapshot.version() + 1):
            info = table.commit_info(self.table_files, version, strict=True)
            if info.get(COMMIT_ID_KEY) == self.commit_id:
                return version
        return None

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
        assert self.table_files is not None
        recorded = removal.recorded(self.snapshot, self.sources, self.table_files)
        for _ in range(_COMMIT_RETRIES):
            try:
                self._transact(adds + removal.removes, 0)
                return
            except Exception as exc:
                if not table.is_commit_conflict(exc) or self._find_commit() is not None:
                    raise  # _commit_actions takes a commit that landed as done
                if not removal.still_valid(self.snapshot, recorded, self.table_files):
                    raise
        self._transact(adds + removal.removes, 0)

    def _names(self) -> str:
        names = [one.name for one in self.sources]
        return names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} more sources"

    def _parts(self) -> Iterator[DatePart]:
        """Every source's clean rows with lineage, per date; errors staged, ledgers written at
        the end."""
        for one in self.sources:
            tally = self.tallies[one.identity]
            lineage = _Lineage(one)
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
                            yield from _dated_rows(batch.clean, lineage, tally.rows_by_date)
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


class _FieldKeywords(TypedDict):
    """`FieldNames` as the keyword arguments of `process` and `process_stream`."""

    timestamp_field: str
    user_id_field: str
    action_field: str


def _core_batches(stream: Any, chunk_size: int, fields: FieldNames) -> Iterator[Batch]:
    """The core's batches for a stream. One that fits in a chunk is processed in one call, without
    `process_stream`'s reader and worker threads, which cost more than a small file does."""
    from logsieve import process, process_stream
    from logsieve.sources import prepend, read_exactly

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
    yield from process_stream(prepend(head, stream), chunk_size, **names)


#: The smallest chunk worth a core call; a small source gets a chunk of about its size.
_MIN_CHUNK = 64 << 10


def _chunk_size(chunk_size: int, source_size: int | None) -> int:
    """The chunk for a source: never bigger than the source (its buffers are allocated and
    zeroed up front, which for 2,000 small files cost more than reading them)."""
    if source_size is None:
        return chunk_size
    return min(chunk_size, max(_MIN_CHUNK, source_size + 1))


def _group_name(sources: Sequence[Source]) -> str:
    """An error-file name for a group: the same sources and versions give the same name."""
    digest = hashlib.sha256()
    for one in sorted(sources, key=lambda s: s.identity):
        digest.update(one.identity.encode("utf-8", "surrogatepass") + b"\0")
        digest.update(one.version.encode("utf-8", "surrogatepass") + b"\0")
    return f"group-{digest.hexdigest()[:20]}"


def _dated_rows(
    clean: pa.RecordBatch, lineage: _Lineage, rows_by_date: Counter[str]
) -> list[DatePart]:
    """The core's clean rows plus lineage, in the data files' column order, per UTC date (the
    partition), each date's rows counted."""
    import pyarrow as pa

    rows = pa.RecordBatch.from_arrays(
        [*clean.columns, *lineage.columns(clean.num_rows)], schema=table.stored_schema()
    )
    # `timestamp` is the UTC instant as text (`YYYY-MM-DD HH:MM:SS`): it starts with the date.
    parts = split_by_date(rows, "timestamp")
    for part in parts:
        rows_by_date[part.date] += part.rows.num_rows
    return parts


class _Lineage:
    """A source's three constant lineage columns, built once for the longest batch so far and
    sliced (zero-copy) for each batch, not three new columns of repeated text per batch."""

    def __init__(self, one: Source) -> None:
        self.values = (one.identity, _text(one.name), _text(one.version))
        self.built: list[pa.Array] = []

    def columns(self, rows: int) -> list[pa.Array]:
        import pyarrow as pa

        if not self.built or len(self.built[0]) < rows:
            self.built = [pa.repeat(pa.scalar(value, pa.string()), rows) for value in self.values]
        return [column.slice(0, rows) for column in self.built]


def _text(value: str) -> str:
    """Text Arrow can store: a name that is not valid UTF-8 (surrogate-escaped) is escaped."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class _RowRemoval:
    """What a commit removes to drop sources' earlier rows, and the files it looked at."""

    identities: frozenset[str]
    removes: list[Any]
    examined: frozenset[str]  #: paths of the candidate files, removed or found without the rows

    @staticmethod
    def recorded(
        snapshot: DeltaTable, sources: Sequence[Source], files: table.DataFiles
    ) -> dict[str, int | None]:
        """Each source's transaction number in `snapshot` (by app id)."""
        return table.transaction_versions(
            snapshot, [table.app_id(s.identity) for s in sources], files
        )

    def still_valid(
        self, snapshot: DeltaTable, recorded: dict[str, int | None], files: table.DataFiles
    ) -> bool:
        """Whether the plan holds for a newer snapshot: no other commit recorded one of the
        group's sources, every removed file is live, no new file holds the rows (a new file
        whose statistics merely span one of the sources is read to see)."""
        now = table.transaction_versions(snapshot, recorded, files)
        if now != recorded:
            return False
        candidates = {f.path: f for f in _candidate_files(snapshot, set(self.identities))}
        removed = {action.path for action in self.removes}
        if not removed <= candidates.keys():
            return False
        wanted = sorted(self.identities)
        return not any(
            _holds_rows(files, path, wanted) for path in candidates.keys() - self.examined
        )


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
    stored = table.stored_schema()
    removes = []
    candidates = _candidate_files(snapshot, identities)
    for candidate in candidates:
        try:
            raw = located.fs.open_input_file(located.location(candidate.path))
        except FileNotFoundError:
            _gone_since(snapshot, candidate.path)
            raise
        with raw:
            parquet = pq.ParquetFile(raw)
            held = pc.is_in(parquet.read(columns=[table.SOURCE_ID_COLUMN])[0], wanted)
            if not pc.any(held).as_py():
                continue
            for group in range(parquet.num_row_groups):
                rows = parquet.read_row_group(group).select(stored.names).cast(stored)
                rows = rows.filter(pc.invert(pc.is_in(rows[table.SOURCE_ID_COLUMN], wanted)))
                for batch in rows.to_batches():
                    files.add(candidate.date, batch)
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


def _gone_since(snapshot: DeltaTable, path: str) -> None:
    """A data file of the snapshot is missing: if a newer commit removed it (compaction, then
    a vacuum with no retention), the plan is stale and the ingest is retried."""
    import pyarrow as pa

    snapshot.update_incremental()
    live = pa.table(snapshot.get_add_actions(flatten=True)).column("path").to_pylist()
    if path not in live:
        raise ConcurrentIngestError(
            f"{path}: removed by another commit while this ingest read it; open it again"
        )


def _holds_rows(files: table.DataFiles, path: str, identities: list[str]) -> bool:
    """Whether the data file at `path` (as the log names it) has rows of `identities`."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with files.fs.open_input_file(files.location(path)) as raw:
        column = pq.ParquetFile(raw).read(columns=[table.SOURCE_ID_COLUMN])[0]
    return bool(pc.any(pc.is_in(column, pa.array(identities, pa.string()))).as_py())


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
