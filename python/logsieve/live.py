"""`logsieve up`: the whole pipeline live on one machine, until Ctrl-C.

moto's HTTP server stands in for AWS on loopback, so any S3 client (boto3, the AWS CLI) can upload
to the input bucket; S3 notifies SQS, a worker thread drains the queue through the same handler a
Lambda would run, and the HTTP API reads the clean bucket, noticing new files within about two
seconds. A compaction thread rewrites the clean table's small files every `--compact-every`
seconds, as the scheduled Lambda does on AWS. Everything runs in this one process; SIGINT or
SIGTERM stops it all in order.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from logsieve.api import (
    LOG_LEVELS,
    BackgroundServer,
    bind_socket,
    create_app,
    port_number,
    shutdown_signals,
    url_host,
)
from logsieve.errors import ConfigError

if TYPE_CHECKING:
    from logsieve.aws import HandlerOutcome
    from logsieve.compact import CompactionReport
    from logsieve.infra import Resources

#: Seconds one SQS long poll waits; also the longest a stop waits for the worker.
_WORKER_WAIT_SECONDS = 1
#: Default seconds between compactions of the clean table.
COMPACT_EVERY_SECONDS = 60
#: How long a stop waits for a compaction under way. Not longer: a compaction cut short commits
#: nothing (each partition is one atomic commit) and leaves only unreferenced files behind.
_COMPACT_STOP_SECONDS = 5


@dataclass(frozen=True)
class Endpoints:
    """Where the running pipeline can be reached."""

    aws: str
    api: str


def add_up_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address moto and the API listen on")
    parser.add_argument(
        "--moto-port",
        type=port_number,
        default=5000,
        help="port of the S3/SQS/SNS endpoint (0: free)",
    )
    parser.add_argument(
        "--port", type=port_number, default=8000, help="port of the HTTP API (0: free)"
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=LOG_LEVELS,
        help="log level of the worker, handler and web server",
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
    logging.basicConfig(level=args.log_level.upper(), format="%(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request otherwise
    if args.port != 0 and args.port == args.moto_port:
        raise ConfigError(f"--port and --moto-port are both {args.port}: they need two ports")
    if args.port != 0:
        bind_socket(args.host, args.port).close()  # a busy API port fails before moto starts
    with shutdown_signals() as stop:
        moto = start_moto(args.host, args.moto_port)
        try:
            return _serve_pipeline(moto, args, stop)
        finally:
            moto.stop()
            print("logsieve up: stopped", flush=True)


def start_moto(host: str, port: int) -> Any:
    """moto's threaded HTTP server; a busy port is checked first (moto would hang on it)."""
    from logsieve.extras import require

    moto_server = require("moto.server", "sim")
    if port != 0:
        bind_socket(host, port).close()
    server = moto_server.ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    return server


def _serve_pipeline(moto: Any, args: argparse.Namespace, stop: threading.Event) -> int:
    from logsieve.aws import Pipeline
    from logsieve.infra import Clients, prepare_local_environment, provision
    from logsieve.worker import Worker

    moto_host, moto_port = moto.get_host_and_port()
    aws_url = f"http://{url_host(moto_host)}:{moto_port}"
    region = prepare_local_environment()
    # Everything in this process (boto3, pyarrow's S3 filesystem) must talk to moto, never AWS:
    # a service-specific AWS_ENDPOINT_URL_S3 (or _SQS...) from the shell would win over it.
    for name in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL_")]:
        del os.environ[name]
    os.environ["AWS_ENDPOINT_URL"] = aws_url
    clients = Clients.create(endpoint_url=aws_url, region_name=region)
    resources = provision(clients)
    pipeline = Pipeline.from_clients(resources.handler_config(), clients)
    worker = Worker(
        clients.sqs,
        resources.queue_url,
        pipeline,
        queue_arn=resources.queue_arn,
        wait_seconds=_WORKER_WAIT_SECONDS,
        on_outcome=report_outcome,
    )
    worker_stop = threading.Event()
    worker_thread = threading.Thread(
        target=worker.run_forever, args=(worker_stop,), name="logsieve-worker", daemon=True
    )
    from logsieve.dashboard import QueueProbe

    queues = {"work": resources.queue_url, "dead-letter": resources.dead_letter_queue_url}
    app = create_app(
        resources.clean_uri, errors_uri=resources.error_uri, queues=QueueProbe(clients.sqs, queues)
    )
    api = BackgroundServer(app, args.host, args.port, log_level=args.log_level)
    compactor = Compactor(resources.clean_uri, args.compact_every, s3_client=clients.s3)
    worker_thread.start()
    compactor.start()
    try:
        with api:
            print(instructions(Endpoints(aws_url, api.url), resources), flush=True)
            while not stop.wait(0.2):
                if not api.alive or not worker_thread.is_alive():
                    print("logsieve up: a component stopped unexpectedly", file=sys.stderr)
                    return 1
    finally:
        worker_stop.set()
        compactor.stop()
        worker_thread.join(_WORKER_WAIT_SECONDS + 30)
        compactor.join(_COMPACT_STOP_SECONDS)
    return 0


class Compactor:
    """Compacts the clean table every `every` seconds on a daemon thread until `stop()`.

    One console line per run that rewrote or deleted something; a failed run (moto busy) is one
    line too, and the next run tries again. Before the first upload there is no table, and a
    `logsieve compact` run by hand may hold the table's compaction lock: neither is worth a
    line.
    """

    def __init__(
        self,
        clean_uri: str,
        every: float,
        *,
        s3_client: Any = None,
        retention_hours: int | None = None,
        output: Callable[[str], None] | None = None,
    ) -> None:
        self.clean_uri = clean_uri
        self.every = every
        self.s3_client = s3_client
        self.retention_hours = retention_hours
        self.output = output or _print_line
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="logsieve-compact", daemon=True)

    def start(self) -> None:
        if self.every > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run_once(self) -> CompactionReport | None:
        """One compaction; its report, or None when there is no table or it failed."""
        from logsieve.compact import (
            DEFAULT_RETENTION_HOURS,
            CompactionLockedError,
            NoTableError,
            compact,
        )

        retention = self.retention_hours
        try:
            report = compact(
                self.clean_uri,
                s3_client=self.s3_client,
                retention_hours=DEFAULT_RETENTION_HOURS if retention is None else retention,
            )
        except (NoTableError, CompactionLockedError):  # nothing yet, or a manual run is on it
            return None
        except Exception as exc:
            if not self._stop.is_set():  # moto going away under a stop is no news
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                self.output(f"compaction failed: {first} (next try in {self.every:g} s)")
            return None
        finally:
            self.runs += 1
        if report.changed:
            self.output(f"compacted {report.summary()}")
        return report

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.run_once()


def _print_line(line: str) -> None:
    print(line, flush=True)


def report_outcome(outcome: HandlerOutcome) -> None:
    """One line per object the worker handled, so uploads can be followed on the console."""
    for obj in outcome.objects:
        if obj.result is not None:
            r = obj.result
            print(
                f"processed {obj.ref.uri}: {r.valid} valid, {r.errors} errors, {r.blank} blank",
                flush=True,
            )
        else:
            retry = "gave up" if obj.final else "will retry"
            print(f"failed {obj.ref.uri}: {obj.error} ({retry})", flush=True)


def instructions(endpoints: Endpoints, resources: Resources) -> str:
    """What a user needs to upload a file and ask the API about it."""
    names = resources.names
    bucket = names.input_bucket
    creds = "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing"
    return "\n".join(
        [
            "logsieve up: the pipeline is live (Ctrl-C stops it)",
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
