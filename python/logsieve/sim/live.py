"""The whole pipeline live on one machine, until stopped (`logsieve up`, in logsieve.cli.up).

moto's HTTP server stands in for AWS on loopback, so any S3 client (boto3, the AWS CLI) can upload
to the input bucket; S3 notifies SQS, a worker thread drains the queue through the same handler a
Lambda would run, and the HTTP API reads the clean bucket, noticing new files within about two
seconds. A compaction thread rewrites the clean table's small files every `--compact-every`
seconds, as the scheduled Lambda does on AWS. Everything runs in this one process; SIGINT or
SIGTERM stops it all in order.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from logsieve.api.app import create_app
from logsieve.api.serving import BackgroundServer, bind_socket, url_host

if TYPE_CHECKING:
    from logsieve.aws.pipeline import HandlerOutcome
    from logsieve.sim.infra import Resources
    from logsieve.storage.compact import CompactionReport

logger = logging.getLogger("logsieve.live")

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


def start_moto(host: str, port: int) -> Any:
    """moto's threaded HTTP server; a busy port is checked first (moto would hang on it)."""
    from logsieve.extras import require

    moto_server = require("moto.server", "sim")
    if port != 0:
        bind_socket(host, port).close()
    server = moto_server.ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    return server


def serve_pipeline(
    moto: Any,
    stop: threading.Event,
    *,
    host: str,
    port: int,
    log_level: str,
    compact_every: float,
    on_live: Callable[[Endpoints, Resources], None],
    on_outcome: Callable[[HandlerOutcome], None],
    output: Callable[[str], None],
) -> int:
    """Provision moto's resources, then run the worker, the HTTP API and the compactor until
    `stop` is set; 1 if a component stopped by itself. `on_live` is told where they are,
    `on_outcome` of every object the worker handled, `output` what the compactor did."""
    from logsieve.aws.clients import Clients
    from logsieve.aws.pipeline import Pipeline
    from logsieve.aws.worker import Worker
    from logsieve.sim.infra import prepare_local_environment, provision

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
        on_outcome=on_outcome,
    )
    worker_stop = threading.Event()
    worker_thread = threading.Thread(
        target=worker.run_forever, args=(worker_stop,), name="logsieve-worker", daemon=True
    )
    from logsieve.api.dashboard import QueueProbe

    queues = {"work": resources.queue_url, "dead-letter": resources.dead_letter_queue_url}
    app = create_app(
        resources.clean_uri, errors_uri=resources.error_uri, queues=QueueProbe(clients.sqs, queues)
    )
    api = BackgroundServer(app, host, port, log_level=log_level)
    compactor = Compactor(resources.clean_uri, compact_every, s3_client=clients.s3, output=output)
    worker_thread.start()
    compactor.start()
    try:
        with api:
            on_live(Endpoints(aws_url, api.url), resources)
            while not stop.wait(0.2):
                if not api.alive or not worker_thread.is_alive():
                    logger.error("logsieve up: a component stopped unexpectedly")
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
        self.output = output or logger.info
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
        from logsieve.storage.compact import (
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
