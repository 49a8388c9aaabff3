"""Local inputs (files, directories, globs, stdin) as sources of the clean table and the error
records: what `logsieve process` ingests.

Each input is one source. A local file is identified by its content (a fingerprint of its first
line, as Vector's file source does), so a renamed, rotated or copied file replaces its earlier
rows instead of adding them again, and a file that grew replaces its shorter self. Small inputs
are committed together (one commit and a few files per date for many inputs). An input that
cannot be read fails alone; the others are still ingested.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logsieve.errors import ConcurrentIngestError, ConfigError, LogsieveError
from logsieve.sources import ByteStream, CountingReader, LocalInput, decompressing, read_exactly

if TYPE_CHECKING:
    from logsieve.storage.identity import FieldNames, Source
    from logsieve.storage.ingest import StoredContent
    from logsieve.storage.results import IngestResult

_STDIN_SPOOL_READ = 1 << 20
#: Inputs are committed together until their bytes reach this; a bigger input is its own commit.
GROUP_BYTES = 256 << 20
#: Inputs per commit at most (each adds a transaction to the commit).
GROUP_INPUTS = 5000


@dataclass
class Outcome:
    """What became of one input: its result, or why it failed, or why it was skipped."""

    input: str
    order: int = 0
    result: IngestResult | None = None
    error: str | None = None
    note: str | None = None


def process_inputs(
    found: Sequence[LocalInput],
    *,
    clean_uri: str,
    error_uri: str,
    stdin_name: str | None,
    chunk_size: int,
    fields: FieldNames,
    advance: Any = None,
    on_planned: Callable[[list[Outcome]], None] | None = None,
) -> list[Outcome]:
    """Ingest the inputs in commit groups; an outcome for each, in input order.

    `advance(nbytes)` is called as input bytes are read (a progress bar); `on_planned` gets the
    outcomes known once planning is done (the inputs skipped as copies, those that failed to
    open) before anything is ingested.
    """
    with ExitStack() as stack:
        planned, outcomes = plan(
            list(found),
            stack,
            clean_uri=clean_uri,
            error_uri=error_uri,
            stdin_name=stdin_name,
            advance=advance,
        )
        if on_planned is not None:
            on_planned(outcomes)
        for group in commit_groups(planned):
            outcomes += ingest_planned(
                group, clean_uri, error_uri, chunk_size=chunk_size, fields=fields
            )
    outcomes.sort(key=lambda o: o.order)
    return outcomes


@dataclass(frozen=True)
class Planned:
    """An input about to be ingested: its place in the report, and the source it becomes."""

    order: int
    item: LocalInput
    source: Source
    size: int


def plan(
    found: list[LocalInput],
    stack: ExitStack,
    *,
    clean_uri: str,
    error_uri: str,
    stdin_name: str | None,
    advance: Any,
) -> tuple[list[Planned], list[Outcome]]:
    """Sources for the inputs; inputs whose content another input holds are skipped with a note.

    Of several inputs that begin alike (copies, a file and its rotated copy, a file and its
    grown self), the largest is ingested: it holds everything the others do.
    """
    candidates: list[_Candidate] = []
    outcomes: list[Outcome] = []
    for order, item in enumerate(found):
        try:
            candidates.append(
                _candidate(order, item, stack, stdin_name=stdin_name, advance=advance)
            )
        except LogsieveError as exc:
            error = _strip_prefix(str(exc), item)
            outcomes.append(Outcome(input=item.spec, order=order, error=error))
        except OSError as exc:
            error = f"cannot read: {exc.strerror or exc}"
            outcomes.append(Outcome(input=item.spec, order=order, error=error))
    from logsieve.storage.ingest import StoredContent

    stored = StoredContent(clean_uri=clean_uri, error_uri=error_uri)
    by_base: dict[str, list[_Candidate]] = {}
    for candidate in sorted(candidates, key=lambda c: (-c.size, c.order)):
        by_base.setdefault(candidate.base, []).append(candidate)
    planned: list[Planned] = []
    for base, alike in by_base.items():
        kept = _drop_copies(alike, outcomes)
        for candidate, identity in _identities(base, kept, stored):
            planned.append(candidate.planned(identity, advance))
    return sorted(planned, key=lambda p: p.order), outcomes


def _drop_copies(alike: list[_Candidate], outcomes: list[Outcome]) -> list[_Candidate]:
    """Of inputs with one first line, those whose whole content another one begins with go,
    with a note: a copy, or an earlier self of a file that grew (whichever is compressed)."""
    kept: list[_Candidate] = []
    for candidate in alike:
        holder = next((k for k in kept if candidate.head_of(k)), None)
        if holder is not None:
            note = f"skipped: same content as {holder.item.spec}"
            outcomes.append(Outcome(input=candidate.item.spec, order=candidate.order, note=note))
            continue
        for smaller in [k for k in kept if k.head_of(candidate)]:
            kept.remove(smaller)
            note = f"skipped: same content as {candidate.item.spec}"
            outcomes.append(Outcome(input=smaller.item.spec, order=smaller.order, note=note))
        kept.append(candidate)
    return kept


def _identities(
    base: str, kept: list[_Candidate], stored: StoredContent
) -> Iterator[tuple[_Candidate, str]]:
    """Identities for distinct inputs that share a first line: the one that continues the
    stored version (or, with none stored, the largest) keeps `base`; the others get their own,
    from their heads (and their paths where even the heads agree)."""
    if len(kept) == 1 and kept[0].source is not None:  # stdin
        yield kept[0], kept[0].source.identity
        return
    mark = stored(base)
    owner = next((c for c in kept if mark is None or mark.begins(c.head)), None)
    used: set[str] = set()
    for candidate in kept:
        if candidate is owner:
            identity = base
        else:
            identity = f"{base}:{hashlib.sha256(candidate.head).hexdigest()[:16]}"
            if identity in used:
                assert candidate.item.path is not None
                path = os.fsencode(candidate.item.path.absolute())
                identity += ":" + hashlib.sha256(path).hexdigest()[:16]
        used.add(identity)
        yield candidate, identity


#: Bytes of a local file's (decompressed) beginning that tell copies and growth from other files.
HEAD_BYTES = 16 << 10


@dataclass(frozen=True)
class _Candidate:
    """An input while planning: where it is, how big, and how it begins."""

    order: int
    item: LocalInput
    size: int
    base: str
    head: bytes
    source: Source | None = None
    #: The file's status, taken once while planning (size, version and arrival come from it).
    stat: os.stat_result | None = None

    def head_of(self, other: _Candidate) -> bool:
        """Whether `other` begins with all of this input's content."""
        if self.source is not None or not other.head.startswith(self.head):
            return False
        if len(self.head) < HEAD_BYTES:  # the head is all of it
            return True
        assert self.item.path is not None and other.item.path is not None
        return _is_prefix(self.item.path, other.item.path)

    def planned(self, identity: str, advance: Any) -> Planned:
        from logsieve.storage.identity import ContentMark, Source

        if self.source is not None:  # stdin
            return Planned(self.order, self.item, self.source, self.size)
        assert self.item.path is not None
        item, name = self.item, str(self.item.path)

        def open_file() -> Any:
            return _Opened(CountingReader(item.open_raw(), advance), name)

        stat = self.stat or self.item.path.stat()
        mark = ContentMark(len(self.head), hashlib.sha256(self.head).hexdigest())
        source = Source(
            identity=identity,
            name=printable(name),
            version=f"{stat.st_size}-{stat.st_mtime_ns}",
            open=open_file,
            arrival=datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc),
            size=stat.st_size,
            content=mark,
        )
        return Planned(self.order, item, source, self.size)


def _candidate(
    order: int, item: LocalInput, stack: ExitStack, *, stdin_name: str | None, advance: Any
) -> _Candidate:
    from logsieve.storage.identity import Source

    if item.is_stdin:
        spooled, digest = _spool_stdin(stack)
        name = "stdin"  # compressed stdin is recognised by its first bytes (`decompressing`)
        size = spooled.seek(0, 2)

        def open_stdin() -> Any:
            spooled.seek(0)
            return _Opened(CountingReader(_Unclosed(spooled), advance), name)

        identity = _stdin_identity(stdin_name) if stdin_name else f"stdin-{digest[:16]}"
        source = Source(identity, identity, digest, open_stdin, item.arrival, size)
        return _Candidate(order, item, size, identity, b"", source)
    assert item.path is not None
    stat = item.path.stat()
    with open(item.path, "rb") as raw, decompressing(raw, str(item.path)) as stream:
        head = _read_head(stream)
    base = fingerprint(item.path, head)
    return _Candidate(order, item, stat.st_size, base, head, stat=stat)


def _is_prefix(shorter: Path, longer: Path) -> bool:
    """Whether the decompressed content of `shorter` is a prefix of that of `longer`."""
    with ExitStack() as stack:
        a = stack.enter_context(
            decompressing(stack.enter_context(open(shorter, "rb")), str(shorter))
        )
        b = stack.enter_context(decompressing(stack.enter_context(open(longer, "rb")), str(longer)))
        while part := a.read(1 << 20):
            if read_exactly(b, len(part)) != part:
                return False
    return True


def _stdin_identity(name: str) -> str:
    """--stdin-name as an identity: text, since it is stored in the table and the ledgers."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"--stdin-name {printable(name)!r} is not valid UTF-8") from None
    return name


def _read_head(stream: ByteStream) -> bytes:
    return read_exactly(stream, HEAD_BYTES)


class _Opened:
    """A context manager giving the decompressed stream of a raw one, closing both after."""

    def __init__(self, raw: ByteStream, name: str) -> None:
        self.raw = raw
        self.name = name
        self.stream: ByteStream | None = None

    def __enter__(self) -> ByteStream:
        self.stream = decompressing(self.raw, self.name)
        return self.stream

    def __exit__(self, *exc: object) -> None:
        if self.stream is not None:
            self.stream.close()
        self.raw.close()


class _Unclosed:
    """A file that closing leaves open: stdin's spool is read again on a retry."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def read(self, size: int = -1) -> bytes:
        return bytes(self._file.read(size))

    def readinto(self, buffer: Any) -> int:
        return int(self._file.readinto(buffer))

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def fingerprint(path: Path, head: bytes | None = None) -> str:
    """A local file's base identity: `local:` and the SHA-256 of its first (decompressed) line.

    Copies, renames and rotations keep the first line, and so does a file that grows by
    appending (as Vector's file source identifies files). Files that merely share their first
    line are told apart by their heads (`_identities`). An empty file has no line yet: its path
    stands in. `head` is the file's first (decompressed) bytes, if already read.
    """
    if head is None:
        with open(path, "rb") as raw, decompressing(raw, str(path)) as stream:
            head = _read_head(stream)
    if not head:
        return "local-empty:" + hashlib.sha256(os.fsencode(path.absolute())).hexdigest()[:32]
    first = head.split(b"\n", 1)[0]
    return "local:" + hashlib.sha256(first).hexdigest()[:32]


def printable(name: str) -> str:
    """A path as text: bytes that are not UTF-8 (surrogate-escaped by Python) become escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def commit_groups(planned: list[Planned]) -> list[list[Planned]]:
    """Inputs in commit groups of at most GROUP_BYTES (bigger inputs alone), in input order.

    A group's sources share error files, where a source's lines are known by its name: two
    inputs whose printable names are equal (`bad\\xff.jsonl` written out, and a name with the
    byte 0xff) never share a group, or replacing one would take the other's lines along.
    """
    groups: list[list[Planned]] = []
    current: list[Planned] = []
    names: set[str] = set()
    size = 0
    for entry in planned:
        full = size + entry.size > GROUP_BYTES or len(current) >= GROUP_INPUTS
        if current and (full or entry.source.name in names):
            groups.append(current)
            current, names, size = [], set(), 0
        current.append(entry)
        names.add(entry.source.name)
        size += entry.size
    if current:
        groups.append(current)
    return groups


def ingest_planned(
    group: list[Planned],
    clean_uri: str,
    error_uri: str,
    *,
    chunk_size: int,
    fields: FieldNames,
) -> list[Outcome]:
    from logsieve.storage.ingest import ingest_group

    try:
        outcome = ingest_group(
            [entry.source for entry in group],
            clean_uri=clean_uri,
            error_uri=error_uri,
            chunk_size=chunk_size,
            fields=fields,
        )
    except ConcurrentIngestError as exc:
        # Another run (or one that died within the last minute) holds these sources: say so for
        # each, and go on with the other groups.
        reason = f"{exc} (if no other run is going on, one died: run again in a minute)"
        return [Outcome(input=e.item.spec, order=e.order, error=reason) for e in group]
    failed = {failure.source.identity: failure.error for failure in outcome.failures}
    report = []
    for entry in group:
        identity = entry.source.identity
        if identity in failed:
            error = failed[identity]
            reason = (
                _strip_prefix(str(error), entry.item)
                if isinstance(error, LogsieveError)
                else f"cannot read: {getattr(error, 'strerror', None) or error}"
            )
            report.append(Outcome(input=entry.item.spec, order=entry.order, error=reason))
        else:
            report.append(
                Outcome(input=entry.item.spec, order=entry.order, result=outcome.results[identity])
            )
    return report


def _strip_prefix(message: str, item: LocalInput) -> str:
    """Messages from the readers start with the path; the report names the input already."""
    for prefix in (f"{item.path}: ", f"{item.spec}: ", "stdin.gz: ", "stdin.zst: "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _spool_stdin(stack: ExitStack) -> tuple[Any, str]:
    """Copy stdin to a temporary file while hashing it: its content is its identity."""
    spool = stack.enter_context(tempfile.TemporaryFile(prefix="logsieve-stdin-"))  # noqa: SIM115
    digest = hashlib.sha256()
    stdin = sys.stdin.buffer
    while chunk := stdin.read(_STDIN_SPOOL_READ):
        digest.update(chunk)
        spool.write(chunk)
    spool.seek(0)
    return spool, digest.hexdigest()


__all__ = ["HEAD_BYTES", "Outcome", "fingerprint", "printable", "process_inputs"]
