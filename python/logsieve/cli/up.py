"""`logsieve up`: the whole pipeline live on one machine (logsieve.sim.live), until Ctrl-C.

Console lines (objects processed, compactions, the banner) go to stdout, timestamped or as JSON;
log lines to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any

from logsieve.api.serving import bind_socket, port_number, shutdown_signals
from logsieve.cli import log_level
from logsieve.cli.serve import LOG_LEVELS
from logsieve.errors import ConfigError
from logsieve.sim.live import COMPACT_EVERY_SECONDS, Endpoints, serve_pipeline, start_moto

if TYPE_CHECKING:
    from logsieve.aws.pipeline import HandlerOutcome
    from logsieve.sim.infra import Resources


def add_up_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address moto and the API listen on")
    parser.add_argument(
        "--moto-port",
        type=port_number,
        default=5000,
        metavar="PORT",
        help="port of the S3/SQS/SNS endpoint (0: free)",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=8000,
        metavar="PORT",
        help="port of the HTTP API (0: free)",
    )
    parser.add_argument(
        "--log-level",
        default=None,
        choices=LOG_LEVELS,
        help="log level of the worker, handler and web server (default: warning; -v info, "
        "-vv debug, -q error)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="console lines as text with timestamps, or one JSON object per line",
    )
    parser.add_argument(
        "--compact-every",
        type=seconds,
        default=COMPACT_EVERY_SECONDS,
        metavar="SECONDS",
        help="compact the clean table this often (default %(default)s; 0: never)",
    )


def seconds(text: str) -> float:
    """argparse type for an interval: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def run_up(args: argparse.Namespace) -> int:
    """Start moto, provision, run the worker and the API; stop everything on SIGINT/SIGTERM."""
    level = _configure_logging(args)
    args.log_level = logging.getLevelName(level).lower()
    if args.port != 0 and args.port == args.moto_port:
        raise ConfigError(f"--port and --moto-port are both {args.port}: they need two ports")
    if args.port != 0:
        _bind_or_explain("--port", args.host, args.port).close()  # before moto starts
    with shutdown_signals() as stop:
        moto = _start_moto_or_explain(args.host, args.moto_port)
        try:
            return serve_pipeline(
                moto,
                stop,
                host=args.host,
                port=args.port,
                log_level=args.log_level,
                compact_every=args.compact_every,
                on_live=lambda endpoints, resources: _announce(endpoints, resources, args),
                on_outcome=report_outcome,
                output=_print_line,
            )
        finally:
            moto.stop()
            if not args.quiet:
                console.info("logsieve up: stopped")


#: The console lines of `logsieve up` (objects processed, compactions, the banner): on stdout,
#: with timestamps, always at INFO unless -q.
console = logging.getLogger("logsieve.up")


def _configure_logging(args: argparse.Namespace) -> int:
    """Console lines on stdout and log lines on stderr, both timestamped (or JSON); returns
    the log level chosen by --log-level, else -v/-q."""
    level = logging.getLevelName(args.log_level.upper()) if args.log_level else log_level(args)
    formatter: logging.Formatter = (
        JsonLogFormatter() if args.log_format == "json" else TextLogFormatter()
    )
    errors = logging.StreamHandler(sys.stderr)
    errors.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [errors]
    root.setLevel(level)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request otherwise
    out = logging.StreamHandler(sys.stdout)
    out.setFormatter(formatter)
    console.handlers = [out]
    console.setLevel(logging.WARNING if args.quiet else logging.INFO)
    console.propagate = False
    return level


class TextLogFormatter(logging.Formatter):
    """`2025-08-20T10:15:02.123Z processed s3://...`: UTC time, then the line (level if not
    INFO, logger if not the console's)."""

    def __init__(self) -> None:
        super().__init__()

    def format(self, record: logging.LogRecord) -> str:
        from datetime import datetime, timezone

        stamp = datetime.fromtimestamp(record.created, timezone.utc).isoformat(
            timespec="milliseconds"
        )
        parts = [stamp.replace("+00:00", "Z")]
        if record.levelno != logging.INFO:
            parts.append(record.levelname)
        if record.name != console.name:
            parts.append(f"{record.name}:")
        text = " ".join(parts) + " " + record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonLogFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message (and any `fields` given)."""

    def format(self, record: logging.LogRecord) -> str:
        import json
        from datetime import datetime, timezone

        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _bind_or_explain(option: str, host: str, port: int) -> Any:
    """Bind `port`, or a ConfigError naming the option that chooses another one."""
    try:
        return bind_socket(host, port)
    except ConfigError as exc:
        raise ConfigError(
            f"{option} {port}: {exc} (choose another with {option} PORT, or 0 for a free one)"
        ) from None


def _start_moto_or_explain(host: str, port: int) -> Any:
    if port != 0:
        _bind_or_explain("--moto-port", host, port).close()
    return start_moto(host, port)


def _print_line(line: str) -> None:
    console.info(line)


def report_outcome(outcome: HandlerOutcome) -> None:
    """One line per object the worker handled, so uploads can be followed on the console."""
    for obj in outcome.objects:
        if obj.result is not None:
            r = obj.result
            console.info(
                f"processed {obj.ref.uri}: {r.valid} valid, {r.errors} errors, {r.blank} blank",
                extra={"fields": {"object": obj.ref.uri, **r.summary()}},
            )
        else:
            retry = "gave up" if obj.final else "will retry"
            console.warning(
                f"failed {obj.ref.uri}: {obj.error} ({retry})",
                extra={"fields": {"object": obj.ref.uri, "error": obj.error, "final": obj.final}},
            )


#: Said at start: moto is an in-memory fake, and people expect a pipeline to keep its data.
IN_MEMORY_NOTE = (
    "moto keeps the buckets, queues and the table in memory: all of it is gone when this stops"
)


def _announce(endpoints: Endpoints, resources: Resources, args: argparse.Namespace) -> None:
    """The banner: as text (a block to read), or one JSON line with the same facts."""
    if args.quiet:
        return
    if args.log_format == "json":
        console.info(
            "the pipeline is live",
            extra={
                "fields": {
                    "aws_endpoint": endpoints.aws,
                    "region": resources.region,
                    "api": endpoints.api,
                    "input_bucket": f"s3://{resources.names.input_bucket}/",
                    "clean_uri": resources.clean_uri,
                    "error_uri": resources.error_uri,
                    "note": IN_MEMORY_NOTE,
                }
            },
        )
        return
    print(instructions(endpoints, resources), flush=True)


def instructions(endpoints: Endpoints, resources: Resources) -> str:
    """What a user needs to upload a file and ask the API about it."""
    names = resources.names
    bucket = names.input_bucket
    creds = "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing"
    return "\n".join(
        [
            "logsieve up: the pipeline is live (Ctrl-C stops it)",
            f"  note: {IN_MEMORY_NOTE} (Ctrl-C)",
            f"  AWS endpoint (moto): {endpoints.aws}  region {resources.region}, any credentials",
            f"  HTTP API:            {endpoints.api}  (docs: {endpoints.api}/docs)",
            f"  input bucket:        s3://{bucket}/",
            f"  clean table:         {resources.clean_uri}/ (Delta Lake, by date)",
            f"  errors:              {resources.error_uri}/date=YYYY-MM-DD/",
            "",
            "upload with the AWS CLI:",
            f"  {creds} AWS_DEFAULT_REGION={resources.region} \\",
            f"    aws --endpoint-url {endpoints.aws} s3 cp logs.jsonl s3://{bucket}/logs.jsonl",
            "upload with boto3:",
            f"  python -c \"import boto3; boto3.client('s3', endpoint_url='{endpoints.aws}', "
            f"region_name='{resources.region}', aws_access_key_id='testing', "
            f"aws_secret_access_key='testing').upload_file('logs.jsonl', '{bucket}', "
            "'logs.jsonl')\"",
            "query:",
            f"  curl '{endpoints.api}/logins_today'",
            f"  curl '{endpoints.api}/logins_today?date=YYYY-MM-DD&tz=Europe/Berlin'",
        ]
    )


__all__ = ["add_up_arguments", "instructions", "run_up"]
