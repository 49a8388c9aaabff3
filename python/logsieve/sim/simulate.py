"""The whole pipeline once, on a moto server, as a report (`logsieve simulate`).

S3 input bucket -> ObjectCreated notification -> SQS work queue -> worker (long polling) ->
handler -> clean Delta table + error JSONL in S3, CloudWatch metrics, SNS alerts (read back from
a subscribed queue) and a dead-letter queue for the object that can never be read. The clean
table is then copied to a local directory for `logsieve serve`.

moto runs as its threaded HTTP server on 127.0.0.1 (a free port), not in-process: delta-rs makes
its own HTTP requests, which an in-process mock cannot see.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from logsieve.aws.clients import Clients
    from logsieve.aws.pipeline import HandlerOutcome
    from logsieve.sim.infra import Resources
    from logsieve.sim.samples import SampleObject


#: The demo's own folder: never a user's data folder (`process --out` writes `data`).
DEFAULT_DEMO_DIR = "logsieve-demo"
#: The file that marks a folder as the demo's: only such a folder (or an empty one) is replaced.
DEMO_MARKER = ".logsieve-demo"


def claim_demo_folder(out: Path) -> None:
    """Make `out` the demo's folder, or refuse (ConfigError) if it holds anything else.

    The demo replaces `out/clean` and `out/errors` on every run, so a folder with a user's
    data (a `process --out` folder, say) must never become one: only a new or empty directory,
    or one an earlier demo marked, is accepted.
    """
    from logsieve.errors import ConfigError

    try:
        out.mkdir(parents=True, exist_ok=True)
        marked = (out / DEMO_MARKER).is_file()
        if not marked and any(out.iterdir()):
            raise ConfigError(
                f"--out {out}: the directory holds files `logsieve simulate` did not write; "
                "the demo replaces DIR/clean and DIR/errors, so it only uses a new or empty "
                f"directory, or an earlier demo's (default: {DEFAULT_DEMO_DIR})"
            )
        if not marked:
            (out / DEMO_MARKER).write_text(
                "Written by `logsieve simulate`: its clean table and error records. "
                "Each demo run replaces them; delete the folder when done.\n",
                encoding="utf-8",
            )
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create the directory: {exc.strerror}") from exc


@dataclass
class _Run:
    clients: Clients
    resources: Resources
    namespace: str
    started: datetime
    today: date


def simulate(
    *,
    out: Path,
    visibility_timeout: int = 1,
    wait_seconds: int = 1,
    bulk_records: int = 0,
    today: date | None = None,
) -> dict[str, Any]:
    """Run the demo and return the report as a JSON-ready dict."""
    from logsieve.aws.clients import Clients
    from logsieve.sim.infra import ResourceNames, prepare_local_environment, provision

    region = prepare_local_environment()
    from logsieve.aws.pipeline import Pipeline
    from logsieve.aws.worker import Worker
    from logsieve.sim.live import start_moto
    from logsieve.sim.samples import sample_objects, utc_today

    clock = time.perf_counter()
    today = today or utc_today()
    with _no_endpoint_override(), _moto_server(start_moto) as endpoint:
        clients = Clients.create(endpoint_url=endpoint, region_name=region)
        resources = provision(clients, ResourceNames(visibility_timeout=visibility_timeout))
        config = resources.handler_config()
        run = _Run(clients, resources, config.metrics_namespace, datetime.now(timezone.utc), today)
        samples = sample_objects(today, bulk_records=bulk_records)
        uploaded = _upload(clients, resources, samples)
        worker = Worker(
            clients.sqs,
            resources.queue_url,
            Pipeline.from_clients(config, clients),
            queue_arn=resources.queue_arn,
            wait_seconds=wait_seconds,
        )
        drain_clock = time.perf_counter()
        outcomes = worker.drain_until_idle(timeout=60.0 + 5 * visibility_timeout)
        drain_seconds = time.perf_counter() - drain_clock
        report = _collect(run, samples, outcomes, out)
    report["uploaded"] = uploaded
    report["resources"]["endpoint"] = endpoint
    report["worker"] = {
        "invocations": len(outcomes),
        "wait_seconds": wait_seconds,
        "visibility_timeout": visibility_timeout,
        "drain_seconds": round(drain_seconds, 3),
    }
    report["seconds"] = round(time.perf_counter() - clock, 3)
    return report


@contextlib.contextmanager
def _moto_server(start_moto: Any) -> Iterator[str]:
    """moto's server on a free port of 127.0.0.1 for the demo's lifetime; yields its URL."""
    import logging
    import urllib.request

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request otherwise
    server = start_moto("127.0.0.1", 0)
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        # moto's backends are per process, not per server: a second demo in one process would
        # find the first one's buckets, table and metrics.
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
        yield url
    finally:
        server.stop()


@contextlib.contextmanager
def _no_endpoint_override() -> Iterator[None]:
    """AWS_ENDPOINT_URL_* in the shell would send some services elsewhere: hide them."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_ENDPOINT_URL")}
    for name in saved:
        del os.environ[name]
    try:
        yield
    finally:
        os.environ.update(saved)


def _upload(
    clients: Clients, resources: Resources, samples: list[SampleObject]
) -> list[dict[str, Any]]:
    uploaded = []
    for sample in samples:
        clients.s3.put_object(Bucket=resources.names.input_bucket, Key=sample.key, Body=sample.body)
        uploaded.append(
            {
                "object": f"s3://{resources.names.input_bucket}/{sample.key}",
                "bytes": len(sample.body),
                "description": sample.description,
            }
        )
    return uploaded


def _collect(
    run: _Run, samples: list[SampleObject], outcomes: list[HandlerOutcome], out: Path
) -> dict[str, Any]:
    from logsieve.sim.infra import list_keys, read_alerts, read_dead_letters, read_metrics

    clients, res = run.clients, run.resources
    objects = _object_reports(res, samples, outcomes)
    dead_letters = [_dead_letter(letter) for letter in read_dead_letters(clients, res)]
    unexpected = _unexpected(objects, dead_letters)
    copied = _copy_clean(clients, res, objects, out / "clean")
    errors_copied = _copy_errors(clients, res, out / "errors")
    return {
        "resources": {
            "region": res.region,
            "input_bucket": res.names.input_bucket,
            "clean_uri": res.clean_uri,
            "error_uri": res.error_uri,
            "queue_url": res.queue_url,
            "dead_letter_queue_url": res.dead_letter_queue_url,
            "max_receive_count": res.names.max_receive_count,
            "alert_topic_arn": res.alert_topic_arn,
            "alert_queue_url": res.alert_queue_url,
        },
        "objects": objects,
        "keys_written": {
            "clean": list_keys(clients.s3, res.names.clean_bucket, res.names.clean_prefix + "/"),
            "errors": list_keys(clients.s3, res.names.error_bucket, res.names.error_prefix + "/"),
        },
        "metrics": {
            "namespace": run.namespace,
            "values": read_metrics(clients.cloudwatch, run.namespace, since=run.started),
        },
        "alerts": read_alerts(clients, res),
        "dead_letters": dead_letters,
        "clean_copy": {**copied, **_dataset_summary(Path(copied["directory"]), run.today)},
        "errors_copy": errors_copied,
        "today": run.today.isoformat(),
        "unexpected": unexpected,
    }


def _object_reports(
    res: Resources, samples: list[SampleObject], outcomes: list[HandlerOutcome]
) -> list[dict[str, Any]]:
    """Per uploaded object, in upload order: every attempt, and the final result."""
    by_uri: dict[str, dict[str, Any]] = {}
    for sample in samples:
        uri = f"s3://{res.names.input_bucket}/{sample.key}"
        by_uri[uri] = {
            "object": uri,
            "description": sample.description,
            "expected": {**sample.expected(), "fails": sample.always_fails},
            "attempts": [],
            "result": None,
        }
    for outcome in outcomes:
        for delivery in outcome.deliveries:
            for obj in delivery.objects:
                entry = by_uri.setdefault(
                    obj.ref.uri, {"object": obj.ref.uri, "attempts": [], "result": None}
                )
                attempt: dict[str, Any] = {
                    "receive": delivery.delivery.receive_count,
                    "ok": obj.ok,
                }
                if obj.ok and obj.result is not None:
                    summary = obj.result.summary()
                    entry["result"] = {
                        k: summary[k]
                        for k in (
                            "processed",
                            "valid",
                            "errors",
                            "blank",
                            "bytes",
                            "error_counts",
                            "seconds",
                        )
                    }
                    entry["rows_by_date"] = summary["rows_by_date"]
                    entry["table_version"] = summary["table_version"]
                    entry["error_keys"] = summary["error_keys"]
                else:
                    attempt["error"] = obj.error
                attempt["alerts"] = list(obj.alerts)
                entry["attempts"].append(attempt)
    return list(by_uri.values())


def _dead_letter(letter: dict[str, Any]) -> dict[str, Any]:
    from logsieve.aws.events import objects_in
    from logsieve.errors import EventError

    try:
        objects = [ref.uri for ref in objects_in(json.loads(letter["body"]))]
    except (ValueError, EventError):
        objects = []
    # Reading the message to report it counted as one more receive.
    return {
        "message_id": letter["message_id"],
        "objects": objects,
        "receives": max(letter["receive_count"] - 1, 0),
    }


def _unexpected(objects: list[dict[str, Any]], dead_letters: list[dict[str, Any]]) -> list[str]:
    """What differs from what the samples promise; empty when the demo went as designed."""
    problems = []
    in_dlq = {uri for letter in dead_letters for uri in letter["objects"]}
    for entry in objects:
        expected = entry.get("expected")
        if expected is None:
            continue
        uri = entry["object"]
        if expected["fails"]:
            if uri not in in_dlq:
                problems.append(f"{uri}: expected to end in the dead-letter queue, did not")
            continue
        result = entry["result"]
        if result is None:
            problems.append(f"{uri}: was not processed")
            continue
        for name in ("processed", "valid", "errors", "blank", "error_counts"):
            if result[name] != expected[name]:
                problems.append(f"{uri}: {name} {result[name]!r}, expected {expected[name]!r}")
    return problems


def _copy_clean(
    clients: Clients, res: Resources, objects: list[dict[str, Any]], out: Path
) -> dict[str, Any]:
    """Copy the clean table's latest snapshot to a local Delta table at `out` (replacing it)."""
    from deltalake import write_deltalake

    from logsieve.storage import table

    out = out.expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    snapshot = table.open_table(res.clean_uri, clients.s3)
    rows = (
        snapshot.to_pyarrow_table() if snapshot is not None else table.table_schema().empty_table()
    )
    write_deltalake(
        str(out),
        rows,
        partition_by=[table.PARTITION_COLUMN],
        mode="overwrite",
        schema_mode="overwrite",
        writer_properties=table.writer_properties(),
    )
    copied = table.open_table(str(out))
    assert copied is not None
    files = sorted(copied.file_uris())
    return {
        "directory": str(out),
        "files": [str(Path(f).relative_to(out)) for f in files],
        "version": snapshot.version() if snapshot is not None else None,
    }


def _copy_errors(clients: Clients, res: Resources, out: Path) -> dict[str, Any]:
    """Copy the error records (`date=.../*.jsonl`, not the ledgers) to `out`, replacing it."""
    import shutil

    from logsieve.sim.infra import download_prefix

    out = out.expanduser().absolute()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    files = []
    for path in download_prefix(clients.s3, res.names.error_bucket, res.names.error_prefix, out):
        if path.parent.name.startswith("date="):
            files.append(path)
        else:  # a ledger: it describes the S3 table's versions, not the local copy's
            path.unlink()
    for leftover in sorted(out.rglob("*"), reverse=True):  # the ledgers' emptied folders
        if leftover.is_dir() and not any(leftover.iterdir()):
            leftover.rmdir()
    return {"directory": str(out), "files": sorted(str(p.relative_to(out)) for p in files)}


def _dataset_summary(directory: Path, today: date) -> dict[str, Any]:
    """Rows in the local copy and today's logins, read back from the Delta table."""
    import pyarrow.compute as pc

    from logsieve.storage import table as clean_table

    snapshot = clean_table.open_table(str(directory))
    if snapshot is None:
        return {"rows": 0, "logins_today": 0, "users_logged_in_today": []}
    rows = snapshot.to_pyarrow_table(columns=["date", "user_id", "action"])
    mask = pc.and_(pc.equal(rows["action"], "login"), pc.equal(rows["date"], today.isoformat()))
    logins = rows.filter(mask)
    return {
        "rows": rows.num_rows,
        "logins_today": logins.num_rows,
        "users_logged_in_today": sorted(set(logins["user_id"].to_pylist())),
    }
