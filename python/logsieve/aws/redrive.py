"""`logsieve redrive`: move the dead-letter queue's messages back to the work queue after a fix.

A message lands in the DLQ when its object failed on every receive (a corrupt upload, a missing
output bucket). Once the cause is fixed, the messages go back to the work queue and the worker
(or the Lambda) processes them again: repeats of a version already stored commit nothing.

SQS's own redrive, `StartMessageMoveTask`, is used where the endpoint has it (AWS): it moves the
messages server-side and reports how many moved. Where it does not (moto 5.2.5 answers the
action with a bare HTTP 500, "has not been implemented"), logsieve moves them itself: receive
from the DLQ, send each to the work queue with its attributes, delete it from the DLQ only once
sent, so a message is never lost (at worst, after a crash between send and delete, it is in
both queues, which the pipeline's idempotence absorbs). It moves at most the messages the DLQ
held when it started, and stops at a message it sent itself (one that failed again and was
dead-lettered back meanwhile): a redrive always ends, even while the cause is not fixed.

A FIFO message is sent with its group id and a new deduplication id derived from its original
one: SQS drops (and reports as sent) a FIFO message that repeats a deduplication id of the last
5 minutes, and the DLQ copy would then be deleted, lost.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from logsieve.errors import ConfigError, OutputError

DEFAULT_DLQ = "logsieve-work-dlq"
#: Codes (or bare HTTP statuses) an endpoint answers an SQS action it does not implement with.
_UNSUPPORTED = {
    "InvalidAction",
    "UnsupportedOperation",
    "AWS.SimpleQueueService.UnsupportedOperation",
    "NotImplemented",
    "UnknownOperationException",
    "500",
    "501",
}
#: SQS's longest MessageDeduplicationId.
_DEDUP_ID_MAX = 128


@dataclass(frozen=True)
class RedriveResult:
    """What moved, from where to where, and how."""

    source: str
    destination: str
    moved: int
    method: str
    seconds: float


def resolve_queue(sqs: Any, queue: str) -> str:
    """A queue URL from a URL or a name; ConfigError if there is no such queue."""
    if queue.startswith(("http://", "https://")):
        return queue
    try:
        return str(sqs.get_queue_url(QueueName=queue)["QueueUrl"])
    except sqs.exceptions.QueueDoesNotExist:
        raise ConfigError(f"no queue named {queue!r} at this endpoint") from None


def redrive(
    sqs: Any,
    dlq: str = DEFAULT_DLQ,
    to: str | None = None,
    *,
    method: str = "auto",
    limit: int | None = None,
    timeout: float = 300.0,
) -> RedriveResult:
    """Move the DLQ's messages to `to` (default: the queue whose redrive policy names the DLQ).

    `method`: `task` (StartMessageMoveTask only), `receive` (receive, send, delete), or `auto`
    (the task where the endpoint supports it, else receive). `limit` caps the messages moved.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    started = time.perf_counter()
    try:
        source = resolve_queue(sqs, dlq)
        destination = resolve_queue(sqs, to) if to else _source_queue(sqs, source)
        if source == destination or _arn(sqs, source) == _arn(sqs, destination):
            raise ConfigError(
                f"the dead-letter queue and the destination are the same queue ({source}): "
                "name the work queue with --to"
            )
        if method in ("auto", "task") and limit is None:
            moved = _move_task(sqs, source, destination, timeout, required=method == "task")
            if moved is not None:
                return RedriveResult(
                    source, destination, moved, "StartMessageMoveTask", _since(started)
                )
        moved = _receive_send_delete(sqs, source, destination, limit)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise OutputError(
            f"SQS refused: {error.get('Code', '?')}: {error.get('Message', '')}"
        ) from exc
    except BotoCoreError as exc:
        raise OutputError(f"cannot reach SQS: {exc}") from exc
    return RedriveResult(source, destination, moved, "receive-send-delete", _since(started))


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)


def _source_queue(sqs: Any, dlq_url: str) -> str:
    """The one queue whose redrive policy sends its failures to this DLQ."""
    urls = sqs.list_dead_letter_source_queues(QueueUrl=dlq_url).get("queueUrls", [])
    if len(urls) != 1:
        found = "none" if not urls else ", ".join(urls)
        raise ConfigError(
            f"{dlq_url} is the dead-letter queue of {found}: name the work queue with --to"
        )
    return str(urls[0])


def _arn(sqs: Any, url: str) -> str:
    reply = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(reply["Attributes"]["QueueArn"])


def _move_task(
    sqs: Any, source: str, destination: str, timeout: float, *, required: bool
) -> int | None:
    """StartMessageMoveTask and wait for it: messages moved, or None if unsupported here."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    # One attempt only: an endpoint without the action answers 500, which boto3 would retry.
    probe = boto3.client(
        "sqs",
        endpoint_url=sqs.meta.endpoint_url,
        region_name=sqs.meta.region_name,
        config=Config(retries={"total_max_attempts": 1}),
    )
    source_arn = _arn(sqs, source)
    try:
        handle = probe.start_message_move_task(
            SourceArn=source_arn, DestinationArn=_arn(sqs, destination)
        )["TaskHandle"]
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in _UNSUPPORTED:
            raise
        if required:
            raise ConfigError(
                f"the SQS endpoint {sqs.meta.endpoint_url} does not support "
                "StartMessageMoveTask: use --method receive"
            ) from exc
        return None
    deadline = time.monotonic() + timeout
    while True:
        tasks = sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=10).get("Results", [])
        task = next((t for t in tasks if t.get("TaskHandle") == handle), tasks[0] if tasks else {})
        status = task.get("Status")
        if status in ("COMPLETED", "FAILED", "CANCELLED"):
            if status != "COMPLETED":
                reason = task.get("FailureReason", status)
                raise OutputError(f"the message move task ended {status}: {reason}")
            return int(task.get("ApproximateNumberOfMessagesMoved", 0))
        if time.monotonic() > deadline:
            raise OutputError(f"the message move task is still {status} after {timeout:.0f} s")
        time.sleep(1.0)


def _receive_send_delete(sqs: Any, source: str, destination: str, limit: int | None) -> int:
    """Move messages one receive (up to 10) at a time; a message is deleted from the DLQ only
    after the work queue accepted it.

    Stops when a receive finds nothing, once as many messages moved as the DLQ held at the start
    (its ApproximateNumberOfMessages), or at a message this run sent itself, dead-lettered
    again meanwhile (that one stays in the DLQ, visible again at once).
    """
    fifo = destination.endswith(".fifo")
    held = _waiting(sqs, source)
    budget = held if limit is None else min(limit, held)
    sent_ids: set[str] = set()
    moved = 0
    while moved < budget:
        reply = sqs.receive_message(
            QueueUrl=source,
            MaxNumberOfMessages=min(10, budget - moved),
            WaitTimeSeconds=1,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
        )
        received = reply.get("Messages", [])
        messages = [m for m in received if m["MessageId"] not in sent_ids]
        again = [m for m in received if m["MessageId"] in sent_ids]
        if again:  # back already: leave them in the DLQ, visible to the next redrive
            sqs.change_message_visibility_batch(
                QueueUrl=source,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(again)
                ],
            )
        if not messages:
            break
        entries = []
        for index, message in enumerate(messages):
            entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
            if message.get("MessageAttributes"):
                entry["MessageAttributes"] = message["MessageAttributes"]
            if fifo:
                system = message.get("Attributes", {})
                entry["MessageGroupId"] = system.get("MessageGroupId", "logsieve-redrive")
                entry["MessageDeduplicationId"] = redrive_dedup_id(
                    system.get("MessageDeduplicationId", message["MessageId"])
                )
            entries.append(entry)
        sent = sqs.send_message_batch(QueueUrl=destination, Entries=entries)
        successful = sent.get("Successful", [])
        sent_ids.update(str(item["MessageId"]) for item in successful)
        done = [messages[int(item["Id"])] for item in successful]
        if done:
            sqs.delete_message_batch(
                QueueUrl=source,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )
        moved += len(done)
        failed = sent.get("Failed", [])
        if failed:
            raise OutputError(
                f"the work queue refused {len(failed)} message(s) after {moved} moved: "
                f"{failed[0].get('Code')}: {failed[0].get('Message', '')}"
            )
        if again:
            break
    return moved


def _waiting(sqs: Any, url: str) -> int:
    """The queue's ApproximateNumberOfMessages (visible messages) now."""
    reply = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(reply["Attributes"].get("ApproximateNumberOfMessages", 0))


def redrive_dedup_id(original: str) -> str:
    """A new FIFO deduplication id for a redriven message, derived from its original one:
    `<original>-redrive-<unique>`, the original shortened to fit SQS's 128 characters."""
    suffix = f"-redrive-{uuid.uuid4().hex}"
    return original[: _DEDUP_ID_MAX - len(suffix)] + suffix
