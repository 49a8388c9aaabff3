"""`logsieve errors` (summarise the error records) and `logsieve replay` (run them through the
core again into the table); docs/replay.md."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, replace

from logsieve.cli import add_field_arguments, field_names, plural, print_json
from logsieve.errors import ConfigError, NoCleanTableError
from logsieve.locations import is_s3, join, resolve, s3_parts
from logsieve.storage.replay import ReplayReport, Selection, replay, summarize


def _add_location(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "errors",
        metavar="ERRORS",
        help="error-records location: a directory such as DIR/errors, or s3://bucket/prefix",
    )


def _add_dates(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--date",
        action="append",
        default=None,
        metavar="YYYY-MM-DD",
        help="only error files of this arrival date (repeatable; default: all)",
    )


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    _add_location(parser)
    table = parser.add_mutually_exclusive_group()
    table.add_argument(
        "--out",
        "-o",
        default="data",
        metavar="DIR",
        help="the output directory `logsieve process` wrote: rows go to its table DIR/clean "
        "(a directory or s3://bucket/prefix; default: data)",
    )
    table.add_argument(
        "--clean", metavar="URI", help="the clean table itself (instead of --out's DIR/clean)"
    )
    add_field_arguments(parser)
    _add_dates(parser)
    parser.add_argument(
        "--code",
        action="append",
        default=None,
        metavar="CODE",
        help="only records with this error code (repeatable; default: all)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run_replay(args: argparse.Namespace) -> int:
    _require_location(args.errors)
    fields = field_names(args)
    selection = Selection.checked(args.date or [], args.code or [])
    clean = args.clean if args.clean is not None else join(args.out, "clean")
    try:
        report = replay(
            args.errors,
            clean,
            fields=fields,
            selection=selection,
        )
    except NoCleanTableError as exc:
        if args.clean is not None:
            raise ConfigError(f"--clean {args.clean}: {exc}") from None
        raise ConfigError(
            f"{exc}: --out names the directory `logsieve process` wrote (its table is DIR/clean)"
        ) from None
    report.errors = _shown(args.errors, report.errors)
    if args.json:
        print_json(asdict(report))
    elif not args.quiet:
        _print_replay(report, selection)
    return 0


def _print_replay(report: ReplayReport, selection: Selection) -> None:
    fields = ", ".join(f"{k} <- {v}" for k, v in report.fields.items() if k != v)
    print(f"logsieve replay: {report.errors} -> {report.clean}")
    print(f"  fields:        {fields or 'the standard names'}")
    dates = ", ".join(sorted(selection.dates)) or "all"
    codes = ", ".join(sorted(selection.codes)) or "all"
    print(f"  selected:      {report.selected} error records (dates: {dates}; codes: {codes})")
    if report.finished_earlier:
        print(f"  finished:      {report.finished_earlier} interrupted earlier replay(s)")
    days = ", ".join(f"date={d}: {n}" for d, n in report.rows_by_date.items())
    where = f", committed as table version {report.table_version} ({days})"
    print(f"  now valid:     {report.now_valid}{where if report.table_version else ''}")
    codes_left = ", ".join(f"{c} {n}" for c, n in report.still_by_code.items())
    print(
        f"  still invalid: {report.still_invalid}"
        + (f" ({codes_left}); reason changed for {report.reason_changed}" if codes_left else "")
    )
    for why, count in report.skipped.items():
        print(f"  skipped:       {count} ({why})")
    for part in report.sources:
        lines = _ranges(part.valid_lines)
        print(
            f"    {part.source}: {part.now_valid} now valid"
            + (f" ({'line' if len(part.valid_lines) == 1 else 'lines'} {lines})" if lines else "")
            + f", {part.still_invalid} still invalid"
        )
    print(f"  error files rewritten: {report.files_rewritten}")


def _ranges(numbers: Sequence[int], limit: int = 12) -> str:
    """`1-3, 7, 9-10` for [1, 2, 3, 7, 9, 10], cut after `limit` ranges."""
    spans: list[str] = []
    start = previous = None
    for number in numbers:
        if previous is not None and number == previous + 1:
            previous = number
            continue
        if start is not None:
            spans.append(f"{start}-{previous}" if previous != start else str(start))
        start = previous = number
    if start is not None:
        spans.append(f"{start}-{previous}" if previous != start else str(start))
    return ", ".join(spans[:limit]) + (
        f", ... ({len(spans) - limit} more)" if len(spans) > limit else ""
    )


def add_errors_arguments(parser: argparse.ArgumentParser) -> None:
    _add_location(parser)
    _add_dates(parser)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _require_location(errors: str) -> None:
    if not errors:
        raise ConfigError(
            "an error-records location is required (a directory such as DIR/errors, "
            "or s3://bucket/prefix)"
        )


def run_errors(args: argparse.Namespace) -> int:
    _require_location(args.errors)
    selection = Selection.checked(args.date or [])
    s3_client = None
    if is_s3(args.errors):
        import boto3

        s3_client = boto3.client("s3")
    summary = summarize(args.errors, selection, s3_client)
    summary.location = _shown(args.errors, summary.location)
    summary.samples = [
        replace(sample, file=_shown(args.errors, sample.file)) for sample in summary.samples
    ]
    if args.json:
        print_json(asdict(summary))
        return 0
    if args.quiet:
        return 0
    days = ", ".join(sorted(selection.dates)) or "all dates"
    print(f"logsieve errors: {summary.location} ({days})")
    print(f"  {plural(summary.records, 'error record')} in {plural(summary.files, 'file')}")
    if summary.records:
        print("  by code:   " + ", ".join(f"{c} {n}" for c, n in summary.by_code.items()))
        print(
            "  by date:   "
            + ", ".join(f"{d} {n}" for d, n in summary.by_date.items())
            + " (arrival)"
        )
        print("  by source:")
        for source, count in list(summary.by_source.items())[:10]:
            print(f"    {count:>8}  {source}")
        if len(summary.by_source) > 10:
            print(f"    ... and {len(summary.by_source) - 10} more sources")
        print("  samples:")
        for sample in summary.samples:
            print(f"    {sample.source}:{sample.line}: {sample.error}: {sample.detail}")
            print(f"      {_clip(sample.raw)}")
    if summary.pending_replays:
        print(
            f"  note: {summary.pending_replays} replay(s) not finished (running, or interrupted: "
            "`logsieve replay` finishes them)"
        )
    return 0


def _shown(location: str, shown: str) -> str:
    """What the storage layer names by its key inside an S3 location's bucket, as
    `s3://bucket/key`; local paths as they are."""
    if not is_s3(location) or shown.startswith("s3://"):
        return shown
    bucket, _ = s3_parts(resolve(location, delta=False))
    return f"s3://{bucket}/{shown}".rstrip("/")


def _clip(text: str, width: int = 100) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


__all__ = ["add_errors_arguments", "add_replay_arguments", "run_errors", "run_replay"]
