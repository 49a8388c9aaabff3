"""The error records of one UTC day, by error code with a few sample lines: /errors/summary.

The records are JSON Lines under `<errors>/date=YYYY-MM-DD/*.jsonl` (one object per invalid line:
`source`, `line`, `error`, `detail`, `raw` or `raw_base64`), a local directory or an S3 prefix.
A file's date is its source's arrival, since the lines' own timestamps are often what is broken,
so the day asked about is the day the lines arrived. The day's directory is listed at most once
per refresh interval; each file is read once per (size, modification time), since a group's
shared file is rewritten when one of its sources is replaced.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from logsieve.api.dataset import _S3_TIMEOUT, _BoundedCache, _first_line
from logsieve.errors import ConfigError, SourceError
from logsieve.locations import filesystem, is_s3, resolve

#: Sample lines kept per error code.
SAMPLES_PER_CODE = 3
#: Characters of a sample's raw line shown; longer lines are cut (and say so).
_RAW_LIMIT = 300
_READ_THREADS = 16
_UTC = timezone.utc


@dataclass(frozen=True)
class _FileSummary:
    """What one error file holds: lines by code and the first few of each."""

    lines: int
    by_code: dict[str, int]
    samples: dict[str, list[dict[str, Any]]]
    unreadable: int


@dataclass(frozen=True)
class _Listed:
    """One error file as listed: where, and the version of it (size, modification time)."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class _Listing:
    """A day's error files as listed at `checked` (time.monotonic())."""

    checked: float
    files: list[_Listed]


@dataclass(frozen=True)
class ErrorSummary:
    """Invalid lines filed under one UTC day."""

    day: date
    total: int
    by_code: dict[str, int]  #: most frequent first
    samples: dict[str, list[dict[str, Any]]]
    #: Lines per UTC hour of the day, by when their error file was written (about when the
    #: source was processed); lines of files written on another day are counted in `unplaced`.
    by_hour: tuple[int, ...]
    unplaced: int
    files: int
    unreadable: int = 0
    note: str | None = None


class ErrorRecords:
    """The error records at a local directory or `s3://bucket/prefix`, read by UTC day."""

    def __init__(self, uri: str, *, refresh_interval: float = 1.0, required: bool = True) -> None:
        self.uri = resolve(uri, delta=False)
        if required and not is_s3(self.uri) and not os.path.isdir(self.uri):
            raise ConfigError(f"no error records at {self.uri}: it is not a directory")
        self.refresh_interval = refresh_interval
        self._fs, self._root = filesystem(self.uri, timeout_seconds=_S3_TIMEOUT)
        self._listings: _BoundedCache[date, _Listing] = _BoundedCache(64)
        self._files: _BoundedCache[_Listed, _FileSummary] = _BoundedCache()
        self._lock = threading.Lock()
        self._readers: ThreadPoolExecutor | None = None
        if is_s3(self.uri):
            self._readers = ThreadPoolExecutor(_READ_THREADS, thread_name_prefix="logsieve-errors")

    def summary(self, day: date) -> ErrorSummary:
        """The day's invalid lines by code, with samples; a file read once per version."""
        listed = self._list(day)
        with self._lock:  # two requests for the same new files read them once
            summaries = self._summaries(listed)
        by_code: Counter[str] = Counter()
        samples: dict[str, list[dict[str, Any]]] = {}
        by_hour = [0] * 24
        unplaced = unreadable = 0
        for item in listed:  # in path order, so samples are the same on every answer
            one = summaries[item]
            by_code.update(one.by_code)
            unreadable += one.unreadable
            for code, lines in one.samples.items():
                kept = samples.setdefault(code, [])
                kept.extend(lines[: SAMPLES_PER_CODE - len(kept)])
            written = datetime.fromtimestamp(item.mtime_ns / 1e9, _UTC)
            if written.date() == day:
                by_hour[written.hour] += one.lines
            else:
                unplaced += one.lines
        ordered = dict(sorted(by_code.items(), key=lambda pair: (-pair[1], pair[0])))
        note = None
        if not listed and not self._fs_exists():
            note = f"no error records at {self.uri} yet"
        return ErrorSummary(
            day,
            sum(by_code.values()),
            ordered,
            {code: samples[code] for code in ordered if code in samples},
            tuple(by_hour),
            unplaced,
            len(listed),
            unreadable,
            note,
        )

    def _fs_exists(self) -> bool:
        import pyarrow.fs as pafs

        if is_s3(self.uri):
            return True  # a prefix exists once something is under it: nothing to say
        return self._fs.get_file_info(self._root).type == pafs.FileType.Directory

    def _list(self, day: date) -> list[_Listed]:
        """The day's error files, listed at most once per refresh interval."""
        import pyarrow.fs as pafs

        cached = self._listings.get(day)
        if cached is not None and time.monotonic() - cached.checked < self.refresh_interval:
            return cached.files
        checked = time.monotonic()
        selector = pafs.FileSelector(f"{self._root}/date={day.isoformat()}", allow_not_found=True)
        try:
            infos = self._fs.get_file_info(selector)
        except (OSError, ValueError) as exc:
            message = f"cannot read the error records at {self.uri}: {_first_line(exc)}"
            raise SourceError(message) from exc
        listed = sorted(
            (
                _Listed(info.path, info.size or 0, info.mtime_ns or 0)
                for info in infos
                if info.type == pafs.FileType.File and info.base_name.endswith(".jsonl")
            ),
            key=lambda item: item.path,
        )
        self._listings.put(day, _Listing(checked, listed))
        return listed

    def _summaries(self, listed: list[_Listed]) -> dict[_Listed, _FileSummary]:
        found = {item: self._files.get(item) for item in listed}
        missing = [item for item, summary in found.items() if summary is None]
        if self._readers is not None and len(missing) > 1:
            read = list(self._readers.map(self._read, missing))
        else:
            read = [self._read(item) for item in missing]
        for item, summary in zip(missing, read):
            self._files.put(item, summary)
            found[item] = summary
        return {item: summary for item, summary in found.items() if summary is not None}

    def _read(self, item: _Listed) -> _FileSummary:
        try:
            with self._fs.open_input_stream(item.path) as stream:
                data = stream.read()
        except (OSError, ValueError) as exc:
            if isinstance(exc, FileNotFoundError):  # removed since the listing (replaced)
                return _FileSummary(0, {}, {}, 0)
            raise SourceError(
                f"cannot read the error records at {self.uri}: {_first_line(exc)}"
            ) from exc
        return summarise(data)


def summarise(data: bytes) -> _FileSummary:
    """Counts by `error` code and the first few records of each, from JSON Lines bytes."""
    import orjson

    by_code: Counter[str] = Counter()
    samples: dict[str, list[dict[str, Any]]] = {}
    lines = unreadable = 0
    for line in data.splitlines():
        if not line.strip():
            continue
        lines += 1
        try:
            record = orjson.loads(line)
            code = record["error"]
            if not isinstance(code, str):
                raise TypeError(code)
        except (orjson.JSONDecodeError, TypeError, KeyError):
            unreadable += 1
            continue
        by_code[code] += 1
        kept = samples.setdefault(code, [])
        if len(kept) < SAMPLES_PER_CODE:
            kept.append(_sample(record))
    return _FileSummary(lines - unreadable, dict(by_code), samples, unreadable)


def _sample(record: dict[str, Any]) -> dict[str, Any]:
    """A record as a sample: where it came from, why, and its raw line (cut when long)."""
    sample: dict[str, Any] = {
        key: record[key] for key in ("source", "line", "detail") if key in record
    }
    for key in ("raw", "raw_base64"):
        value = record.get(key)
        if isinstance(value, str):
            sample[key] = value[:_RAW_LIMIT]
            if len(value) > _RAW_LIMIT:
                sample["truncated"] = True
    return sample


def default_error_uri(clean_uri: str) -> str | None:
    """Where the error records are when none is named: for a local table `DIR/clean`, the
    directory `DIR/errors` if there is one, as `logsieve process --out DIR` lays them out. On
    S3 the pipeline keeps them in another bucket, so there is no guess to make."""
    if is_s3(clean_uri):
        return None
    try:
        path = resolve(clean_uri, delta=False)
    except ConfigError:
        return None
    parent, name = os.path.split(path.rstrip(os.sep))
    errors = os.path.join(parent, "errors")
    return errors if name == "clean" and os.path.isdir(errors) else None
