"""`logsieve simulate`: the whole pipeline once on a local moto server (logsieve.sim.simulate),
then its report as text or JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from logsieve.cli import plural
from logsieve.errors import ConfigError
from logsieve.sim.simulate import DEFAULT_DEMO_DIR, claim_demo_folder, simulate

#: SQS's own limit (12 hours); moto would accept more and the demo would just wait.
_MAX_VISIBILITY_TIMEOUT = 43200


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        "-o",
        default=DEFAULT_DEMO_DIR,
        metavar="DIR",
        help="the demo's folder: the clean table is copied to DIR/clean and the error records "
        "to DIR/errors, as `process --out DIR` lays them out; only a new, empty or earlier demo "
        f"folder is accepted (default: {DEFAULT_DEMO_DIR})",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=1,
        metavar="SECONDS",
        help="work queue visibility timeout: how soon a failed message is retried, 0-43200 "
        "(default: 1)",
    )
    parser.add_argument(
        "--wait-seconds",
        type=int,
        default=1,
        choices=range(1, 21),
        metavar="SECONDS",
        help="SQS long-polling wait per receive, 1-20 (default: 1)",
    )
    parser.add_argument(
        "--bulk-records",
        type=int,
        default=0,
        metavar="N",
        help="also upload a gzip object of N generated valid records (default: 0)",
    )


def run_simulate(args: argparse.Namespace) -> int:
    if not 0 <= args.visibility_timeout <= _MAX_VISIBILITY_TIMEOUT:
        raise ConfigError(
            f"--visibility-timeout {args.visibility_timeout}: SQS accepts 0 to "
            f"{_MAX_VISIBILITY_TIMEOUT} seconds (the demo waits it out twice; 1 is plenty)"
        )
    if args.bulk_records < 0:
        raise ConfigError("--bulk-records must not be negative")
    out = Path(args.out).expanduser()
    claim_demo_folder(out)  # before the demo, not after it: a wrong folder fails in a second
    report = simulate(
        out=out,
        visibility_timeout=args.visibility_timeout,
        wait_seconds=args.wait_seconds,
        bulk_records=args.bulk_records,
    )
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    elif not args.quiet:
        print(format_report(report))
    return 0 if not report["unexpected"] else 1


def format_report(report: dict[str, Any]) -> str:
    res = report["resources"]
    lines = [
        "logsieve simulate: S3 -> SQS -> handler -> Delta table/JSONL + CloudWatch + SNS "
        f"(moto server at {res['endpoint']}, {res['region']})",
        "",
        "Resources",
        f"  input bucket   s3://{res['input_bucket']}",
        f"  clean table    {res['clean_uri']} (Delta Lake)",
        f"  error records  {res['error_uri']}",
        f"  work queue     {res['queue_url']}",
        f"  dead letters   {res['dead_letter_queue_url']} "
        f"(after {res['max_receive_count']} receives)",
        f"  alerts         {res['alert_topic_arn']} -> {res['alert_queue_url']}",
        "",
        f"Uploaded {len(report['uploaded'])} objects",
    ]
    for item in report["uploaded"]:
        lines.append(f"  {item['object']}  ({item['bytes']} bytes: {item['description']})")
    worker = report["worker"]
    lines += [
        "",
        f"Worker: {worker['invocations']} handler invocations, long polling "
        f"{worker['wait_seconds']} s, visibility timeout {worker['visibility_timeout']} s, "
        f"drained in {worker['drain_seconds']:.1f} s",
    ]
    for entry in report["objects"]:
        lines += ["", f"  {entry['object']}"]
        for attempt in entry["attempts"]:
            if not attempt["ok"]:
                lines.append(f"    receive {attempt['receive']}: FAILED: {attempt['error']}")
        result = entry["result"]
        if result is not None:
            core = {k: result[k] for k in ("processed", "valid", "errors")}
            lines.append(f"    Lambda result: {core}")
            lines.append(
                f"    {result['bytes']} bytes in {result['seconds'] * 1000:.0f} ms"
                + _rate(result["processed"], result["seconds"])
            )
            if result["blank"] or result["error_counts"]:
                lines.append(
                    f"    blank lines {result['blank']}, errors by code {result['error_counts']}"
                )
            for day, count in entry.get("rows_by_date", {}).items():
                lines.append(
                    f"    clean  -> date={day}: {plural(count, 'row')} "
                    f"(table version {entry['table_version']})"
                )
            for key in entry.get("error_keys", []):
                lines.append(f"    errors -> {key}")
        alerts = sorted({a for attempt in entry["attempts"] for a in attempt["alerts"]})
        if alerts:
            lines.append(f"    alerts: {', '.join(alerts)}")
    keys = report["keys_written"]
    lines += [
        "",
        f"Keys written: {len(keys['clean'])} under {res['clean_uri']}, "
        f"{len(keys['errors'])} under {res['error_uri']}",
    ]
    lines += [f"  {k}" for k in keys["clean"] + keys["errors"]]
    metrics = report["metrics"]
    lines += [
        "",
        f"CloudWatch metrics (namespace {metrics['namespace']}, "
        "sums read back with get_metric_data)",
    ]
    for metric in metrics["values"]:
        dims = ", ".join(f"{k}={v}" for k, v in metric["dimensions"].items())
        value = metric["sum"]
        shown = f"{value:.1f}" if metric["name"] == "ProcessingTime" else f"{value:.0f}"
        lines.append(f"  {metric['name']:<18} {shown:>10}  {dims}")
    lines += ["", f"SNS alerts received ({len(report['alerts'])})"]
    for alert in report["alerts"]:
        lines.append(f"  * {alert['subject']}")
        lines += [f"      {text}" for text in alert["message"].splitlines()]
    lines += ["", f"Dead-letter queue ({plural(len(report['dead_letters']), 'message')})"]
    for letter in report["dead_letters"]:
        what = ", ".join(letter["objects"]) or letter["message_id"]
        lines.append(f"  {what} (received {letter['receives']} times)")
    copy = report["clean_copy"]
    lines += [
        "",
        f"Clean table (version {copy['version']}) copied to {copy['directory']}: "
        f"{plural(len(copy['files']), 'file')}, {copy['rows']} rows; "
        f"logins today ({report['today']}): {copy['logins_today']} by "
        f"{len(copy['users_logged_in_today'])} users",
        f"Error records copied to {report['errors_copy']['directory']}: "
        f"{plural(len(report['errors_copy']['files']), 'file')}",
        f"  serve it: logsieve serve --clean {copy['directory']}",
    ]
    if report["unexpected"]:
        lines += ["", "UNEXPECTED:"] + [f"  {p}" for p in report["unexpected"]]
    lines += ["", f"Done in {report['seconds']:.1f} s."]
    return "\n".join(lines)


def _rate(records: int, seconds: float) -> str:
    """Throughput, only where it means something (not for a dozen lines)."""
    return f" ({records / seconds:,.0f} records/s)" if seconds > 0 and records >= 1000 else ""


__all__ = ["add_simulate_arguments", "format_report", "run_simulate"]
