"""`logsieve compact`: rewrite the clean table's small files, sorted; then vacuum."""

from __future__ import annotations

import argparse
import json
import os
import sys

from logsieve.cli import parse_size
from logsieve.errors import ConfigError
from logsieve.storage.compact import (
    DEFAULT_RETENTION_HOURS,
    CompactionLockedError,
    CompactionReport,
    compact,
    parse_date,
)

#: Where `logsieve process --out data` puts the clean table.
DEFAULT_CLEAN_URI = os.path.join("data", "clean")


def add_compact_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "clean_uri",
        metavar="CLEAN_URI",
        nargs="?",
        default=DEFAULT_CLEAN_URI,
        help="the clean Delta table: a directory or s3://bucket/prefix "
        f"(default: {DEFAULT_CLEAN_URI}, where `process --out data` writes)",
    )
    parser.add_argument(
        "--date",
        dest="dates",
        action="append",
        metavar="YYYY-MM-DD",
        help="compact only this partition (repeatable; default: every partition)",
    )
    parser.add_argument(
        "--target-size",
        default="128MiB",
        metavar="SIZE",
        help="about the size of each rewritten file (e.g. 128MiB, 64M; default: 128MiB)",
    )
    parser.add_argument(
        "--retention-hours",
        default=str(DEFAULT_RETENTION_HOURS),
        metavar="H",
        help="delete files removed more than H hours ago (default: 168, so readers of older "
        "snapshots keep working for a week)",
    )
    parser.add_argument(
        "--no-vacuum", dest="vacuum", action="store_false", help="rewrite only, delete nothing"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run_compact(args: argparse.Namespace) -> int:
    """Compact, then print the report (a short table, or JSON)."""
    try:
        target_size = parse_size(args.target_size)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"--target-size: {exc}") from None
    retention = args.retention_hours.strip()
    if not retention.isdigit():
        raise ConfigError(
            f"--retention-hours: {args.retention_hours!r} is not a whole number of hours (e.g. 168)"
        )
    for day in args.dates or []:
        parse_date(day)
    try:
        report = compact(
            args.clean_uri,
            dates=args.dates,
            target_size=target_size,
            retention_hours=int(retention),
            vacuum=args.vacuum,
        )
    except CompactionLockedError as exc:
        print(f"logsieve compact: {exc}; nothing done, try again later", file=sys.stderr)
        return 1
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not args.quiet:
        print(format_report(report, every_partition=bool(args.dates)))
    return 0


def format_report(report: CompactionReport, *, every_partition: bool = False) -> str:
    """The rewritten partitions (or all asked for) as a small table, then the summary."""
    shown = [p for p in report.partitions if every_partition or p.action != "unchanged"]
    rows = [("date", "action", "files", "rows")]
    for p in shown:
        count = _rows(p.rows_before)
        if p.rows_after != p.rows_before:
            count += f" -> {_rows(p.rows_after)}"
        rows.append((p.date, p.action, f"{p.files_before} -> {p.files_after}", count))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        f"{d:<{widths[0]}}  {a:<{widths[1]}}  {f:>{widths[2]}}  {r:>{widths[3]}}"
        for d, a, f, r in rows
    ]
    if not shown:
        lines = []
    unchanged = len(report.partitions) - len(shown)
    if unchanged and not every_partition:
        lines.append(f"{unchanged} partitions already compact")
    lines.append(report.summary())
    return "\n".join(lines)


def _rows(rows: int | None) -> str:
    return "?" if rows is None else str(rows)


__all__ = ["add_compact_arguments", "format_report", "run_compact"]
