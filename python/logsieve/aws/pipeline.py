"""The Lambda-style handler: S3 object notifications in, clean Delta table rows + error JSONL out.

`handler(event, context)` is the Lambda entry point. It accepts every shape in which S3 announces
a new object (a direct S3 notification, an SQS message carrying one, an SNS notification, SNS
delivered through SQS, an EventBridge "Object Created" event), processes each object with
`logsieve.storage.ingest.ingest`, publishes CloudWatch metrics, and alerts through SNS when an
object's error rate is too high or the object fails for good.

Retries are safe because each commit replaces the object's earlier rows and records the version
(ETag) it holds: a repeated notification for the same version commits nothing, not even metrics
or alerts, also when two deliveries race (the loser's commit conflicts and its retry finds the
version stored), and an object replaced while it was being ingested is ingested again until the
table holds its latest version. SQS batches report only the failed messages in
`batchItemFailures`, so only those come back; on the last allowed receive an alert goes out
before SQS moves the message to the dead-letter queue.

Configuration (environment variables, read at every invocation, checked up front):
LOGSIEVE_CLEAN_URI, LOGSIEVE_ERROR_URI (`s3://bucket/prefix` or a directory),
LOGSIEVE_ALERT_TOPIC_ARN, LOGSIEVE_ERROR_RATE_ALERT (0..1, default 0.1),
LOGSIEVE_METRICS_NAMESPACE (default LogSieve), LOGSIEVE_MAX_RECEIVE_COUNT (default 3, the work
queue's redrive maxReceiveCount).
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from logsieve import settings
from logsieve.aws.config import HandlerConfig
from logsieve.aws.events import Delivery, ObjectRef, deliveries, is_sqs_batch
from logsieve.aws.logs import _expected_failure, describe_failure, log_line, logger
from logsieve.aws.notifications import (
    ALERT_HIGH_ERROR_RATE,
    ALERT_OBJECT_FAILED,
    _datum,
    alert_subject,
    high_error_rate_message,
    object_failed_message,
)
from logsieve.errors import ConcurrentIngestError, ConfigError, OutputError
from logsieve.memory import use_lean_memory

if TYPE_CHECKING:
    from logsieve.aws.clients import Clients
    from logsieve.storage.results import IngestResult


#: Runs of one object lost to a concurrent run or to a newer version before it fails.
_INGEST_ATTEMPTS = 8


@dataclass
class ObjectOutcome:
    """What happened to one object in this invocation."""

    ref: ObjectRef
    result: IngestResult | None = None
    error: str | None = None
    final: bool = False
    alerts: list[str] = field(default_factory=list)
    #: The object's current version was ingested before; `result` is what that run recorded.
    already_ingested: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> dict[str, Any]:
        if self.result is not None:
            summary = {"object": self.ref.uri, **self.result.summary(), "alerts": list(self.alerts)}
            return {**summary, "already_ingested": True} if self.already_ingested else summary
        return {
            "object": self.ref.uri,
            "failed": True,
            "error": self.error,
            "final": self.final,
            "alerts": list(self.alerts),
        }


@dataclass
class DeliveryOutcome:
    delivery: Delivery
    objects: list[ObjectOutcome]
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and all(o.ok for o in self.objects)


@dataclass
class HandlerOutcome:
    """Everything one invocation did; `response()` is what the Lambda returns."""

    sqs: bool
    deliveries: list[DeliveryOutcome]

    @property
    def objects(self) -> list[ObjectOutcome]:
        """Each object once, even when several deliveries announced it."""
        unique = {id(o): o for d in self.deliveries for o in d.objects}
        return list(unique.values())

    @property
    def failed_message_ids(self) -> list[str]:
        return [d.delivery.message_id or "" for d in self.deliveries if not d.ok]

    def response(self) -> dict[str, Any]:
        if self.sqs:
            return {"batchItemFailures": [{"itemIdentifier": i} for i in self.failed_message_ids]}
        results = [o.result for o in self.objects if o.result is not None]
        totals = {
            name: sum(getattr(r, name) for r in results)
            for name in ("processed", "valid", "errors", "blank", "bytes")
        }
        return {
            **totals,
            "objects": [o.summary() for o in self.objects if o.ok],
            "failed": [o.summary() for o in self.objects if not o.ok],
        }


class Pipeline:
    """The handler's work with explicit configuration and clients (shared, created once)."""

    def __init__(self, config: HandlerConfig, *, s3: Any, cloudwatch: Any, sns: Any) -> None:
        self.config = config
        self.s3 = s3
        self.cloudwatch = cloudwatch
        self.sns = sns

    @classmethod
    def from_clients(cls, config: HandlerConfig, clients: Clients) -> Pipeline:
        return cls(config, s3=clients.s3, cloudwatch=clients.cloudwatch, sns=clients.sns)

    def handle(self, event: Any, context: Any = None) -> HandlerOutcome:
        """Process every object an event names; failures are recorded, never raised."""
        request_id = getattr(context, "aws_request_id", None)
        sqs = is_sqs_batch(event)
        done: dict[tuple[str, str], ObjectOutcome] = {}
        outcomes = []
        for delivery in deliveries(event):
            if delivery.problem is not None:
                outcomes.append(self._unreadable(delivery, request_id))
                continue
            final = not sqs or delivery.receive_count >= self.config.max_receive_count
            objects = []
            for ref in delivery.objects:
                identity = (ref.bucket, ref.key)
                seen = done.get(identity)  # e.g. the two events moto sends for a multipart upload
                # A failure on an earlier receive does not stand for this one's last receive.
                if seen is None or (final and not seen.ok and not seen.final):
                    done[identity] = self.process_object(
                        ref,
                        final=final,
                        attempt=delivery.receive_count,
                        request_id=request_id,
                        via_sqs=sqs,
                    )
                objects.append(done[identity])
            outcomes.append(DeliveryOutcome(delivery, objects))
        return HandlerOutcome(sqs=sqs, deliveries=outcomes)

    def process_object(
        self,
        ref: ObjectRef,
        *,
        final: bool = True,
        attempt: int = 1,
        request_id: str | None = None,
        via_sqs: bool = False,
    ) -> ObjectOutcome:
        """Ingest one object, then publish its metrics and any alert."""
        started = time.perf_counter()
        outcome = ObjectOutcome(ref, final=final)
        output_failed = False
        try:
            outcome.result, outcome.already_ingested = self._ingest(ref)
        except Exception as exc:  # any failure of one object must not sink the others
            outcome.error = describe_failure(exc)
            output_failed = isinstance(exc, OutputError)
            logger.log(
                logging.ERROR if final else logging.WARNING,
                log_line(
                    "object_failed",
                    object=ref.uri,
                    error=outcome.error,
                    attempt=attempt,
                    max_attempts=self.config.max_receive_count,
                    final=final,
                    request_id=request_id,
                ),
                exc_info=not _expected_failure(exc),
            )
        if outcome.already_ingested:
            # A repeated notification (SQS delivers at least once, moto announces multipart
            # uploads twice): the output stands, and its metrics and alerts went out already.
            logger.info(log_line("object_already_ingested", object=ref.uri, request_id=request_id))
        elif outcome.result is not None:
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            self._report_success(outcome, outcome.result, elapsed_ms, request_id)
        elif final:
            self._put_failure_metric(ref)
            message = object_failed_message(
                ref,
                outcome.error or "",
                attempt=attempt if via_sqs else None,
                config=self.config,
                output_failed=output_failed,
            )
            self._alert(ALERT_OBJECT_FAILED, ref, message)
            outcome.alerts.append(ALERT_OBJECT_FAILED)
        return outcome

    def _ingest(self, ref: ObjectRef) -> tuple[IngestResult, bool]:
        """The object's result, and whether an earlier delivery already ingested this version.

        An object replaced while it was being ingested is ingested again, so that the table
        always ends up holding the object's latest content (S3 announces every version, and an
        older version's run may commit last). A commit lost to another writer (SQS delivers at
        least once; many objects commit at once) is retried here with the object read again;
        the retry finds a version someone else committed meanwhile already stored.
        """
        from logsieve.sources import open_s3_object
        from logsieve.storage.ingest import ingest

        for attempt in range(1, _INGEST_ATTEMPTS + 1):
            stream, info = open_s3_object(self.s3, ref.bucket, ref.key)
            try:
                result = ingest(
                    stream,
                    source=ref.uri,
                    arrival=info.last_modified,
                    s3_client=self.s3,
                    source_version=info.etag,
                    clean_uri=self.config.clean_uri,
                    error_uri=self.config.error_uri,
                )
            except ConcurrentIngestError as exc:
                if attempt == _INGEST_ATTEMPTS:
                    raise
                logger.warning(log_line("concurrent_ingest", object=ref.uri, error=str(exc)))
                time.sleep(random.uniform(0.05, 0.1 * 2 ** min(attempt, 5)))
                continue
            finally:
                stream.close()
            if result.already_ingested or self._still_current(ref, info.etag):
                return result, result.already_ingested
            logger.warning(log_line("object_replaced_while_ingested", object=ref.uri))
        raise ConcurrentIngestError(
            f"{ref.uri} kept changing while it was ingested ({_INGEST_ATTEMPTS} attempts)"
        )

    def _still_current(self, ref: ObjectRef, etag: str) -> bool:
        """Whether the version just committed is still the object's latest.

        The check runs after the commit: if it fails (a network error, denied), the committed
        result stands and its metrics still go out; the next notification of a newer version
        brings the table up to date anyway.
        """
        try:
            return self._current_etag(ref) in (etag, None)
        except Exception as exc:
            logger.warning(log_line("head_after_commit_failed", object=ref.uri, error=str(exc)))
            return True

    def _current_etag(self, ref: ObjectRef) -> str | None:
        """The object's ETag now; None if it is gone (its removal is not ours to handle)."""
        from botocore.exceptions import ClientError

        try:
            head = self.s3.head_object(Bucket=ref.bucket, Key=ref.key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return str(head.get("ETag", "")).strip('"')

    def _report_success(
        self,
        outcome: ObjectOutcome,
        result: IngestResult,
        elapsed_ms: float,
        request_id: str | None,
    ) -> None:
        ref = outcome.ref
        details = {k: v for k, v in result.summary().items() if k != "source"}
        logger.info(log_line("object_processed", object=ref.uri, **details, request_id=request_id))
        self._put_metrics(ref, result, elapsed_ms)
        if result.processed and result.error_rate > self.config.error_rate_alert:
            self._alert(ALERT_HIGH_ERROR_RATE, ref, high_error_rate_message(result, self.config))
            outcome.alerts.append(ALERT_HIGH_ERROR_RATE)

    def _unreadable(self, delivery: Delivery, request_id: str | None) -> DeliveryOutcome:
        final = delivery.receive_count >= self.config.max_receive_count
        logger.error(
            log_line(
                "message_unreadable",
                message_id=delivery.message_id,
                problem=delivery.problem,
                attempt=delivery.receive_count,
                final=final,
                request_id=request_id,
            )
        )
        if final:
            text = (
                f"logsieve alert: message {delivery.message_id} failed for good\n"
                f"problem: {delivery.problem}\n"
                "The message now goes to the dead-letter queue."
            )
            self._publish(ALERT_OBJECT_FAILED, f"message {delivery.message_id}", text)
        return DeliveryOutcome(delivery, [], problem=delivery.problem)

    # --- metrics and alerts ---

    def _put_metrics(self, ref: ObjectRef, result: IngestResult, elapsed_ms: float) -> None:
        base = [{"Name": "Bucket", "Value": ref.bucket}]
        data = [
            _datum("RecordsProcessed", result.processed, "Count", base),
            _datum("RecordsValid", result.valid, "Count", base),
            _datum("RecordsInvalid", result.errors, "Count", base),
            _datum("BytesProcessed", result.bytes, "Bytes", base),
            _datum("ObjectsFailed", 0, "Count", base),
            _datum("ProcessingTime", elapsed_ms, "Milliseconds", base),
        ]
        for code, count in sorted(result.error_counts.items()):
            dims = [*base, {"Name": "ErrorCode", "Value": code}]
            data.append(_datum("RecordsInvalid", count, "Count", dims))
        self._send_metrics(ref, data)

    def _put_failure_metric(self, ref: ObjectRef) -> None:
        base = [{"Name": "Bucket", "Value": ref.bucket}]
        self._send_metrics(ref, [_datum("ObjectsFailed", 1, "Count", base)])

    def _send_metrics(self, ref: ObjectRef, data: list[dict[str, Any]]) -> None:
        # The data is already stored; losing a metric is logged, not worth a reprocessing.
        try:
            for start in range(0, len(data), 1000):
                self.cloudwatch.put_metric_data(
                    Namespace=self.config.metrics_namespace, MetricData=data[start : start + 1000]
                )
        except Exception as exc:
            logger.error(log_line("metrics_failed", object=ref.uri, error=describe_failure(exc)))

    def _alert(self, kind: str, ref: ObjectRef, message: str) -> None:
        self._publish(kind, ref.uri, message)

    def _publish(self, kind: str, subject_of: str, message: str) -> None:
        subject = alert_subject(kind, subject_of)
        try:
            self.sns.publish(
                TopicArn=self.config.alert_topic_arn,
                Subject=subject,
                Message=message,
                MessageAttributes={
                    "alert_type": {"DataType": "String", "StringValue": kind},
                    "object": {"DataType": "String", "StringValue": subject_of},
                },
            )
            logger.warning(log_line("alert_published", alert=kind, object=subject_of))
        except Exception as exc:
            logger.error(
                log_line("alert_failed", alert=kind, object=subject_of, error=describe_failure(exc))
            )


_CLIENTS: dict[tuple[str | None, str | None], Any] = {}


def _shared_clients() -> Clients:
    """One set of clients per endpoint and region, reused across warm invocations."""
    from logsieve.aws.clients import Clients

    region = settings.aws_region()
    cache_key = (os.environ.get("AWS_ENDPOINT_URL"), region)
    if cache_key not in _CLIENTS:
        _CLIENTS[cache_key] = Clients.create(region_name=region)
    return _CLIENTS[cache_key]


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point; see the module docstring for events, configuration and results."""
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        # A Lambda container's process is ours; on a cold start this comes before the first
        # ingest imports pyarrow. Elsewhere (`logsieve up`'s worker) the process decides.
        use_lean_memory()
    if logger.level == logging.NOTSET:
        level = os.environ.get(settings.LOG_LEVEL, settings.DEFAULT_LOG_LEVEL).strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(
                f"{settings.LOG_LEVEL}={level!r}: expected DEBUG, INFO, WARNING or ERROR"
            )
        logger.setLevel(level)
    config = HandlerConfig.from_env()
    pipeline = Pipeline.from_clients(config, _shared_clients())
    return pipeline.handle(event, context).response()


__all__ = ["HandlerOutcome", "ObjectOutcome", "Pipeline", "handler"]
