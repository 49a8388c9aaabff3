"""The dataset reader: `CleanTable` answers questions about the clean table from its current
snapshot, keeping the files it has read (per-file login counts, bounded caches) across requests
and moving forward by reading only the log entries added since."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from logsieve import _core
from logsieve.api.queries import _ONE_US, _UTC, DayWindow
from logsieve.errors import ConfigError, SourceError
from logsieve.locations import data_file_location, filesystem, is_s3
from logsieve.locations import resolve as table_uri
from logsieve.storage.table import PARTITION_COLUMN, storage_options

if TYPE_CHECKING:
    import pyarrow
    import pyarrow.fs
    import pyarrow.parquet
    from deltalake import DeltaTable


DEFAULT_REFRESH_INTERVAL = 1.0


LOGIN_ACTION = "login"


_CACHE_ENTRIES = 4096


#: Login times kept for files read (8 bytes each): 16 Mi, 128 MiB at most.
_FILE_CACHE_TIMES = 16 << 20


#: S3 files read at once, so that request latencies overlap.
_READ_THREADS = 16


#: Small files' bytes decoded by the core at once (on S3, fetched before): memory is twice this.
_SCAN_BATCH_BYTES = 64 << 20
#: Files up to this size are read whole in one request before parsing.
_WHOLE_FILE_BYTES = 4 << 20


_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)


_MS_TRUNCATION = 999


#: How Arrow's S3 filesystem words a failure to reach the endpoint (refused, reset, timed out).
_NETWORK_ERROR = "AWS Error NETWORK_CONNECTION"


#: Seconds an S3 request may take, for delta-rs and for pyarrow.
_S3_TIMEOUT = 5


_FOREVER = float("inf")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


_BACKTRACE = re.compile(r"([0-9]+: |stack backtrace)", re.IGNORECASE)


_MESSAGE_LIMIT = 400


K = TypeVar("K")


V = TypeVar("V")


class _BoundedCache(Generic[K, V]):
    """A small thread-safe LRU, so that odd queries cannot grow memory without bound."""

    def __init__(self, size: int = _CACHE_ENTRIES) -> None:
        self._size = size
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)


@dataclass(frozen=True)
class DataFile:
    """One live data file of a snapshot, as its add action in the Delta log describes it.

    Statistics are None where the writer recorded none; then nothing is pruned on them.
    """

    path: str  #: relative to the table root and URL-encoded, as in the log (or an absolute URI)
    size: int
    rows: int | None
    first: int | None  #: smallest event_time, microseconds since the epoch
    last: int | None  #: largest event_time
    min_action: str | None
    max_action: str | None

    def excludes(self, window: DayWindow, covered: bool) -> bool:
        """Whether the statistics prove the file holds no login inside the window."""
        lowest, highest = self.min_action, self.max_action
        if lowest is not None and highest is not None and not lowest <= LOGIN_ACTION <= highest:
            return True
        if covered or self.first is None or self.last is None:
            return False
        return self.last < _micros(window.first) or self.first > _micros(window.last)

    def inside(self, window: DayWindow, covered: bool) -> bool:
        """Whether every row of the file lies in the window (its partition or its statistics)."""
        if covered:
            return True
        return (
            self.first is not None
            and self.last is not None
            and _micros(window.first) <= self.first
            and self.last <= _micros(window.last)
        )

    @property
    def only_logins(self) -> bool:
        """Whether the statistics prove every row is a login, so `rows` is the count."""
        return self.rows is not None and self.min_action == self.max_action == LOGIN_ACTION


@dataclass(frozen=True)
class FileLogins:
    """What /logins_today needs of one data file: its logins' event times, sorted.

    Data files never change once written, so this is read once per file and serves every
    window; the cache keyed by the file's path is exact as long as the file is live.
    """

    times: array[int]  #: microseconds since the epoch, ascending

    @property
    def count(self) -> int:
        return len(self.times)

    def within(self, window: DayWindow) -> int:
        """The logins inside the window."""
        last, first = _micros(window.last), _micros(window.first)
        return bisect_right(self.times, last) - bisect_left(self.times, first)


class FileCache(Generic[V]):
    """Per-file entries (data files never change), least recently used first out once their
    `weight`s pass `budget`; thread-safe."""

    def __init__(self, budget: int, weight: Callable[[V], int]) -> None:
        self._budget = budget
        self._weight = weight
        self._held = 0
        self._data: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, paths: Iterable[str]) -> dict[str, V]:
        """The cached entries among `paths` (missing ones are left out)."""
        found = {}
        with self._lock:
            for path in paths:
                entry = self._data.get(path)
                if entry is not None:
                    self._data.move_to_end(path)
                    found[path] = entry
        return found

    def put_many(self, entries: dict[str, V]) -> None:
        with self._lock:
            for path, entry in entries.items():
                previous = self._data.pop(path, None)
                self._held += self._weight(entry) - (
                    self._weight(previous) if previous is not None else 0
                )
                self._data[path] = entry
            while self._held > self._budget and self._data:
                _, dropped = self._data.popitem(last=False)
                self._held -= self._weight(dropped)

    def discard(self, paths: Iterable[str]) -> None:
        """Forget files a commit removed: they will never be asked about again."""
        with self._lock:
            for path in paths:
                dropped = self._data.pop(path, None)
                if dropped is not None:
                    self._held -= self._weight(dropped)

    def paths(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._data)

    def __len__(self) -> int:
        return len(self._data)


#: The add-action columns a snapshot keeps (get_add_actions(flatten=True) names -> ours).
_ACTION_COLUMNS = {
    "path": "path",
    "size_bytes": "size",
    "num_records": "rows",
    "min.event_time": "first",
    "max.event_time": "last",
    "min.action": "min_action",
    "max.action": "max_action",
}


_PARTITION_FIELD = f"partition.{PARTITION_COLUMN}"


class Snapshot:
    """The live files of one table version, grouped by `date` partition on demand.

    Immutable once built, so a request that took it counts exactly the rows of that version,
    whatever commits land while it reads. `version` is None when there is no table yet.
    """

    def __init__(self, version: int | None, actions: pyarrow.Table | None = None) -> None:
        self.version = version
        self._actions = actions
        self.partitioned = actions is not None and _PARTITION_FIELD in actions.column_names
        self._by_partition: dict[str | None, tuple[DataFile, ...]] = {}

    @classmethod
    def of(cls, version: int, add_actions: Any) -> Snapshot:
        """From `DeltaTable.get_add_actions(flatten=True)`, keeping only the columns we use."""
        import pyarrow as pa
        import pyarrow.compute as pc

        actions = pa.table(add_actions)
        columns = {}
        for name, ours in _ACTION_COLUMNS.items():
            if name not in actions.column_names:
                columns[ours] = pa.nulls(actions.num_rows)
            elif ours in ("first", "last"):
                micros = actions[name].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
                # The log keeps milliseconds, cut down: the real largest time may be later.
                columns[ours] = pc.add(micros, _MS_TRUNCATION) if ours == "last" else micros
            else:
                columns[ours] = actions[name]
        if _PARTITION_FIELD in actions.column_names:
            columns[_PARTITION_FIELD] = actions[_PARTITION_FIELD]
        return cls(version, pa.table(columns))

    def files(self, partition: str | None) -> tuple[DataFile, ...]:
        """The files of one partition (every file when the table has no `date` partitions)."""
        hit = self._by_partition.get(partition)
        if hit is None:
            hit = self._by_partition[partition] = self._select(partition)
        return hit

    def _select(self, partition: str | None) -> tuple[DataFile, ...]:
        import pyarrow.compute as pc

        actions = self._actions
        if actions is None:
            return ()
        if partition is not None and self.partitioned:
            actions = actions.filter(pc.equal(actions[_PARTITION_FIELD], partition))
        values = (actions[name].to_pylist() for name in _ACTION_COLUMNS.values())
        return tuple(DataFile(*row) for row in zip(*values))


@dataclass(frozen=True)
class LoginAnswer:
    """A count, the table version it was read from and, when there is no table, a note."""

    count: int
    version: int | None = None
    note: str | None = None


class AnswerKey(NamedTuple):
    """What a login answer is cached under: the day and the time zone it is counted in."""

    day: date
    tz: str


@dataclass(frozen=True)
class _PartitionFiles:
    """The paths of one partition's live files at a snapshot version."""

    version: int
    paths: frozenset[str]


class PartitionIndex:
    """Which files each partition held at the last snapshot seen, so that a cache keyed by
    file path can drop the files later commits removed."""

    def __init__(self) -> None:
        self._partitions: dict[str | None, _PartitionFiles] = {}
        self._lock = threading.Lock()

    def live_files(
        self, snapshot: Snapshot, partition: str | None, forget: Callable[[frozenset[str]], None]
    ) -> tuple[DataFile, ...]:
        """The partition's files at `snapshot`; the paths no longer live go to `forget`."""
        files = snapshot.files(partition)
        assert snapshot.version is not None
        with self._lock:
            known = self._partitions.get(partition)
            if known is None or known.version < snapshot.version:
                paths = frozenset(f.path for f in files)
                forget((known.paths if known is not None else frozenset()) - paths)
                self._partitions[partition] = _PartitionFiles(snapshot.version, paths)
        return files


@dataclass(frozen=True)
class _Outcome:
    """A computed answer or the failure it met, valid for one (day, tz) at one version."""

    version: int | None
    answer: LoginAnswer | None = None
    error: str | None = None

    def result(self) -> LoginAnswer:
        if self.answer is None:
            raise SourceError(self.error or "unknown failure")
        return self.answer


@dataclass(frozen=True)
class _TableState:
    """The latest snapshot, or why it could not be brought up to date, and when that was seen."""

    snapshot: Snapshot | None
    error: str | None
    checked: float


@dataclass(frozen=True)
class Readiness:
    """What /readyz reports: whether a snapshot is loaded, at which version, or why not."""

    ready: bool
    version: int | None = None
    reason: str | None = None


class CleanTable:
    """The clean Delta table at a local directory or `s3://bucket/prefix`, read by day.

    One `DeltaTable` is kept and moved forward with `update_incremental()` at most once per
    `refresh_interval` seconds, so a new commit is seen about that long after it lands and only
    its log entries are read. Each answer counts the files of one snapshot (`Snapshot`).
    """

    def __init__(self, uri: str, *, refresh_interval: float = DEFAULT_REFRESH_INTERVAL) -> None:
        if not 0 <= refresh_interval < float("inf"):
            raise ConfigError(
                f"refresh interval must be a number of seconds >= 0, not {refresh_interval}"
            )
        self.uri = table_uri(uri)
        self.refresh_interval = refresh_interval
        self._fs, self._root = filesystem(self.uri, timeout_seconds=_S3_TIMEOUT)
        self._options = _delta_storage_options(self.uri)
        self._table: DeltaTable | None = None
        self._state = _TableState(None, None, -_FOREVER)
        self._refresh_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._logins: FileCache[FileLogins] = FileCache(
            _FILE_CACHE_TIMES, lambda entry: 1 + len(entry.times)
        )
        self._answers: _BoundedCache[AnswerKey, _Outcome] = _BoundedCache()
        self._partitions = PartitionIndex()
        self._readers: ThreadPoolExecutor | None = None
        if is_s3(self.uri):
            self._readers = ThreadPoolExecutor(_READ_THREADS, thread_name_prefix="logsieve-read")
        if not is_s3(self.uri):
            self._open_local()

    # --- the snapshot ---------------------------------------------------------------------

    def _open_local(self) -> None:
        """Load a local table now: a path without one is a mistake to report at start-up."""
        from deltalake.exceptions import TableNotFoundError

        try:
            self._table = self._open()
        except TableNotFoundError:
            raise ConfigError(missing_table_message(self.uri)) from None
        except Exception as exc:  # a corrupt log: serve, and say so per request and on /readyz
            self._state = _TableState(None, self._failure(exc), time.monotonic())
            return
        self._state = _TableState(self._take_snapshot(None), None, time.monotonic())

    def _open(self) -> DeltaTable:
        from deltalake import DeltaTable

        return DeltaTable(self.uri, storage_options=self._options)

    def snapshot(self) -> Snapshot:
        """The latest snapshot, reading the log at most once per `refresh_interval`."""
        state = self._state
        if not self._is_fresh(state):
            with self._refresh_lock:
                state = self._state
                if not self._is_fresh(state):
                    state = self._state = self._refresh(state)
        if state.error is not None or state.snapshot is None:
            raise SourceError(state.error or f"the Delta table at {self.uri} is not loaded")
        return state.snapshot

    def _is_fresh(self, state: _TableState) -> bool:
        return time.monotonic() - state.checked < self.refresh_interval

    def _refresh(self, state: _TableState) -> _TableState:
        """Bring the table forward; a failure is kept (and answered) until the next check."""
        from deltalake.exceptions import TableNotFoundError

        checked = time.monotonic()
        try:
            if self._table is None:
                self._table = self._open()
            else:
                self._table.update_incremental()
            return _TableState(self._take_snapshot(state.snapshot), None, checked)
        except TableNotFoundError:
            if is_s3(self.uri):  # the pipeline creates it with its first object
                return _TableState(Snapshot(None), None, checked)
            return _TableState(None, missing_table_message(self.uri), checked)
        except Exception as exc:  # delta-rs: OSError, DeltaError, DeltaProtocolError ...
            self._table = None  # start again from the latest checkpoint next time
            return _TableState(None, self._failure(exc), checked)

    def _take_snapshot(self, previous: Snapshot | None) -> Snapshot:
        assert self._table is not None
        version = self._table.version()
        if previous is not None and previous.version == version:
            return previous
        return Snapshot.of(version, self._table.get_add_actions(flatten=True))

    def _failure(self, exc: BaseException) -> str:
        return f"cannot read the Delta table at {self.uri}: {_first_line(exc)}"

    def readiness(self) -> Readiness:
        """Whether the table's latest snapshot could be loaded (checked like any request)."""
        try:
            snapshot = self.snapshot()
        except SourceError as exc:
            return Readiness(False, reason=str(exc))
        if snapshot.version is None:
            return Readiness(False, reason=self._no_table_note())
        return Readiness(True, snapshot.version)

    def _no_table_note(self) -> str:
        return f"no Delta table at {self.uri} yet: the pipeline creates it with its first object"

    # --- answers --------------------------------------------------------------------------

    def cached_answer(self, window: DayWindow) -> LoginAnswer | None:
        """The answer if the snapshot is fresh and the answer was computed from it; no I/O."""
        state = self._state
        if not self._is_fresh(state) or state.error is not None or state.snapshot is None:
            return None
        if state.snapshot.version is None:
            return LoginAnswer(0, note=self._no_table_note())
        outcome = self._answers.get(AnswerKey(window.day, window.tz))
        if outcome is None or outcome.version != state.snapshot.version:
            return None
        return outcome.result()

    def answer(self, window: DayWindow) -> LoginAnswer:
        """Count logins in the window at the latest snapshot, reading only files not cached."""
        snapshot = self.snapshot()
        if snapshot.version is None:
            return LoginAnswer(0, note=self._no_table_note())
        key = AnswerKey(window.day, window.tz)
        outcome = self._answers.get(key)
        if outcome is None or outcome.version != snapshot.version:
            outcome = self._compute(snapshot, window)
            self._answers.put(key, outcome)
        return outcome.result()

    def _compute(self, snapshot: Snapshot, window: DayWindow) -> _Outcome:
        """The count, or the unreadable file that prevents it (kept for this version)."""
        try:
            count = self._count(self._candidates(snapshot, window), window)
        except UnreadableFileError as exc:
            message = f"cannot read the Delta table at {self.uri}: {exc}"
            if exc.network:  # storage unreachable: the next request tries again
                raise SourceError(message) from exc
            return _Outcome(snapshot.version, error=message)
        return _Outcome(snapshot.version, LoginAnswer(count, snapshot.version))

    def _candidates(self, snapshot: Snapshot, window: DayWindow) -> list[tuple[DataFile, bool]]:
        """Files that may hold logins of the window, each with whether its partition is inside."""
        if not snapshot.partitioned:
            pairs = [(f, False) for f in self._partition_files(snapshot, None)]
        else:
            pairs = []
            for partition in window.partitions:
                covered = window.covers(partition)
                pairs.extend((f, covered) for f in self._partition_files(snapshot, partition))
        return [(f, covered) for f, covered in pairs if not f.excludes(window, covered)]

    def _partition_files(self, snapshot: Snapshot, partition: str | None) -> tuple[DataFile, ...]:
        """The partition's files, forgetting cached files of it that are no longer live."""
        return self._partitions.live_files(snapshot, partition, self._logins.discard)

    def _count(self, candidates: list[tuple[DataFile, bool]], window: DayWindow) -> int:
        inside = {f.path: f.inside(window, covered) for f, covered in candidates}
        to_read = [f for f, _ in candidates if not (f.only_logins and inside[f.path])]
        logins = self._file_logins(to_read)
        total = 0
        for f, _ in candidates:
            if f.only_logins and inside[f.path]:
                total += f.rows or 0
            elif inside[f.path]:
                total += logins[f.path].count
            else:
                total += logins[f.path].within(window)
        return total

    def _file_logins(self, files: list[DataFile]) -> dict[str, FileLogins]:
        """Each file's logins: from the cache, else read (one reader at a time, so a second
        request for the same new files waits for the first instead of reading them again)."""
        found = self._logins.get_many(f.path for f in files)
        if len(found) == len(files):
            return found
        with self._read_lock:
            found = self._logins.get_many(f.path for f in files)
            missing = [f for f in files if f.path not in found]
            if missing:
                read = self._read_logins(missing)
                self._logins.put_many(read)
                found.update(read)
        return found

    def _read_logins(self, files: list[DataFile]) -> dict[str, FileLogins]:
        """The logins of `files`, read together, then sorted out by file in a few vectorised
        steps."""
        import pyarrow as pa
        import pyarrow.compute as pc

        rows = self.read_columns(files)
        table = pa.table({"file": rows["file"], "micros": rows["event_time"].cast(pa.int64())})
        is_login = pc.and_(pc.equal(rows["action"], LOGIN_ACTION), pc.is_valid(table["micros"]))
        table = table.filter(is_login).sort_by([("file", "ascending"), ("micros", "ascending")])
        logins = {f.path: FileLogins(array("q")) for f in files}
        micros = table["micros"].combine_chunks()
        start = 0  # sorted by file: each file's logins are one run
        for run in pc.value_counts(table["file"]).to_pylist():
            count = run["counts"]
            logins[files[run["values"]].path] = FileLogins(_int64s(micros.slice(start, count)))
            start += count
        return logins

    def read_columns(
        self, files: Sequence[DataFile], *, every_row_group: bool = False
    ) -> pyarrow.Table:
        """`file` (int32, the index into `files`), `action` and `event_time` (timestamp[us,
        UTC]) of the rows of `files` that may hold a login (every row, with `every_row_group`):
        the one place the table's Parquet files are read. `UnreadableFileError` names a file
        that cannot be read.

        Small files (a day filled object by object has thousands) are decoded together by the
        core, in parallel and without the GIL, a batch of up to 64 MiB at a time; on S3 a
        batch's bytes are fetched in threads first, so that request latencies overlap. Large
        files (compacted ones), and any file the core cannot decode or whose columns have other
        types, are read by pyarrow, pruned by their row groups' statistics.
        """
        import pyarrow as pa

        small = [n for n, f in enumerate(files) if f.size <= _WHOLE_FILE_BYTES]
        parts = []
        left = [n for n, f in enumerate(files) if f.size > _WHOLE_FILE_BYTES]
        for batch in _batches_of(small, [files[n].size for n in small], _SCAN_BATCH_BYTES):
            inputs: list[Any]
            if self._readers is None:  # local: the core reads the files itself
                inputs = [self.location(files[n].path) for n in batch]
            else:
                inputs = list(self._readers.map(self._fetch, [files[n] for n in batch]))
            scan = _core.read_columns(inputs, _read_schema())
            found = scan.rows
            if found.num_rows:
                numbers = pa.array(batch, pa.int32()).take(found.column("file"))
                found = pa.Table.from_batches([found]).drop_columns(["file"])
                parts.append(_with_file(found, numbers))
            left.extend(batch[position] for position in scan.failed)
        for number in sorted(left):
            table = self._read_file(files[number], every_row_group=every_row_group)
            parts.append(_with_file(table, number))
        if not parts:
            return _with_file(_read_schema().empty_table(), 0)
        return pa.concat_tables(parts)

    def _fetch(self, file: DataFile) -> bytes:
        """A small file's bytes, in one request."""
        location = self.location(file.path)
        try:
            with self._fs.open_input_stream(location) as stream:
                return bytes(stream.read())
        except OSError as exc:
            raise UnreadableFileError(location, exc) from exc

    def _read_file(self, file: DataFile, *, every_row_group: bool = False) -> pyarrow.Table:
        """`action` and `event_time` of the row groups whose statistics allow a login (of all
        row groups with `every_row_group`)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        location = self.location(file.path)
        columns = ["action", "event_time"]
        try:
            with contextlib.ExitStack() as closing:
                if file.size <= _WHOLE_FILE_BYTES:  # one read (on S3: one GET), not one per part
                    with self._fs.open_input_stream(location) as stream:
                        source: Any = pa.BufferReader(stream.read())
                else:
                    source = closing.enter_context(self._fs.open_input_file(location))
                parquet = pq.ParquetFile(source)
                # One row group: the add action's statistics pruned the file already.
                if every_row_group or parquet.num_row_groups == 1:
                    table = parquet.read(columns=columns, use_threads=False)
                else:
                    groups = _login_row_groups(parquet)
                    table = parquet.read_row_groups(groups, columns=columns, use_threads=False)
                schema = _read_schema()
                return table if table.schema == schema else table.cast(schema)
        # OSError and ArrowInvalid (a ValueError) for unreadable files; ArrowNotImplementedError,
        # ArrowTypeError and KeyError for a column missing or of another type than we write.
        except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
            raise UnreadableFileError(location, exc) from exc

    def location(self, path: str) -> str:
        """Where an add action's file is on the pyarrow filesystem: the log's path, decoded."""
        return data_file_location(self._root, path)


class UnreadableFileError(Exception):
    """A data file the log names could not be read as logsieve writes them."""

    def __init__(self, location: str, cause: BaseException) -> None:
        super().__init__(f"{location}: {_first_line(cause)}")
        self.network = _NETWORK_ERROR in str(cause)


@functools.cache
def _read_schema() -> pyarrow.Schema:
    import pyarrow as pa

    return pa.schema([("action", pa.string()), ("event_time", pa.timestamp("us", tz="UTC"))])


def _login_row_groups(parquet: pyarrow.parquet.ParquetFile) -> list[int]:
    """The row groups whose `action` statistics do not rule out a login (all, without them)."""
    metadata = parquet.metadata
    column = parquet.schema_arrow.get_field_index("action")
    if column < 0:
        return list(range(metadata.num_row_groups))
    groups = []
    for number in range(metadata.num_row_groups):
        stats = metadata.row_group(number).column(column).statistics
        if stats is None or not stats.has_min_max or stats.min <= LOGIN_ACTION <= stats.max:
            groups.append(number)
    return groups


def _batches_of(numbers: list[int], sizes: list[int], budget: int) -> Iterator[list[int]]:
    """`numbers` in runs whose `sizes` add up to at most `budget` (at least one each)."""
    run: list[int] = []
    total = 0
    for number, size in zip(numbers, sizes):
        if run and total + size > budget:
            yield run
            run, total = [], 0
        run.append(number)
        total += size
    if run:
        yield run


def _with_file(table: pyarrow.Table, file: int | pyarrow.Array) -> pyarrow.Table:
    """`table` with a leading `file` column: one number for all rows, or one per row."""
    import pyarrow as pa

    if not isinstance(file, pa.Array):
        file = pa.repeat(pa.scalar(file, pa.int32()), table.num_rows)
    return table.add_column(0, "file", file.cast(pa.int32()))


def _int64s(values: pyarrow.Array) -> array[int]:
    """An Arrow int64 array without nulls as a Python `array('q')`, copied in one go."""
    out = array("q")
    if len(values):
        data = values.buffers()[1]
        assert data is not None
        start = values.offset * 8
        out.frombytes(memoryview(data)[start : start + len(values) * 8])
    return out


def _micros(moment: datetime) -> int:
    """Microseconds since the epoch, as Arrow stores `timestamp[us, UTC]`."""
    return (moment - _EPOCH) // _ONE_US


def missing_table_message(uri: str) -> str:
    """Why a local path is not served, in one line, with the likely right path if there is one."""
    hint = ""
    nested = os.path.join(uri, "clean")
    if os.path.isdir(os.path.join(nested, "_delta_log")):
        hint = f": did you mean --clean {nested} (where `logsieve process` puts the table)?"
    elif not os.path.exists(uri):
        hint = ": the directory does not exist"
    elif not os.path.isdir(uri):
        hint = ": it is a file, not a directory"
    else:
        hint = ": it holds no _delta_log/ (pass the directory of the clean table)"
    return f"no Delta table at {uri}{hint}"


def _delta_storage_options(uri: str) -> dict[str, str] | None:
    """delta-rs's options for `uri`, with bounded timeouts and retries so that an unreachable
    endpoint is a 503 within seconds, not after object_store's minutes of retrying."""
    options = storage_options(uri, timeout_seconds=_S3_TIMEOUT)
    if options is None:
        return None
    return {**options, "max_retries": "1", "retry_timeout": f"{2 * _S3_TIMEOUT}s"}


def _first_line(exc: BaseException) -> str:
    """The message of `exc` on one line: delta-rs prints one cause per line, coloured."""
    causes = []
    for line in _ANSI.sub("", str(exc)).splitlines():
        line = line.strip().lstrip("\u21b3").strip()
        if _BACKTRACE.match(line):  # a Rust backtrace follows the message
            break
        if line:
            causes.append(line)
    text = ": ".join(causes)
    return text[:_MESSAGE_LIMIT] if text else type(exc).__name__
