"""An SQS poller that does what the Lambda service does for an SQS event source mapping.

It long-polls the work queue, hands each batch to the handler as a Lambda SQS event, and
deletes the messages the handler did not list in `batchItemFailures`. Failed messages are left
alone: they reappear after the queue's visibility timeout, and SQS moves them to the dead-letter
queue after `maxReceiveCount` receives. Long polling (WaitTimeSeconds > 0) keeps an idle worker
from spinning, in-process under moto as well as against a server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from logsieve.aws.logs import log_line
from logsieve.aws.pipeline import HandlerOutcome, Pipeline

logger = logging.getLogger("logsieve.worker")


class Worker:
    """Drains one queue into one pipeline; `outcomes` keeps every invocation's result."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        pipeline: Pipeline,
        *,
        queue_arn: str = "",
        wait_seconds: int = 1,
        batch_size: int = 10,
        on_outcome: Callable[[HandlerOutcome], None] | None = None,
    ) -> None:
        if not 1 <= wait_seconds <= 20:
            raise ValueError("wait_seconds must be 1..20: 0 would poll in a tight loop")
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.pipeline = pipeline
        self.wait_seconds = wait_seconds
        self.batch_size = batch_size
        self.on_outcome = on_outcome
        self.outcomes: list[HandlerOutcome] = []

    def poll_once(self) -> HandlerOutcome | None:
        """One long poll; handles and acknowledges what arrived. None when nothing did."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return None
        outcome = self.pipeline.handle(self.lambda_event(messages))
        failed = set(outcome.failed_message_ids)
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self._delete(done)
        self.outcomes.append(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome

    def lambda_event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """SQS messages as the `Records` of a Lambda SQS event."""
        region = str(self.sqs.meta.region_name)
        return {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": dict(m.get("Attributes", {})),
                    "messageAttributes": dict(m.get("MessageAttributes", {})),
                    "md5OfBody": m.get("MD5OfBody", ""),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": region,
                }
                for m in messages
            ]
        }

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
        ]
        response = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        for failure in response.get("Failed", []):
            # The message will be delivered again; reprocessing it overwrites, so no duplicates.
            logger.warning(
                log_line("delete_failed", id=failure.get("Id"), error=failure.get("Message"))
            )

    def drain_until_idle(self, *, timeout: float = 60.0) -> list[HandlerOutcome]:
        """Poll until the queue holds nothing (visible, in flight or delayed), or `timeout`.

        Messages that failed stay in flight until their visibility timeout, then come back and
        eventually move to the dead-letter queue; this waits for all of that to settle.
        Returns the outcomes of this call; raises TimeoutError if the queue never went idle.
        """
        from logsieve.sim.infra import queue_depth

        start = len(self.outcomes)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.poll_once() is None and queue_depth(self.sqs, self.queue_url) == 0:
                return self.outcomes[start:]
        raise TimeoutError(f"queue {self.queue_url} still busy after {timeout:.0f} s")

    def run_forever(self, stop: threading.Event) -> None:
        """Poll until `stop` is set; errors talking to SQS are logged and retried with backoff."""
        backoff = 1.0
        while not stop.is_set():
            try:
                self.poll_once()
                backoff = 1.0
            except Exception as exc:
                from logsieve.aws.logs import describe_failure

                logger.error(
                    log_line("poll_failed", queue=self.queue_url, error=describe_failure(exc))
                )
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
