"""`logsieve process INPUT... --out DIR`: the pipeline's processing, on local files.

Each input (file, directory, glob or `-` for stdin; gzip and zstd decompressed on the fly) is one
source: its clean rows go to the Delta table `DIR/clean` and its invalid lines to
`DIR/errors/date=.../*.jsonl`, as the AWS pipeline writes them. A local file is identified by
its content (a fingerprint of its first line, as Vector's file source does), so a renamed,
rotated or copied file replaces its earlier rows instead of adding them again, and a file that
grew replaces its shorter self. Small inputs are committed together (one commit and a few files
per date for many inputs). Inputs that cannot be read are reported one line each on stderr and
make the exit status 1; the readable ones are still processed. Invalid lines are data, not
failures: they do not change the exit status.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logsieve.cli import ExitCode, print_capped
from logsieve.errors import ConcurrentIngestError, ConfigError, LogsieveError
from logsieve.sources import (
    ByteStream,
    CountingReader,
    LocalInput,
    decompressing,
    read_exactly,
    resolve_local_inputs,
    skip_reason,
)
from logsieve.storage.table import file_url_path

if TYPE_CHECKING:
    from logsieve.storage.identity import Source
    from logsieve.storage.ingest import StoredContent
    from logsieve.storage.results import IngestResult

DEFAULT_OUT = "data"
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_STDIN_SPOOL_READ = 1 << 20
#: Inputs listed one per row in the summary table: all of them up to this many, else this many
#: with the most invalid lines (the rest are counted; --json lists all).
TABLE_ROWS = 10
#: Notes and failures printed one per line on stderr; the rest are counted (--json lists all).
MESSAGE_LINES = 20
#: Inputs are committed together until their bytes reach this; a bigger input is its own commit.
GROUP_BYTES = 256 << 20
#: Inputs per commit at most (each adds a transaction to the commit).
GROUP_INPUTS = 5000


def parse_size(text: str) -> int:
    """`8388608`, `8M`, `8MiB`, `512k` -> bytes (binary units); argparse type for --chunk-size."""
    match = _SIZE.match(text)
    if not match or int(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a positive size: {text!r} (e.g. 8MiB, 512k, 65536)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def add_process_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="file, directory (searched recursively for *.jsonl, *.json, *.log, *.ndjson, "
        "also .gz/.zst), glob pattern, or - for stdin",
    )
    parser.add_argument(
        "--out",
        "-o",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"output directory: clean Parquet in DIR/clean, errors in DIR/errors "
        f"(default: {DEFAULT_OUT})",
    )
    for option, default, meaning in (
        ("--timestamp-field", "timestamp", "the event time"),
        ("--user-id-field", "user_id", "the user id"),
        ("--action-field", "action", "the action"),
    ):
        parser.add_argument(
            option,
            default=default,
            metavar="NAME",
            help=f"input member holding {meaning} (default: {default}); the output column "
            f"keeps the name {default}",
        )
    parser.add_argument(
        "--chunk-size",
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="bytes read per batch, bounds memory (default: 4MiB)",
    )
    parser.add_argument(
        "--stdin-name",
        metavar="NAME",
        help="source name for stdin (default: derived from its content, so re-piping the "
        "same data replaces its output)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="never show a progress bar")


@dataclass
class _Outcome:
    input: str
    order: int = 0
    result: IngestResult | None = None
    error: str | None = None
    note: str | None = None


def run_process(args: argparse.Namespace) -> int:
    from logsieve import DEFAULT_CHUNK_SIZE

    fields = _field_names(args)
    out = Path(file_url_path(args.out) if args.out.startswith("file:") else args.out).expanduser()
    skipped: list[Path] = []
    found, bad = resolve_local_inputs(args.inputs, exclude=[out], skipped=skipped)
    quiet = getattr(args, "quiet", False)
    if not quiet:
        print_capped(
            (f"note: skipped {path}: {skip_reason(path)}" for path in skipped),
            limit=MESSAGE_LINES,
            more="note: {count:,} more skipped",
            file=sys.stderr,
        )
    if not found and not bad:
        raise ConfigError("no inputs given")
    clean_dir, error_dir = out / "clean", out / "errors"
    chunk_size = args.chunk_size or DEFAULT_CHUNK_SIZE
    show_progress = not (args.json or args.no_progress or quiet) and sys.stderr.isatty()

    started = time.perf_counter()
    with ExitStack() as stack, _progress(show_progress, found) as advance:
        planned, outcomes = _plan(
            found,
            stack,
            clean_uri=str(clean_dir),
            error_uri=str(error_dir),
            stdin_name=args.stdin_name,
            advance=advance,
        )
        if not quiet:
            print_capped(
                (f"note: {o.input}: {o.note}" for o in outcomes if o.note),
                limit=MESSAGE_LINES,
                more="note: {count:,} more inputs skipped (--json lists them)",
                file=sys.stderr,
            )
        for group in _groups(planned):
            outcomes += _process_group(
                group, str(clean_dir), str(error_dir), chunk_size=chunk_size, fields=fields
            )
    outcomes.sort(key=lambda o: o.order)
    elapsed = time.perf_counter() - started
    failures = [_Outcome(input=b.spec, error=b.reason) for b in bad]
    failures += [o for o in outcomes if o.error is not None]
    succeeded = [o for o in outcomes if o.result is not None]

    if args.json:
        import orjson

        notes = [o for o in outcomes if o.note]
        report = _json_report(succeeded, failures, notes, out, elapsed)
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif succeeded and not quiet:
        _print_table(succeeded, failures, out, elapsed)
    print_capped(
        (f"logsieve process: error: {f.input}: {f.error}" for f in failures),
        limit=MESSAGE_LINES,
        more="logsieve process: error: {count:,} more inputs failed (--json lists all)",
        file=sys.stderr,
    )
    return ExitCode.FAILED if failures else ExitCode.OK


def _field_names(args: argparse.Namespace) -> dict[str, str]:
    fields = {
        "timestamp_field": args.timestamp_field,
        "user_id_field": args.user_id_field,
        "action_field": args.action_field,
    }
    for option, name in fields.items():
        if not name:
            raise ConfigError(f"--{option.replace('_', '-')} must not be empty")
    if len(set(fields.values())) != len(fields):
        raise ConfigError("--timestamp-field, --user-id-field and --action-field must differ")
    return fields


@dataclass(frozen=True)
class _Planned:
    """An input about to be ingested: its place in the report, and the source it becomes."""

    order: int
    item: LocalInput
    source: Source
    size: int


def _plan(
    found: list[LocalInput],
    stack: ExitStack,
    *,
    clean_uri: str,
    error_uri: str,
    stdin_name: str | None,
    advance: Any,
) -> tuple[list[_Planned], list[_Outcome]]:
    """Sources for the inputs; inputs whose content another input holds are skipped with a note.

    Of several inputs that begin alike (copies, a file and its rotated copy, a file and its
    grown self), the largest is ingested: it holds everything the others do.
    """
    candidates: list[_Candidate] = []
    outcomes: list[_Outcome] = []
    for order, item in enumerate(found):
        try:
            candidates.append(
                _candidate(order, item, stack, stdin_name=stdin_name, advance=advance)
            )
        except LogsieveError as exc:
            error = _strip_prefix(str(exc), item)
            outcomes.append(_Outcome(input=item.spec, order=order, error=error))
        except OSError as exc:
            error = f"cannot read: {exc.strerror or exc}"
            outcomes.append(_Outcome(input=item.spec, order=order, error=error))
    from logsieve.storage.ingest import StoredContent

    stored = StoredContent(clean_uri=clean_uri, error_uri=error_uri)
    by_base: dict[str, list[_Candidate]] = {}
    for candidate in sorted(candidates, key=lambda c: (-c.size, c.order)):
        by_base.setdefault(candidate.base, []).append(candidate)
    planned: list[_Planned] = []
    for base, alike in by_base.items():
        kept = _drop_copies(alike, outcomes)
        for candidate, identity in _identities(base, kept, stored):
            planned.append(candidate.planned(identity, advance))
    return sorted(planned, key=lambda p: p.order), outcomes


def _drop_copies(alike: list[_Candidate], outcomes: list[_Outcome]) -> list[_Candidate]:
    """Of inputs with one first line, those whose whole content another one begins with go,
    with a note: a copy, or an earlier self of a file that grew (whichever is compressed)."""
    kept: list[_Candidate] = []
    for candidate in alike:
        holder = next((k for k in kept if candidate.head_of(k)), None)
        if holder is not None:
            note = f"skipped: same content as {holder.item.spec}"
            outcomes.append(_Outcome(input=candidate.item.spec, order=candidate.order, note=note))
            continue
        for smaller in [k for k in kept if k.head_of(candidate)]:
            kept.remove(smaller)
            note = f"skipped: same content as {candidate.item.spec}"
            outcomes.append(_Outcome(input=smaller.item.spec, order=smaller.order, note=note))
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

    def planned(self, identity: str, advance: Any) -> _Planned:
        from logsieve.storage.identity import ContentMark, Source

        if self.source is not None:  # stdin
            return _Planned(self.order, self.item, self.source, self.size)
        assert self.item.path is not None
        item, name = self.item, str(self.item.path)

        def open_file() -> Any:
            return _Opened(CountingReader(item.open_raw(), advance), name)

        stat = self.stat or self.item.path.stat()
        mark = ContentMark(len(self.head), hashlib.sha256(self.head).hexdigest())
        source = Source(
            identity=identity,
            name=_printable(name),
            version=f"{stat.st_size}-{stat.st_mtime_ns}",
            open=open_file,
            arrival=datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc),
            size=stat.st_size,
            content=mark,
        )
        return _Planned(self.order, item, source, self.size)


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
        raise ConfigError(f"--stdin-name {_printable(name)!r} is not valid UTF-8") from None
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
    line are told apart by their heads (`_identity`). An empty file has no line yet: its path
    stands in. `head` is the file's first (decompressed) bytes, if already read.
    """
    if head is None:
        with open(path, "rb") as raw, decompressing(raw, str(path)) as stream:
            head = _read_head(stream)
    if not head:
        return "local-empty:" + hashlib.sha256(os.fsencode(path.absolute())).hexdigest()[:32]
    first = head.split(b"\n", 1)[0]
    return "local:" + hashlib.sha256(first).hexdigest()[:32]


def _printable(name: str) -> str:
    """A path as text: bytes that are not UTF-8 (surrogate-escaped by Python) become escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _groups(planned: list[_Planned]) -> list[list[_Planned]]:
    """Inputs in commit groups of at most GROUP_BYTES (bigger inputs alone), in input order.

    A group's sources share error files, where a source's lines are known by its name: two
    inputs whose printable names are equal (`bad\\xff.jsonl` written out, and a name with the
    byte 0xff) never share a group, or replacing one would take the other's lines along.
    """
    groups: list[list[_Planned]] = []
    current: list[_Planned] = []
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


def _process_group(
    group: list[_Planned],
    clean_uri: str,
    error_uri: str,
    *,
    chunk_size: int,
    fields: dict[str, str],
) -> list[_Outcome]:
    from logsieve.storage.identity import FieldNames
    from logsieve.storage.ingest import ingest_group

    names = FieldNames(fields["timestamp_field"], fields["user_id_field"], fields["action_field"])
    try:
        outcome = ingest_group(
            [entry.source for entry in group],
            clean_uri=clean_uri,
            error_uri=error_uri,
            chunk_size=chunk_size,
            fields=names,
        )
    except ConcurrentIngestError as exc:
        # Another run (or one that died within the last minute) holds these sources: say so for
        # each, and go on with the other groups.
        reason = f"{exc} (if no other run is going on, one died: run again in a minute)"
        return [_Outcome(input=e.item.spec, order=e.order, error=reason) for e in group]
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
            report.append(_Outcome(input=entry.item.spec, order=entry.order, error=reason))
        else:
            report.append(
                _Outcome(input=entry.item.spec, order=entry.order, result=outcome.results[identity])
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


def _progress(enabled: bool, found: list[LocalInput]) -> Any:
    """A rich byte progress bar on stderr, or nothing; yields a `advance(nbytes)` callback."""
    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    total = sum(item.size or 0 for item in found if not item.is_stdin)
    progress = Progress(
        TextColumn("[bold]processing"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )

    class _Bar:
        def __enter__(self) -> Any:
            progress.__enter__()
            task = progress.add_task("processing", total=total or None)
            return lambda n: progress.advance(task, n)

        def __exit__(self, *exc: object) -> None:
            progress.__exit__(None, None, None)

    return _Bar()


def _top_errors(counts: dict[str, int], limit: int = 3) -> str:
    return ", ".join(f"{code}: {n:,}" for code, n in Counter(counts).most_common(limit)) or "-"


def _totals(succeeded: list[_Outcome], elapsed: float) -> dict[str, Any]:
    totals: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    for outcome in succeeded:
        assert outcome.result is not None
        for name in ("processed", "valid", "errors", "blank", "bytes"):
            totals[name] += getattr(outcome.result, name)
        codes.update(outcome.result.error_counts)
    mb = totals["bytes"] / 1e6
    return {
        "inputs": len(succeeded),
        **{k: totals[k] for k in ("processed", "valid", "errors", "blank", "bytes")},
        "error_counts": dict(codes.most_common()),
        "seconds": round(elapsed, 6),
        "mb_per_s": round(mb / elapsed, 3) if elapsed > 0 else None,
    }


def _json_report(
    succeeded: list[_Outcome],
    failures: list[_Outcome],
    notes: list[_Outcome],
    out: Path,
    elapsed: float,
) -> dict[str, Any]:
    inputs = []
    for outcome in succeeded:
        assert outcome.result is not None
        inputs.append({"input": _printable(outcome.input), **outcome.result.summary()})
    return {
        "out": _printable(str(out)),
        "clean": _printable(str(out / "clean")),
        "errors": _printable(str(out / "errors")),
        "inputs": inputs,
        "failed": [{"input": _printable(f.input), "error": f.error} for f in failures],
        "skipped": [{"input": _printable(o.input), "note": o.note} for o in notes],
        "totals": _totals(succeeded, elapsed),
    }


def worst_inputs(succeeded: list[_Outcome], limit: int) -> list[_Outcome]:
    """All inputs, in order, when they are few; else at most `limit` of those with invalid
    lines, the most (then the highest share) first: where a person looks first."""
    if len(succeeded) <= limit:
        return succeeded

    def badness(outcome: _Outcome) -> tuple[int, float]:
        assert outcome.result is not None
        result = outcome.result
        return result.errors, result.errors / result.processed if result.processed else 0.0

    bad = [o for o in succeeded if o.result is not None and o.result.errors]
    return sorted(bad, key=badness, reverse=True)[:limit]


def _print_table(
    succeeded: list[_Outcome], failures: list[_Outcome], out: Path, elapsed: float
) -> None:
    from rich.console import Console
    from rich.table import Table

    width = None if sys.stdout.isatty() else max(shutil.get_terminal_size((120, 24)).columns, 120)
    console = Console(width=width, highlight=False)
    shown = worst_inputs(succeeded, TABLE_ROWS)
    title = f"logsieve process -> {out}"
    if len(shown) < len(succeeded):
        which = "the inputs" if len(shown) < TABLE_ROWS else f"the {len(shown)} inputs"
        title += f": {which} with the most invalid lines, of {len(succeeded):,}"
    table = Table(title=title, title_justify="left")
    table.add_column("input", overflow="fold")
    for name in ("processed", "valid", "errors", "blank"):
        table.add_column(name, justify="right")
    table.add_column("top errors")
    table.add_column("MB", justify="right")
    for outcome in shown:
        result = outcome.result
        assert result is not None
        table.add_row(
            outcome.input,
            f"{result.processed:,}",
            f"{result.valid:,}",
            f"{result.errors:,}",
            f"{result.blank:,}",
            _top_errors(result.error_counts),
            f"{result.bytes / 1e6:.2f}",
        )
    totals = _totals(succeeded, elapsed)
    if len(shown) < len(succeeded):
        rest = len(succeeded) - len(shown)
        fine = " with no invalid lines" if len(shown) < TABLE_ROWS else ""
        table.add_row(f"... {rest:,} more inputs{fine} (--json lists all)")
    if len(succeeded) != 1:
        table.add_section()
        table.add_row(
            f"total ({totals['inputs']:,} inputs)",
            f"{totals['processed']:,}",
            f"{totals['valid']:,}",
            f"{totals['errors']:,}",
            f"{totals['blank']:,}",
            _top_errors(totals["error_counts"]),
            f"{totals['bytes'] / 1e6:.2f}",
        )
    console.print(table)
    speed = f"{totals['mb_per_s']:.1f} MB/s" if totals["mb_per_s"] is not None else "-"
    console.print(f"{totals['bytes'] / 1e6:.2f} MB in {elapsed:.2f} s ({speed})")
    if failures:
        console.print(f"failed inputs: {len(failures):,} (named on stderr)")
    console.print(f"clean rows:    {out / 'clean'}", soft_wrap=True)
    console.print(f"error records: {out / 'errors'}", soft_wrap=True)


__all__ = ["add_process_arguments", "parse_size", "run_process"]
