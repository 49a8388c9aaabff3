"""Ledgers: which error files each version of a source has, under `_logsieve/sources/` of the
error location, and the protocol that replaces a source's earlier files once its new rows are
committed (in progress, complete, removal)."""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import orjson

from logsieve.storage import table
from logsieve.storage.identity import ContentMark, Source
from logsieve.storage.sinks import _Sink

#: Where per-source ledgers live, under the error location (`_` keeps it out of readers' way).
LEDGER_DIR = "_logsieve/sources"


#: Where groups' markers live (see `group_key`).
GROUP_DIR = "_logsieve/groups"


#: Which table the error records beside it were written with (its Delta table id).
TABLE_MARK = "_logsieve/table.json"
#: Marks this process has made or seen, so that an ingest pays for one only once.
_MARKED: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class TableMark:
    """The table an error location's records were written with: its id and where it was."""

    table_id: str
    clean: str

    @classmethod
    def read(cls, sink: _Sink) -> TableMark | None:
        """The location's mark; None where there is none (records of an older logsieve) or it
        cannot be parsed."""
        data = sink.read(TABLE_MARK)
        try:
            fields = orjson.loads(data) if data else None
            return cls(str(fields["table_id"]), str(fields["clean"])) if fields else None
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None


def mark_table(sink: _Sink, table_id: str, clean: str) -> None:
    """Record which table the error records at `sink` are written with. A location that held
    another table's records (that table deleted and made again) is taken over by this one."""
    seen = (sink.display(TABLE_MARK), table_id)
    if seen in _MARKED:
        return
    data = orjson.dumps({"table_id": table_id, "clean": clean})
    if not sink.create(TABLE_MARK, data):
        mark = TableMark.read(sink)
        if mark is None or mark.table_id != table_id:
            sink.write(TABLE_MARK, data)
    _MARKED.add(seen)


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


def _tag_of(one: Source) -> str:
    return version_tag(table.version_number(one.version))
