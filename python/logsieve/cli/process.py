"""`logsieve process INPUT... --out DIR`: the pipeline's processing, on local files.

Each input (file, directory, glob or `-` for stdin; gzip and zstd decompressed on the fly) is one
source (logsieve.local): its clean rows go to the Delta table `DIR/clean` and its invalid lines
to `DIR/errors/date=.../*.jsonl`, as the AWS pipeline writes them. Inputs that cannot be read
are reported one line each on stderr and make the exit status 1; the readable ones are still
processed. Invalid lines are data, not failures: they do not change the exit status.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from logsieve.cli import (
    ExitCode,
    add_field_arguments,
    field_names,
    parse_size,
    print_capped,
    print_json,
)
from logsieve.errors import ConfigError
from logsieve.local import Outcome, printable, process_inputs
from logsieve.locations import local_path
from logsieve.sources import (
    LocalInput,
    resolve_local_inputs,
    skip_reason,
)

DEFAULT_OUT = "data"
#: Inputs listed one per row in the summary table: all of them up to this many, else this many
#: with the most invalid lines (the rest are counted; --json lists all).
TABLE_ROWS = 10
#: Notes and failures printed one per line on stderr; the rest are counted (--json lists all).
MESSAGE_LINES = 20


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
    add_field_arguments(parser, column_note=True)
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


def run_process(args: argparse.Namespace) -> int:
    from logsieve import DEFAULT_CHUNK_SIZE

    fields = field_names(args)
    out = Path(local_path(args.out)).expanduser()
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
    with _progress(show_progress, found) as advance:
        outcomes = process_inputs(
            found,
            clean_uri=str(clean_dir),
            error_uri=str(error_dir),
            stdin_name=args.stdin_name,
            chunk_size=chunk_size,
            fields=fields,
            advance=advance,
            on_planned=None if quiet else _print_notes,
        )
    elapsed = time.perf_counter() - started
    failures = [Outcome(input=b.spec, error=b.reason) for b in bad]
    failures += [o for o in outcomes if o.error is not None]
    succeeded = [o for o in outcomes if o.result is not None]

    if args.json:
        notes = [o for o in outcomes if o.note]
        report = _json_report(succeeded, failures, notes, out, elapsed)
        print_json(report)
    elif succeeded and not quiet:
        _print_table(succeeded, failures, out, elapsed)
    print_capped(
        (f"logsieve process: error: {f.input}: {f.error}" for f in failures),
        limit=MESSAGE_LINES,
        more="logsieve process: error: {count:,} more inputs failed (--json lists all)",
        file=sys.stderr,
    )
    return ExitCode.FAILED if failures else ExitCode.OK


def _print_notes(outcomes: list[Outcome]) -> None:
    """The inputs planning skipped, one line each on stderr (capped)."""
    print_capped(
        (f"note: {o.input}: {o.note}" for o in outcomes if o.note),
        limit=MESSAGE_LINES,
        more="note: {count:,} more inputs skipped (--json lists them)",
        file=sys.stderr,
    )


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


def _totals(succeeded: list[Outcome], elapsed: float) -> dict[str, Any]:
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
    succeeded: list[Outcome],
    failures: list[Outcome],
    notes: list[Outcome],
    out: Path,
    elapsed: float,
) -> dict[str, Any]:
    inputs = []
    for outcome in succeeded:
        assert outcome.result is not None
        inputs.append({"input": printable(outcome.input), **outcome.result.summary()})
    return {
        "out": printable(str(out)),
        "clean": printable(str(out / "clean")),
        "errors": printable(str(out / "errors")),
        "inputs": inputs,
        "failed": [{"input": printable(f.input), "error": f.error} for f in failures],
        "skipped": [{"input": printable(o.input), "note": o.note} for o in notes],
        "totals": _totals(succeeded, elapsed),
    }


def worst_inputs(succeeded: list[Outcome], limit: int) -> list[Outcome]:
    """All inputs, in order, when they are few; else at most `limit` of those with invalid
    lines, the most (then the highest share) first: where a person looks first."""
    if len(succeeded) <= limit:
        return succeeded

    def badness(outcome: Outcome) -> tuple[int, float]:
        assert outcome.result is not None
        result = outcome.result
        return result.errors, result.errors / result.processed if result.processed else 0.0

    bad = [o for o in succeeded if o.result is not None and o.result.errors]
    return sorted(bad, key=badness, reverse=True)[:limit]


def _print_table(
    succeeded: list[Outcome], failures: list[Outcome], out: Path, elapsed: float
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


__all__ = ["add_process_arguments", "run_process"]
