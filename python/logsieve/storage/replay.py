"""`logsieve replay` and `logsieve errors`: bring error records back once their cause is fixed.

`logsieve errors ERRORS` says what the error records hold (by code, source and day, with sample
lines), so a user sees what to fix. `logsieve replay ERRORS --out DIR` runs the selected
records' raw lines through the core again, with the field names given: lines that now pass
become rows of the clean table, with their original source's lineage (`source_id`, `source`,
`source_version`, so a later version of that source replaces them as it replaces the rest), and
their error records go; lines that still fail keep one error record, with the new reason.

Two stores cannot change in one step, so a replay goes (docs/replay.md):

1. load the table's snapshot; finish every earlier replay that committed but did not rewrite
   its error files (its *intent*, `<errors>/_logsieve/replays/<id>.json`, says which lines go);
2. read the selected records; keep only those of each source's stored version (a record of a
   version since replaced has no rows to join);
3. write this replay's intent (the lines that now pass, per error file);
4. commit the rows, against the snapshot of step 1, with two Delta application transactions
   per source: `logsieve-replay:<source id>` (a number from the source's version, the records
   and the options: the same replay twice is recognised) and the source's own `logsieve:<id>`
   with its stored number unchanged, so that a concurrent replay or a new version of the
   source conflicts with this commit instead of interleaving with it;
5. rewrite the error files (passing lines out, reasons of failing ones updated), remove the
   intent.

A crash between 4 and 5 leaves the passing lines both as rows and as error records until the next
replay finishes step 5 from the intent (`logsieve errors` notes such an unfinished replay).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date as Date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from logsieve.errors import (
    ConcurrentIngestError,
    ConfigError,
    InternalError,
    NoCleanTableError,
    OutputError,
)
from logsieve.locations import is_s3, join, resolve, s3_parts
from logsieve.storage import table

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable

    from logsieve._core import DatePart
    from logsieve.storage.identity import FieldNames
    from logsieve.storage.ledgers import Ledger
    from logsieve.storage.sinks import _Sink

#: Intents of replays, under the error location.
REPLAY_DIR = "_logsieve/replays"
#: Prefix of the Delta application-transaction id a replay records per source.
REPLAY_APP_PREFIX = "logsieve-replay:"
#: An intent that no commit carries is left this long (its run may still commit), then removed.
STALE_INTENT_SECONDS = 24 * 3600
#: Sample records `logsieve errors` shows.
SAMPLES = 5
#: Raw bytes of one source's records per core call (bounds memory for huge replays).
_CORE_BYTES = 64 << 20
_ERROR_FILE = re.compile(r"date=(\d{4}-\d{2}-\d{2})/([A-Za-z0-9._-]+)\.jsonl")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def replay_app_id(identity: str) -> str:
    """The Delta application-transaction id recording a source's last replay."""
    return REPLAY_APP_PREFIX + identity


# --- what is selected -------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which error records a command looks at: some arrival dates and codes, or all."""

    dates: frozenset[str] = frozenset()
    codes: frozenset[str] = frozenset()

    @classmethod
    def checked(cls, dates: Iterable[str] = (), codes: Iterable[str] = ()) -> Selection:
        """A selection from user input: a bad date or an unknown code is a ConfigError."""
        from logsieve import ERROR_CODES

        for text in dates:
            if not _DATE.fullmatch(text):
                raise ConfigError(f"--date {text!r}: expected YYYY-MM-DD, e.g. 2025-08-20")
            try:
                Date.fromisoformat(text)
            except ValueError:
                raise ConfigError(f"--date {text!r} is not a real date") from None
        for code in codes:
            if code not in ERROR_CODES:
                raise ConfigError(
                    f"--code {code!r} is not an error code: one of {', '.join(ERROR_CODES)}"
                )
        return cls(frozenset(dates), frozenset(codes))

    def wants_date(self, day: str) -> bool:
        return not self.dates or day in self.dates

    def wants_code(self, code: str) -> bool:
        return not self.codes or code in self.codes


@dataclass(frozen=True)
class ErrorRecord:
    """One line of an error file: where it is, whose line it was, why it failed, its bytes."""

    key: str
    source: str
    line: int
    error: str
    detail: str
    raw: bytes

    @property
    def date(self) -> str:
        return self.key[len("date=") : len("date=YYYY-MM-DD")]


def open_error_location(uri: str, s3_client: Any = None) -> _Sink:
    """The sink of an existing error-records location; a ConfigError naming what is wrong
    (missing, a clean table, a parent directory, something else) otherwise."""
    from logsieve.storage.sinks import open_sink

    location = resolve(uri, delta=False)
    if is_s3(location):
        return _open_s3_errors(location, s3_client)
    root = Path(location)
    if not root.exists():
        raise ConfigError(f"{root}: no such directory")
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory (expected error records, e.g. DIR/errors)")
    # A clean table has date=*/ directories too: its log tells it apart.
    if (root / "_delta_log").is_dir():
        raise ConfigError(f"{root} is a Delta table (clean rows), not error records")
    if (root / "_logsieve").is_dir() or any(root.glob("date=*")):
        return open_sink(location)
    if (root / "errors" / "_logsieve").is_dir():
        raise ConfigError(f"{root} holds no error records: did you mean {root / 'errors'}?")
    raise ConfigError(f"{root} is not an error-records location (no date=*/ or _logsieve/)")


def _open_s3_errors(location: str, s3_client: Any) -> _Sink:
    from botocore.exceptions import BotoCoreError, ClientError

    from logsieve.storage.sinks import open_sink

    sink = open_sink(location, s3_client)
    bucket, prefix = s3_parts(location)
    root = f"{prefix}/" if prefix else ""

    def exists(sub: str) -> bool:
        reply = sink.client.list_objects_v2(Bucket=bucket, Prefix=root + sub, MaxKeys=1)  # type: ignore[attr-defined]
        return bool(reply.get("KeyCount"))

    try:
        clean = exists("_delta_log/")
        if not clean and (exists("_logsieve/") or exists("date=")):
            return sink
        nested = exists("errors/_logsieve/")
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ConfigError(
            f"cannot read {location}: {error.get('Code', '?')}: {error.get('Message', '')}".rstrip(
                ": "
            )
        ) from exc
    except BotoCoreError as exc:
        raise OutputError(f"cannot read {location}: {exc}") from exc
    if clean:
        raise ConfigError(f"{location} is a Delta table (clean rows), not error records")
    if nested:
        raise ConfigError(f"{location} holds no error records: did you mean {location}/errors?")
    raise ConfigError(f"{location} is not an error-records location (no date=*/ or _logsieve/)")


def error_files(sink: _Sink, selection: Selection) -> list[str]:
    """The keys of error files on the selected dates (never ledgers, staging or temporaries)."""
    if selection.dates:
        keys = [k for day in sorted(selection.dates) for k in sink.list(f"date={day}/")]
    else:
        keys = sink.list("date=")
    return [k for k in keys if (m := _ERROR_FILE.fullmatch(k)) and selection.wants_date(m.group(1))]


def read_records(sink: _Sink, key: str) -> list[ErrorRecord]:
    """The records of one error file (none if it went meanwhile)."""
    from logsieve.storage.error_files import raw_bytes

    data = sink.read(key)
    records: list[ErrorRecord] = []
    for number, line in enumerate((data or b"").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
            records.append(
                ErrorRecord(
                    key=key,
                    source=str(item["source"]),
                    line=int(item["line"]),
                    error=str(item["error"]),
                    detail=str(item.get("detail", "")),
                    raw=raw_bytes(item),
                )
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{sink.display(key)} line {number} is not an error record ({exc})"
            ) from exc
    return records


# --- `logsieve errors` ------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleRecord:
    source: str
    line: int
    error: str
    detail: str
    raw: str
    file: str


@dataclass
class ErrorsSummary:
    """What the error records hold, so a user knows what to fix before replaying."""

    location: str
    records: int = 0
    files: int = 0
    by_code: dict[str, int] = field(default_factory=dict)
    by_date: dict[str, int] = field(default_factory=dict)
    by_source: dict[str, int] = field(default_factory=dict)
    samples: list[SampleRecord] = field(default_factory=list)
    #: Replays whose rewrite of the error files is not done (in progress, or interrupted).
    pending_replays: int = 0


def summarize(uri: str, selection: Selection = Selection(), s3_client: Any = None) -> ErrorsSummary:
    """Count the error records by code, date and source, with a few sample lines."""
    sink = open_error_location(uri, s3_client)
    summary = ErrorsSummary(location=sink.display("").rstrip("/"))
    codes: Counter[str] = Counter()
    dates: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    for key in error_files(sink, selection):
        records = [r for r in read_records(sink, key) if selection.wants_code(r.error)]
        if not records:
            continue
        summary.files += 1
        summary.records += len(records)
        for record in records:
            codes[record.error] += 1
            dates[record.date] += 1
            sources[record.source] += 1
            if len(summary.samples) < SAMPLES:
                summary.samples.append(
                    SampleRecord(
                        source=record.source,
                        line=record.line,
                        error=record.error,
                        detail=record.detail,
                        raw=record.raw.decode("utf-8", "backslashreplace"),
                        file=sink.display(key),
                    )
                )
    summary.by_code = dict(codes.most_common())
    summary.by_date = dict(sorted(dates.items()))
    summary.by_source = dict(sources.most_common())
    summary.pending_replays = len(_intent_keys(sink))
    return summary


# --- which source version a record belongs to ----------------------------------------------


@dataclass(frozen=True)
class Owner:
    """The source version whose ingest wrote a record: its rows carry this lineage."""

    identity: str
    name: str
    version: str


class _Owners:
    """Finds each record's source version through the ledgers, and whether it is the version the
    table holds (a record of a replaced version has no rows to join: it is not replayed)."""

    def __init__(self, sink: _Sink, snapshot: DeltaTable) -> None:
        self.sink = sink
        self.snapshot = snapshot
        self.single: dict[str, Ledger | None] = {}
        self.grouped: dict[tuple[str, str], Ledger] | None = None
        self.markers: dict[str, bool] = {}
        self.stored: dict[str, int | None] = {}

    def _stored(self, identity: str) -> int | None:
        """The source's transaction number in the snapshot, asked once per source (delta-rs
        replays the log's transactions for every question)."""
        if identity not in self.stored:
            self.stored[identity] = self.snapshot.transaction_version(table.app_id(identity))
        return self.stored[identity]

    def owner(self, record: ErrorRecord) -> tuple[Owner | None, str]:
        """The record's owner, or None and why it is skipped."""
        name = record.key.rsplit("/", 1)[1][: -len(".jsonl")]
        if name.startswith("group-"):
            ledger = self._groups().get((name, record.source))
        else:
            ledger = self._single(name)
            if ledger is not None and ledger.name != record.source:
                ledger = None
        if ledger is None or record.key not in ledger.files:
            return None, "no ledger names it"
        if self._stored(ledger.identity) != table.version_number(ledger.version):
            return None, "not the stored version of its source"
        if not self._written(ledger):
            return None, "its source's error records are still being written"
        return Owner(ledger.identity, ledger.name, ledger.version), ""

    def _single(self, name: str) -> Ledger | None:
        from logsieve.storage.ledgers import Ledger, ledger_key

        if name not in self.single:
            slug, _, tag = name.rpartition("-")
            self.single[name] = (
                Ledger.parse(self.sink.read(ledger_key(slug, tag))) if slug else None
            )
        return self.single[name]

    def _groups(self) -> dict[tuple[str, str], Ledger]:
        """Every ledger of a group's source, by (group, name): read once, when first needed."""
        if self.grouped is None:
            from concurrent.futures import ThreadPoolExecutor

            from logsieve.storage.ledgers import LEDGER_DIR, Ledger

            keys = [k for k in self.sink.list(LEDGER_DIR + "/") if k.endswith(".json")]
            with ThreadPoolExecutor(max_workers=16) as pool:
                ledgers = list(pool.map(lambda k: Ledger.parse(self.sink.read(k)), keys))
            self.grouped = {
                (ledger.group, ledger.name): ledger
                for ledger in ledgers
                if ledger is not None
                and ledger.group is not None
                # Of several versions in one group file (none: a group names its versions),
                # the stored one is wanted.
                and self._stored(ledger.identity) == table.version_number(ledger.version)
            }
        return self.grouped

    def _written(self, ledger: Ledger) -> bool:
        from logsieve.storage.ledgers import group_key

        if ledger.errors_written or ledger.complete:
            return True
        if ledger.group is None:
            return False
        if ledger.group not in self.markers:
            self.markers[ledger.group] = self.sink.read(group_key(ledger.group)) is not None
        return self.markers[ledger.group]


# --- intents: what a committed replay still has to take out of the error files ---------------


@dataclass(frozen=True)
class Intent:
    """A replay's promise, written before its commit: once the commit carries `versions`
    (replay transaction numbers by source identity), the `removed` lines leave the error files."""

    id: str
    versions: dict[str, int]
    removed: dict[str, list[tuple[str, int]]]
    written_at: float

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "versions": self.versions,
                "removed": {k: [list(p) for p in v] for k, v in self.removed.items()},
                "written_at": self.written_at,
            }
        )

    @classmethod
    def parse(cls, data: bytes | None) -> Intent | None:
        if not data:
            return None
        try:
            raw = orjson.loads(data)
            return cls(
                id=str(raw["id"]),
                versions={str(k): int(v) for k, v in raw["versions"].items()},
                removed={
                    str(k): [(str(s), int(n)) for s, n in v] for k, v in raw["removed"].items()
                },
                written_at=float(raw["written_at"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def committed(self, snapshot: DeltaTable) -> bool | None:
        """True: the snapshot carries every transaction of this intent; None: some but not all
        (a later replay of one of its sources committed, after finishing this one); False: none."""
        found = [
            snapshot.transaction_version(replay_app_id(identity)) == number
            for identity, number in self.versions.items()
        ]
        if all(found):
            return True
        return None if any(found) else False


def _intent_key(intent_id: str) -> str:
    return f"{REPLAY_DIR}/{intent_id}.json"


def _intent_keys(sink: _Sink) -> list[str]:
    return [k for k in sink.list(REPLAY_DIR + "/") if k.endswith(".json")]


def _finish_intents(sink: _Sink, snapshot: DeltaTable) -> int:
    """Finish the committed replays whose error files were not rewritten; drop intents that no
    commit will carry. Returns how many replays this finished."""
    finished = 0
    for key in _intent_keys(sink):
        intent = Intent.parse(sink.read(key))
        if intent is None:
            continue
        state = intent.committed(snapshot)
        if state is True:
            _remove_lines(sink, {k: set(v) for k, v in intent.removed.items()}, {})
            finished += 1
            sink.delete([key])
        elif state is None or time.time() - intent.written_at > STALE_INTENT_SECONDS:
            sink.delete([key])
    return finished


def _remove_lines(
    sink: _Sink,
    removed: dict[str, set[tuple[str, int]]],
    updated: dict[str, dict[tuple[str, int], bytes]],
) -> int:
    """Rewrite error files: `removed` lines out, `updated` lines replaced. Files rewritten."""
    import functools

    count = 0
    for key in sorted(set(removed) | set(updated)):
        gone = frozenset(removed.get(key, ()))
        new = updated.get(key, {})
        sink.rewrite(key, functools.partial(_rewritten, removed=gone, updated=new))
        count += 1
    return count


def _rewritten(
    data: bytes, removed: frozenset[tuple[str, int]], updated: dict[tuple[str, int], bytes]
) -> bytes | None:
    """An error file's content without `removed` records and with `updated` ones replaced; None
    when nothing is left. Other lines stay byte for byte."""
    kept: list[bytes] = []
    for line in data.splitlines(keepends=True):
        if not line.strip():
            continue
        item = orjson.loads(line)
        position = (item.get("source"), item.get("line"))
        if position in removed:
            continue
        kept.append(updated.get(position, line))
    return b"".join(kept) or None


# --- replay -----------------------------------------------------------------------------------


@dataclass
class SourceReplay:
    """One source's part of a replay."""

    source: str
    source_id: str
    version: str
    selected: int = 0
    now_valid: int = 0
    still_invalid: int = 0
    #: Original line numbers of the lines that became rows.
    valid_lines: list[int] = field(default_factory=list)


@dataclass
class ReplayReport:
    """What a replay did."""

    errors: str
    clean: str
    fields: dict[str, str]
    selected: int = 0
    now_valid: int = 0
    still_invalid: int = 0
    #: Still-invalid records whose reason (code or detail) changed with the new options.
    reason_changed: int = 0
    still_by_code: dict[str, int] = field(default_factory=dict)
    rows_by_date: dict[str, int] = field(default_factory=dict)
    #: Records not replayed, by why (a replaced version's leftovers, no ledger...).
    skipped: dict[str, int] = field(default_factory=dict)
    files_rewritten: int = 0
    table_version: int | None = None
    #: Earlier replays whose error files this one finished rewriting.
    finished_earlier: int = 0
    sources: list[SourceReplay] = field(default_factory=list)


@dataclass
class _Plan:
    """What one attempt will change: rows per source and date, and the lines that leave or
    change."""

    parts: list[DatePart] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)
    removed: dict[str, set[tuple[str, int]]] = field(default_factory=dict)
    updated: dict[str, dict[tuple[str, int], bytes]] = field(default_factory=dict)


def replay(
    errors_uri: str,
    clean_uri: str,
    *,
    fields: FieldNames | None = None,
    selection: Selection = Selection(),
    s3_client: Any = None,
    attempts: int = table.COMMIT_ATTEMPTS,
) -> ReplayReport:
    """Replay the selected error records into the clean table (module docstring: the steps).

    Raises ConfigError for a location that is not error records or no clean table, OutputError
    when a store cannot be written (run it again: it finishes what was committed), and
    ConcurrentIngestError after losing `attempts` commit races.
    """
    from logsieve.storage.identity import FieldNames

    fields = fields or FieldNames()
    if s3_client is None and (is_s3(errors_uri) or is_s3(clean_uri)):
        import boto3

        s3_client = boto3.client("s3")
    sink = open_error_location(errors_uri, s3_client)
    for number in range(1, attempts + 1):
        try:
            return _replay_once(sink, errors_uri, clean_uri, fields, selection, s3_client)
        except ConcurrentIngestError:
            if number == attempts:
                raise
            time.sleep(random.uniform(0.02, 0.05 * 2 ** min(number, 6)))
    raise AssertionError("unreachable")


def _open_clean(clean_uri: str, s3_client: Any) -> DeltaTable:
    try:
        snapshot = table.open_table(clean_uri, s3_client)
    except Exception as exc:
        raise OutputError(
            f"cannot open the clean table at {clean_uri}: {table.delta_reason(exc)}"
        ) from exc
    if snapshot is None:
        raise NoCleanTableError(f"no clean table at {resolve(clean_uri)}")
    return snapshot


def _check_table(sink: _Sink, snapshot: DeltaTable, errors_uri: str, clean_uri: str) -> None:
    """Error records are replayed into the table they were written with, nowhere else: in
    another table holding the same source versions, their lines would become rows there while
    the records went from here (lost here, in two outputs there)."""
    from logsieve.storage.ledgers import TableMark

    mark = TableMark.read(sink)
    target = resolve(clean_uri)
    if mark is not None:
        if mark.table_id != str(snapshot.metadata().id):
            raise ConfigError(
                f"the error records at {sink.display('').rstrip('/') or errors_uri} were written "
                f"with the table at {mark.clean}, not the one at {target}: replay them into "
                f"that table (--clean {mark.clean})"
            )
        return
    errors = resolve(errors_uri, delta=False).rstrip("/")
    parent = errors.rsplit("/", 1)[0] if is_s3(errors) else str(Path(errors).parent)
    beside = join(parent, "clean")
    if target.rstrip("/") != beside.rstrip("/"):
        raise ConfigError(
            f"the error records at {resolve(errors_uri)} do not say which table they were "
            f"written with (an older logsieve): only the table beside them, {beside}, is "
            "taken for theirs"
        )


def _replay_once(
    sink: _Sink,
    errors_uri: str,
    clean_uri: str,
    fields: FieldNames,
    selection: Selection,
    s3_client: Any,
) -> ReplayReport:
    snapshot = _open_clean(clean_uri, s3_client)  # the commit is made against this snapshot
    _check_table(sink, snapshot, errors_uri, clean_uri)
    report = ReplayReport(
        errors=sink.display("").rstrip("/") or errors_uri,
        clean=resolve(clean_uri),
        fields={"timestamp": fields.timestamp, "user_id": fields.user_id, "action": fields.action},
    )
    with _writing(sink, "finish an earlier replay's rewrite of the error records"):
        report.finished_earlier = _finish_intents(sink, snapshot)
    owners = _Owners(sink, snapshot)
    by_owner: dict[Owner, list[ErrorRecord]] = {}
    skipped: Counter[str] = Counter()
    for key in error_files(sink, selection):
        for record in read_records(sink, key):
            if not selection.wants_code(record.error):
                continue
            report.selected += 1
            owner, why = owners.owner(record)
            if owner is None:
                skipped[why] += 1
            else:
                by_owner.setdefault(owner, []).append(record)
    report.skipped = dict(skipped.most_common())
    plan = _Plan()
    still: Counter[str] = Counter()
    rows_by_date: Counter[str] = Counter()
    for owner, records in by_owner.items():
        part = _replay_source(owner, records, fields, snapshot, plan, still, rows_by_date)
        report.sources.append(part)
        report.now_valid += part.now_valid
        report.still_invalid += part.still_invalid
    report.reason_changed = sum(len(v) for v in plan.updated.values())
    report.still_by_code = dict(still.most_common())
    report.rows_by_date = dict(sorted(rows_by_date.items()))
    intent: Intent | None = None
    if plan.parts:
        intent = Intent(
            id=uuid.uuid4().hex,
            versions=dict(plan.versions),
            removed={k: sorted(v) for k, v in plan.removed.items()},
            written_at=time.time(),
        )
        with _writing(sink, "write the replay's intent"):
            sink.create(_intent_key(intent.id), intent.to_json())
        report.table_version = _commit(plan, snapshot, sink, clean_uri, s3_client, intent)
    with _writing(
        sink,
        "rewrite the error records (the rows are committed; running the replay again finishes it)",
    ):
        report.files_rewritten = _remove_lines(sink, plan.removed, plan.updated)
        if intent is not None:
            sink.delete([_intent_key(intent.id)])
    return report


def _replay_source(
    owner: Owner,
    records: list[ErrorRecord],
    fields: FieldNames,
    snapshot: DeltaTable,
    plan: _Plan,
    still: Counter[str],
    rows_by_date: Counter[str],
) -> SourceReplay:
    """Run one source's records through the core; add its rows and rewrites to `plan`."""
    from logsieve.storage.error_files import error_record
    from logsieve.storage.identity import source_id

    part = SourceReplay(owner.name, source_id(owner.identity), owner.version, selected=len(records))
    digest = hashlib.sha256()
    for value in (owner.version, fields.timestamp, fields.user_id, fields.action):
        digest.update(value.encode("utf-8", "surrogatepass") + b"\0")
    passed: list[ErrorRecord] = []
    batches: list[pa.RecordBatch] = []
    for piece in _pieces(records):
        clean, failures = _run_core(piece, fields)
        for index, record in enumerate(piece):
            digest.update(f"{record.key}\0{record.line}\0".encode() + record.raw + b"\0")
            failure = failures.get(index)
            if failure is None:
                passed.append(record)
                continue
            part.still_invalid += 1
            still[failure[0]] += 1
            if failure != (record.error, record.detail):
                line = orjson.dumps(error_record(record.source, record.line, *failure, record.raw))
                plan.updated.setdefault(record.key, {})[(record.source, record.line)] = line + b"\n"
        if clean.num_rows:
            batches.append(clean)
    version = table.version_number(digest.hexdigest())
    for record in passed:
        plan.removed.setdefault(record.key, set()).add((record.source, record.line))
    part.now_valid = len(passed)
    part.valid_lines = sorted(r.line for r in passed)
    if not passed:
        return part
    if snapshot.transaction_version(replay_app_id(owner.identity)) == version:
        # This very replay was committed and its intent is gone: only the rewrite is left.
        return part
    plan.versions[owner.identity] = version
    plan.stored[owner.identity] = table.version_number(owner.version)
    for batch in batches:
        plan.parts.extend(_lineage(batch, owner, rows_by_date))
    return part


def _pieces(records: list[ErrorRecord]) -> Iterable[list[ErrorRecord]]:
    piece: list[ErrorRecord] = []
    size = 0
    for record in records:
        if piece and size + len(record.raw) > _CORE_BYTES:
            yield piece
            piece, size = [], 0
        piece.append(record)
        size += len(record.raw) + 1
    if piece:
        yield piece


def _run_core(
    records: list[ErrorRecord], fields: FieldNames
) -> tuple[pa.RecordBatch, dict[int, tuple[str, str]]]:
    """The core on the records' raw lines, one per line: clean rows in order, and the failures
    by record index with their (code, detail). Numbering starts at 2 so that a byte-order mark
    in a raw line is kept, as it was in the middle of its source."""
    from logsieve import process

    batch = process(
        b"\n".join(r.raw for r in records) + b"\n",
        timestamp_field=fields.timestamp,
        user_id_field=fields.user_id,
        action_field=fields.action,
        first_line=2,
    )
    errors = batch.errors
    failures = {
        int(line) - 2: (str(code), str(detail))
        for line, code, detail in zip(
            errors.column("line").to_pylist(),
            errors.column("error").to_pylist(),
            errors.column("detail").to_pylist(),
        )
    }
    if batch.stats.blank or batch.clean.num_rows != len(records) - len(failures):
        raise InternalError(
            f"replaying {len(records)} records gave {batch.clean.num_rows} rows, "
            f"{len(failures)} errors and {batch.stats.blank} blank lines"
        )
    return batch.clean, failures


def _lineage(clean: pa.RecordBatch, owner: Owner, rows_by_date: Counter[str]) -> list[DatePart]:
    """The rows with their original source's lineage, per date, as its ingest would have
    written them."""
    from logsieve.storage.group_writer import _dated_rows, _Lineage
    from logsieve.storage.identity import Source

    one = Source(owner.identity, owner.name, owner.version, open=contextlib.nullcontext)
    return _dated_rows(clean, _Lineage(one), rows_by_date)


def _commit(
    plan: _Plan, snapshot: DeltaTable, sink: _Sink, clean_uri: str, s3_client: Any, intent: Intent
) -> int:
    """Append the rows in one commit carrying, per source, its replay transaction and its own
    (unchanged) one; on a lost race, nothing stays and ConcurrentIngestError is raised."""
    from deltalake import CommitProperties, Transaction

    from logsieve.storage import datafiles
    from logsieve.storage.group_writer import _check_schema
    from logsieve.storage.sinks import open_sink

    _check_schema(snapshot, clean_uri)  # rows in logsieve's schema only: never mix tables
    clean = open_sink(clean_uri, s3_client)
    staging = sink.staging_dir()
    published: list[str] = []
    actions: list[Any] = []

    def publish(staged: datafiles.StagedFile) -> None:
        path = datafiles.data_file_path(staged.date)
        with _writing(clean, f"write data files to the clean table at {clean_uri}"):
            action = datafiles.add_action(staged, path, staged.path.stat().st_size)
            clean.publish(staged.path, path)
        published.append(path)
        actions.append(action)

    transactions = [
        Transaction(app, number)
        for identity in sorted(plan.versions)
        for app, number in (
            (replay_app_id(identity), plan.versions[identity]),
            (table.app_id(identity), plan.stored[identity]),
        )
    ]
    files = datafiles.DateFiles(staging, 16 << 20, publish)
    committing = False
    try:
        for part in plan.parts:
            files.add(part.date, part.rows)
        files.finish()
        committing = True
        snapshot.create_write_transaction(
            actions,
            mode="append",
            schema=table.table_schema(),
            partition_by=[table.PARTITION_COLUMN],
            commit_properties=CommitProperties(
                app_transactions=transactions,
                custom_metadata={"logsieve.storage.replay": intent.id},
                max_commit_retries=25,
            ),
        )
    except BaseException as exc:
        files.abort()
        lost = committing and table.is_commit_conflict(exc)
        if not committing or lost:  # certainly not committed: take everything back
            with contextlib.suppress(Exception):
                clean.delete(published)
            with contextlib.suppress(Exception):
                sink.delete([_intent_key(intent.id)])
        if lost:
            raise ConcurrentIngestError("another writer committed to these sources first") from exc
        if isinstance(exc, Exception) and not isinstance(exc, (ConfigError, OutputError)):
            raise OutputError(
                f"cannot commit to the clean table at {clean_uri}: {table.delta_reason(exc)}"
            ) from exc
        raise
    finally:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    snapshot.update_incremental()
    return snapshot.version()


def _writing(sink: Any, doing: str) -> Any:
    """Output-side failures as one OutputError line: cannot `doing`: reason."""
    from logsieve.storage.sinks import _output_errors

    return _output_errors(doing)
