"""What the handler is invoked with: S3, SQS, SNS-wrapped and EventBridge notifications, turned
into deliveries (an SQS message or a direct event) and the objects they name."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from logsieve.aws.logs import log_line, logger
from logsieve.errors import EventError

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class ObjectRef:
    """One S3 object an event announced, key already URL-decoded."""

    bucket: str
    key: str
    event_name: str = "ObjectCreated"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Delivery:
    """A unit that succeeds or fails as a whole: one SQS message, or a whole direct event."""

    objects: list[ObjectRef]
    message_id: str | None = None
    receive_count: int = 1
    #: Why the payload could not be read; the delivery then fails without touching S3.
    problem: str | None = None


def is_sqs_batch(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, dict) else None
    if not records:
        return False
    return all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)


def deliveries(event: Any) -> list[Delivery]:
    """Split an invocation into deliveries; a direct event is one delivery, SQS one per message."""
    if not is_sqs_batch(event):
        return [Delivery(objects=list(objects_in(event)))]
    result = []
    for record in event["Records"]:
        message_id = str(record.get("messageId", ""))
        count = _receive_count(record)
        try:
            body = json.loads(_text(record.get("body"), "the body"))
            result.append(Delivery(list(objects_in(body)), message_id, count))
        except (ValueError, EventError, RecursionError) as exc:  # RecursionError: deep nesting
            problem = f"unreadable message body: {exc}"
            result.append(Delivery([], message_id, count, problem=problem))
    return result


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise EventError(f"{what} is {type(value).__name__}, not a string")
    return value


def _receive_count(record: Mapping[str, Any]) -> int:
    attributes = record.get("attributes")
    if not isinstance(attributes, dict):
        return 1
    raw = attributes.get("ApproximateReceiveCount", "1")
    try:
        return max(1, int(raw))
    except (TypeError, ValueError):
        return 1


def objects_in(payload: Any) -> Iterator[ObjectRef]:
    """Objects created according to an S3, SNS or EventBridge payload, unwrapping nesting.

    Test events and events for anything but object creation yield nothing; a payload of no
    known shape raises EventError rather than being ignored.
    """
    if not isinstance(payload, dict):
        raise EventError(f"expected a JSON object, got {type(payload).__name__}")
    if payload.get("Event") == "s3:TestEvent":
        logger.info(log_line("test_event_skipped", bucket=payload.get("Bucket")))
        return
    if "Records" in payload and isinstance(payload["Records"], list):
        for record in payload["Records"]:
            yield from _objects_in_record(record)
        return
    if payload.get("Type") == "Notification" and "Message" in payload:  # SNS -> SQS envelope
        yield from objects_in(_loads(payload["Message"], "SNS message"))
        return
    if payload.get("source") == "aws.s3" and isinstance(payload.get("detail"), dict):
        yield from _objects_in_eventbridge(payload)
        return
    raise EventError(
        "not an S3, SQS, SNS or EventBridge notification (no Records, Event or detail)"
    )


def _objects_in_record(record: Any) -> Iterator[ObjectRef]:
    if not isinstance(record, dict):
        raise EventError("a Records entry is not a JSON object")
    if "s3" in record:
        name = str(record.get("eventName", ""))
        try:
            bucket = _name(record["s3"]["bucket"]["name"], "bucket name")
            key = unquote_plus(_name(record["s3"]["object"]["key"], "object key"))
        except (KeyError, TypeError) as exc:
            raise EventError(f"S3 record without bucket name or object key ({exc})") from exc
        if not name or name.removeprefix("s3:").startswith("ObjectCreated"):
            yield ObjectRef(bucket, key, name or "ObjectCreated")
        else:
            logger.info(log_line("event_skipped", event_name=name, object=f"s3://{bucket}/{key}"))
        return
    if "Sns" in record:
        sns = record["Sns"]
        message = sns.get("Message") if isinstance(sns, dict) else None
        yield from objects_in(_loads(message, "SNS message"))
        return
    raise EventError(
        f"unsupported record from {record.get('eventSource') or record.get('EventSource')!r}"
    )


def _objects_in_eventbridge(payload: dict[str, Any]) -> Iterator[ObjectRef]:
    detail_type = payload.get("detail-type")
    detail = payload["detail"]
    try:
        bucket = _name(detail["bucket"]["name"], "bucket name")
        key = _name(detail["object"]["key"], "object key")  # not URL-encoded, unlike S3's
    except (KeyError, TypeError) as exc:
        raise EventError(f"EventBridge S3 event without bucket name or object key ({exc})") from exc
    if detail_type == "Object Created":
        yield ObjectRef(bucket, key, f"ObjectCreated:{detail.get('reason', '')}".rstrip(":"))
    else:
        logger.info(
            log_line("event_skipped", event_name=detail_type, object=f"s3://{bucket}/{key}")
        )


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"the {what} is {value!r}, not a non-empty string")
    return value


def _loads(text: Any, what: str) -> Any:
    if not isinstance(text, str):
        raise EventError(f"{what} is missing or not a string")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise EventError(f"{what} is not JSON: {exc}") from exc
