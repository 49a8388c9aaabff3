"""Every action of a day, per local hour: what /actions and /activity answer.

A day in a zone is cut into its local hours (23 or 25 on DST days; a bucket per offset when a
wall-clock hour happens twice). Each data file's rows are read once, through
`CleanTable.read_columns`, and kept as two compact arrays (the action dictionary-encoded, the
event time in microseconds): data files never change, so after a commit only its new files are
read. An answer counts the rows of one snapshot, with a few vectorised Arrow steps over the
cached arrays of the files the day's partitions and statistics leave, and is kept per
`(date, tz)` for that version.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from logsieve.api.dataset import (
    CleanTable,
    DataFile,
    FileCache,
    PartitionIndex,
    Snapshot,
    UnreadableFileError,
    _BoundedCache,
    _micros,
)
from logsieve.api.queries import DayWindow
from logsieve.errors import SourceError

if TYPE_CHECKING:
    import pyarrow

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
#: Rows whose action and time are kept for files read (12 bytes each): 16 Mi, 192 MiB at most.
_CACHE_ROWS = 16 << 20
#: How far apart the search for the next hour boundary probes; bisection finds the instant.
_PROBE = 15 * 60 * 1_000_000


@dataclass(frozen=True)
class LocalHour:
    """One bucket of a local day: the wall-clock hour it starts, and the UTC instant it does."""

    start: datetime  #: local time, with its UTC offset
    first: int  #: microseconds since the epoch (UTC)

    @property
    def utc_start(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.first)


@functools.lru_cache(maxsize=1024)
def local_hours(window: DayWindow) -> tuple[LocalHour, ...]:
    """The local hours of the window, in order: a new bucket wherever the wall clock starts a
    new hour or the zone changes its offset, found by probing every 15 minutes and bisecting
    to the microsecond. So a 23-hour day has 23 buckets, a 25-hour day 25 (its repeated hour
    twice, once per offset), and a half-hour DST shift is cut where it happens."""
    zone = ZoneInfo(window.tz)
    last = _micros(window.last)

    def key(micros: int) -> tuple[datetime, timedelta | None]:
        local = (_EPOCH + timedelta(microseconds=micros)).astimezone(zone)
        return local.replace(minute=0, second=0, microsecond=0, tzinfo=None), local.utcoffset()

    def local(micros: int) -> datetime:
        return (_EPOCH + timedelta(microseconds=micros)).astimezone(zone)

    at = _micros(window.first)
    hours = [LocalHour(local(at), at)]
    current = key(at)
    while True:
        probe = at
        while True:  # the first probe past the current bucket, or the end of the day
            probe = min(probe + _PROBE, last)
            if key(probe) != current or probe == last:
                break
        if key(probe) == current:
            return tuple(hours)
        low, high = at, probe  # key(low) == current != key(high): bisect to the first change
        while high - low > 1:
            middle = (low + high) // 2
            if key(middle) == current:
                low = middle
            else:
                high = middle
        at, current = high, key(high)
        hours.append(LocalHour(local(at), at))


@dataclass(frozen=True)
class FileActions:
    """What /actions and /activity need of one data file: each row's action and time."""

    actions: pyarrow.DictionaryArray  #: the rows' actions, dictionary-encoded
    micros: pyarrow.Int64Array  #: the rows' event times, microseconds since the epoch

    @property
    def rows(self) -> int:
        return len(self.micros)


@dataclass(frozen=True)
class DayActivity:
    """Counts of every action per local hour of one day, at one table version."""

    version: int | None
    hours: tuple[LocalHour, ...]
    #: action -> count per hour (same order as `hours`); only actions with rows appear.
    counts: dict[str, tuple[int, ...]] = field(default_factory=dict)
    note: str | None = None

    def totals(self) -> dict[str, int]:
        """Each action's count over the day, most frequent first (then by name)."""
        pairs = [(action, sum(per_hour)) for action, per_hour in self.counts.items()]
        return dict(sorted(pairs, key=lambda pair: (-pair[1], pair[0])))

    def per_hour(self, action: str | None) -> tuple[int, ...]:
        """One action's counts per hour, or every action's together (None)."""
        if action is not None:
            return self.counts.get(action, (0,) * len(self.hours))
        return tuple(sum(column) for column in zip(*self.counts.values())) or (0,) * len(self.hours)


@dataclass(frozen=True)
class _Outcome:
    version: int | None
    activity: DayActivity | None = None
    error: str | None = None


class ActivityIndex:
    """Answers about every action of a day, over a `CleanTable`'s snapshots."""

    def __init__(self, table: CleanTable) -> None:
        self.table = table
        self._rows: FileCache[FileActions] = FileCache(_CACHE_ROWS, lambda entry: 1 + entry.rows)
        self._answers: _BoundedCache[DayWindow, _Outcome] = _BoundedCache()
        self._read_lock = threading.Lock()
        self._partitions = PartitionIndex()

    def day(self, window: DayWindow) -> DayActivity:
        """The window's counts at the latest snapshot, reading only files not cached."""
        snapshot = self.table.snapshot()
        hours = local_hours(window)
        if snapshot.version is None:
            note = f"no Delta table at {self.table.uri} yet: the pipeline creates it"
            return DayActivity(None, hours, note=note)
        outcome = self._answers.get(window)
        if outcome is None or outcome.version != snapshot.version:
            outcome = self._compute(snapshot, window, hours)
            self._answers.put(window, outcome)
        if outcome.activity is None:
            raise SourceError(outcome.error or "unknown failure")
        return outcome.activity

    def _compute(
        self, snapshot: Snapshot, window: DayWindow, hours: tuple[LocalHour, ...]
    ) -> _Outcome:
        try:
            files = self._candidates(snapshot, window)
            counts = count_per_hour(
                [self._file_rows(files)[f.path] for f in files] if files else [],
                [hour.first for hour in hours],
                _micros(window.last) + 1,
            )
        except UnreadableFileError as exc:
            message = f"cannot read the Delta table at {self.table.uri}: {exc}"
            if exc.network:  # storage unreachable: the next request tries again
                raise SourceError(message) from exc
            return _Outcome(snapshot.version, error=message)
        return _Outcome(snapshot.version, DayActivity(snapshot.version, hours, counts))

    def _candidates(self, snapshot: Snapshot, window: DayWindow) -> list[DataFile]:
        """The files of the window's partitions whose time statistics do not rule it out."""
        first, last = _micros(window.first), _micros(window.last)
        partitions: Sequence[str | None] = window.partitions if snapshot.partitioned else [None]
        files = []
        for partition in partitions:
            for f in self._live_files(snapshot, partition):
                if (
                    f.first is not None
                    and f.last is not None
                    and (f.last < first or f.first > last)
                ):
                    continue
                files.append(f)
        return files

    def _live_files(self, snapshot: Snapshot, partition: str | None) -> tuple[DataFile, ...]:
        """The partition's files, forgetting cached files of it that are no longer live."""
        return self._partitions.live_files(snapshot, partition, self._rows.discard)

    def _file_rows(self, files: list[DataFile]) -> dict[str, FileActions]:
        """Each file's rows: from the cache, else read (one reader at a time, so that two
        requests for the same new files read them once)."""
        found = self._rows.get_many(f.path for f in files)
        if len(found) == len(files):
            return found
        with self._read_lock:
            found = self._rows.get_many(f.path for f in files)
            missing = [f for f in files if f.path not in found]
            if missing:
                read = split_by_file(self.table.read_columns(missing), missing)
                self._rows.put_many(read)
                found.update(read)
        return found

    def cached_paths(self) -> frozenset[str]:
        """The files whose rows are held (for tests of the cache)."""
        return self._rows.paths()


def split_by_file(table: pyarrow.Table, files: Sequence[DataFile]) -> dict[str, FileActions]:
    """`CleanTable.read_columns`'s rows as one `FileActions` per file (rows without a time or
    an action, which logsieve never writes, are left out)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    valid = pc.and_(pc.is_valid(table["event_time"]), pc.is_valid(table["action"]))
    table = table.filter(valid)
    order = pc.sort_indices(table["file"])
    table = table.take(order)
    actions = table["action"].combine_chunks()
    micros = table["event_time"].combine_chunks().cast(pa.int64())
    empty = FileActions(pc.dictionary_encode(pa.array([], pa.string())), pa.array([], pa.int64()))
    out = {f.path: empty for f in files}
    start = 0  # sorted by file: each file's rows are one run
    for run in pc.value_counts(table["file"]).to_pylist():
        count = run["counts"]
        out[files[run["values"]].path] = FileActions(
            pc.dictionary_encode(actions.slice(start, count)), micros.slice(start, count)
        )
        start += count
    return out


def count_per_hour(
    entries: Sequence[FileActions], starts: Sequence[int], end: int
) -> dict[str, tuple[int, ...]]:
    """Rows per action and bucket, where bucket i is [starts[i], starts[i + 1]) and the last
    ends at `end` (microseconds); rows outside [starts[0], end) are not counted."""
    import pyarrow as pa
    import pyarrow.compute as pc

    buckets = len(starts)
    entries = [e for e in entries if e.rows]
    if not entries:
        return {}
    chunked = pa.chunked_array([e.actions for e in entries]).unify_dictionaries()
    dictionary = chunked.chunk(0).dictionary
    codes = pa.concat_arrays([chunk.indices.cast(pa.int64()) for chunk in chunked.chunks])
    micros = pa.concat_arrays([e.micros for e in entries])
    inside = pc.and_(pc.greater_equal(micros, starts[0]), pc.less(micros, end))
    codes, micros = codes.filter(inside), micros.filter(inside)
    bucket = pa.repeat(pa.scalar(0, pa.int64()), len(micros))
    for start in starts[1:]:  # a row's bucket: how many later starts it is at or after
        bucket = pc.add(bucket, pc.greater_equal(micros, start).cast(pa.int64()))
    keys = pc.add(pc.multiply(codes, buckets), bucket)
    counts: dict[str, list[int]] = {}
    for entry in pc.value_counts(keys).to_pylist():
        code, hour = divmod(entry["values"], buckets)
        counts.setdefault(dictionary[code].as_py(), [0] * buckets)[hour] += entry["counts"]
    return {action: tuple(per_hour) for action, per_hour in counts.items()}
