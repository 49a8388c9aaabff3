"""`logsieve process INPUT... --out DIR`: the pipeline's processing, on local files.

Each input (file, directory, glob or `-` for stdin; gzip and zstd decompressed on the fly) is one
source: its clean rows go to `DIR/clean/date=.../<source-id>.parquet` and its invalid lines to
`DIR/errors/date=.../<source-id>.jsonl`, exactly as the AWS pipeline writes them, so re-running
on the same inputs replaces their output instead of duplicating it. Inputs that cannot be read
are reported one line each on stderr and make the exit status 1; the readable ones are still
processed. Invalid lines are data, not failures: they do not change the exit status.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from logsieve.errors import ConfigError, LogsieveError
from logsieve.sources import (
    CountingReader,
    LocalInput,
    decompressing,
    resolve_local_inputs,
    sniff_compression,
)
from logsieve.storage import file_url_path

if TYPE_CHECKING:
    from logsieve.storage import IngestResult

DEFAULT_OUT = "data"
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_STDIN_SPOOL_READ = 1 << 20


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
        help="bytes read per batch, bounds memory (default: 8MiB)",
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
    result: IngestResult | None = None
    error: str | None = None


def run_process(args: argparse.Namespace) -> int:
    from logsieve import DEFAULT_CHUNK_SIZE

    fields = _field_names(args)
    out = Path(file_url_path(args.out) if args.out.startswith("file:") else args.out).expanduser()
    skipped: list[Path] = []
    found, bad = resolve_local_inputs(args.inputs, exclude=[out], skipped=skipped)
    for directory in skipped:
        print(f"note: skipped {directory}: a logsieve output directory", file=sys.stderr)
    if not found and not bad:
        raise ConfigError("no inputs given")
    clean_dir, error_dir = out / "clean", out / "errors"
    chunk_size = args.chunk_size or DEFAULT_CHUNK_SIZE
    show_progress = not args.json and not args.no_progress and sys.stderr.isatty()

    started = time.perf_counter()
    outcomes: list[_Outcome] = []
    with _progress(show_progress, found) as advance:
        for item in found:
            outcomes.append(
                _process_one(
                    item,
                    str(clean_dir),
                    str(error_dir),
                    chunk_size=chunk_size,
                    fields=fields,
                    stdin_name=args.stdin_name,
                    advance=advance,
                )
            )
    elapsed = time.perf_counter() - started
    failures = [_Outcome(input=b.spec, error=b.reason) for b in bad]
    failures += [o for o in outcomes if o.error is not None]
    succeeded = [o for o in outcomes if o.result is not None]

    if args.json:
        import orjson

        report = _json_report(succeeded, failures, out, elapsed)
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif succeeded:
        _print_table(succeeded, out, elapsed)
    for failure in failures:
        print(f"logsieve process: error: {failure.input}: {failure.error}", file=sys.stderr)
    return 1 if failures else 0


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


def _process_one(
    item: LocalInput,
    clean_uri: str,
    error_uri: str,
    *,
    chunk_size: int,
    fields: dict[str, str],
    stdin_name: str | None,
    advance: Any,
) -> _Outcome:
    from logsieve.storage import ingest

    try:
        with ExitStack() as stack:
            if item.is_stdin:
                spooled, digest = _spool_stdin(stack)
                source = stdin_name or f"stdin-{digest[:16]}"
                raw: BinaryIO = CountingReader(spooled, advance)
                kind = sniff_compression(spooled.peek(4)[:4]) if hasattr(spooled, "peek") else None
                name = {"gzip": "stdin.gz", "zstd": "stdin.zst"}.get(kind or "", "stdin")
            else:
                source = name = str(item.path)
                raw = CountingReader(item.open_raw(), advance)
            stream = stack.enter_context(decompressing(raw, name))
            result = ingest(
                stream,
                source=source,
                clean_uri=clean_uri,
                error_uri=error_uri,
                arrival=item.arrival,
                chunk_size=chunk_size,
                **fields,
            )
        return _Outcome(input=item.spec, result=result)
    except LogsieveError as exc:
        return _Outcome(input=item.spec, error=_strip_prefix(str(exc), item))
    except OSError as exc:
        return _Outcome(input=item.spec, error=f"cannot read: {exc.strerror or exc}")


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
    succeeded: list[_Outcome], failures: list[_Outcome], out: Path, elapsed: float
) -> dict[str, Any]:
    inputs = []
    for outcome in succeeded:
        assert outcome.result is not None
        inputs.append({"input": outcome.input, **outcome.result.summary()})
    return {
        "out": str(out),
        "clean": str(out / "clean"),
        "errors": str(out / "errors"),
        "inputs": inputs,
        "failed": [{"input": f.input, "error": f.error} for f in failures],
        "totals": _totals(succeeded, elapsed),
    }


def _print_table(succeeded: list[_Outcome], out: Path, elapsed: float) -> None:
    from rich.console import Console
    from rich.table import Table

    width = None if sys.stdout.isatty() else max(shutil.get_terminal_size((120, 24)).columns, 120)
    console = Console(width=width, highlight=False)
    table = Table(title=f"logsieve process -> {out}", title_justify="left")
    table.add_column("input", overflow="fold")
    for name in ("processed", "valid", "errors", "blank"):
        table.add_column(name, justify="right")
    table.add_column("top errors")
    table.add_column("MB", justify="right")
    for outcome in succeeded:
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
    if len(succeeded) != 1:
        table.add_section()
        table.add_row(
            f"total ({totals['inputs']} inputs)",
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
    console.print(f"clean rows:    {out / 'clean'}", soft_wrap=True)
    console.print(f"error records: {out / 'errors'}", soft_wrap=True)


__all__ = ["add_process_arguments", "parse_size", "run_process"]
