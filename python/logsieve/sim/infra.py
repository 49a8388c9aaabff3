"""The AWS resources the pipeline runs on, created and inspected with plain boto3 calls.

The same code provisions in-process moto (`mock_aws`, used by `logsieve simulate` and the tests),
a moto server on loopback (`logsieve up`, via `endpoint_url`) and, in principle, a real account:
nothing here is moto-specific. One boto3 client per service is created and shared, as the moto
documentation asks.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logsieve import settings
from logsieve.aws.clients import Clients

if TYPE_CHECKING:
    from logsieve.aws.config import HandlerConfig


DEFAULT_REGION = "us-east-1"


#: Set before any client exists when nothing else is configured: moto accepts any credentials,
#: and botocore's default CRC checksums on every put break large in-process uploads to moto.
_ENVIRONMENT_DEFAULTS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
}


def prepare_local_environment(env: MutableMapping[str, str] | None = None) -> str:
    """Fill in dummy credentials, checksum settings and a region where unset; return the region.

    Only for talking to moto: values the user set are kept, so an explicit choice always wins.
    """
    env = os.environ if env is None else env
    for name, value in _ENVIRONMENT_DEFAULTS.items():
        env.setdefault(name, value)
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    env.setdefault("AWS_DEFAULT_REGION", region)
    return region


@dataclass(frozen=True)
class ResourceNames:
    """Names of everything `provision` creates; the defaults suit one pipeline per account."""

    input_bucket: str = "logsieve-input"
    clean_bucket: str = "logsieve-clean"
    error_bucket: str = "logsieve-errors"
    clean_prefix: str = "clean"
    error_prefix: str = "errors"
    queue: str = "logsieve-work"
    dead_letter_queue: str = "logsieve-work-dlq"
    alert_topic: str = "logsieve-alerts"
    alert_queue: str = "logsieve-alerts-inbox"
    #: Receives before a message moves to the dead-letter queue.
    max_receive_count: int = 3
    #: Seconds a received message stays hidden; a failed one is retried after this.
    visibility_timeout: int = 30


@dataclass(frozen=True)
class Resources:
    """What `provision` created: URLs and ARNs the handler, worker and reports need."""

    names: ResourceNames
    region: str
    queue_url: str
    queue_arn: str
    dead_letter_queue_url: str
    dead_letter_queue_arn: str
    alert_topic_arn: str
    alert_queue_url: str
    alert_queue_arn: str
    subscription_arn: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def clean_uri(self) -> str:
        return f"s3://{self.names.clean_bucket}/{self.names.clean_prefix}"

    @property
    def error_uri(self) -> str:
        return f"s3://{self.names.error_bucket}/{self.names.error_prefix}"

    def environment(self) -> dict[str, str]:
        """The handler's configuration as the environment variables a Lambda would get."""
        return {
            settings.CLEAN_URI: self.clean_uri,
            settings.ERROR_URI: self.error_uri,
            settings.ALERT_TOPIC_ARN: self.alert_topic_arn,
            settings.MAX_RECEIVE_COUNT: str(self.names.max_receive_count),
        }

    def handler_config(self, **overrides: Any) -> HandlerConfig:
        """A `HandlerConfig` for these resources (defaults for threshold and namespace)."""
        from logsieve.aws.config import HandlerConfig

        return HandlerConfig.from_env({**self.environment()}, **overrides)


def provision(clients: Clients, names: ResourceNames | None = None) -> Resources:
    """Create buckets, work queue + DLQ, alert topic + inbox queue and the S3 -> SQS notification.

    Idempotent: running it again against the same endpoint returns the same resources.
    """
    names = names or ResourceNames()
    region = clients.region
    for bucket in dict.fromkeys((names.input_bucket, names.clean_bucket, names.error_bucket)):
        _create_bucket(clients.s3, bucket, region)

    dlq_url, dlq_arn = _create_queue(clients.sqs, names.dead_letter_queue, {})
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(names.max_receive_count)}
    queue_url, queue_arn = _create_queue(
        clients.sqs,
        names.queue,
        {
            "VisibilityTimeout": str(names.visibility_timeout),
            "RedrivePolicy": json.dumps(redrive),
        },
    )
    _allow_send(
        clients.sqs, queue_url, queue_arn, "s3.amazonaws.com", f"arn:aws:s3:::{names.input_bucket}"
    )

    topic_arn = clients.sns.create_topic(Name=names.alert_topic)["TopicArn"]
    alert_url, alert_arn = _create_queue(clients.sqs, names.alert_queue, {})
    _allow_send(clients.sqs, alert_url, alert_arn, "sns.amazonaws.com", topic_arn)
    subscription_arn = clients.sns.subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=alert_arn, ReturnSubscriptionArn=True
    )["SubscriptionArn"]

    clients.s3.put_bucket_notification_configuration(
        Bucket=names.input_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"Id": "logsieve-ingest", "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}
            ]
        },
    )
    return Resources(
        names=names,
        region=region,
        queue_url=queue_url,
        queue_arn=queue_arn,
        dead_letter_queue_url=dlq_url,
        dead_letter_queue_arn=dlq_arn,
        alert_topic_arn=topic_arn,
        alert_queue_url=alert_url,
        alert_queue_arn=alert_arn,
        subscription_arn=subscription_arn,
    )


def _create_bucket(s3: Any, bucket: str, region: str) -> None:
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(**kwargs)


def _create_queue(sqs: Any, name: str, attributes: dict[str, str]) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def _allow_send(sqs: Any, queue_url: str, queue_arn: str, service: str, source_arn: str) -> None:
    """The queue policy real AWS needs before S3 or SNS may deliver to the queue."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": source_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})


def queue_depth(sqs: Any, queue_url: str) -> int:
    """Messages visible, in flight or delayed: zero means the queue is truly idle."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)


def drain_queue(sqs: Any, queue_url: str, *, delete: bool = True) -> list[dict[str, Any]]:
    """Every message currently visible in a queue (no waiting), deleted unless `delete=False`."""
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)
        if delete:
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
                ],
            )


def read_alerts(clients: Clients, resources: Resources) -> list[dict[str, Any]]:
    """Alerts published so far, from the SNS envelopes in the subscribed inbox queue."""
    alerts = []
    for message in drain_queue(clients.sqs, resources.alert_queue_url):
        envelope = json.loads(message["Body"])
        attributes = {
            name: value.get("Value")
            for name, value in envelope.get("MessageAttributes", {}).items()
        }
        alerts.append(
            {
                "subject": envelope.get("Subject"),
                "message": envelope.get("Message", ""),
                "attributes": attributes,
            }
        )
    return alerts


def read_dead_letters(clients: Clients, resources: Resources) -> list[dict[str, Any]]:
    """Messages in the dead-letter queue (left in place), with their receive counts."""
    letters = []
    for message in drain_queue(clients.sqs, resources.dead_letter_queue_url, delete=False):
        letters.append(
            {
                "message_id": message["MessageId"],
                "receive_count": int(
                    message.get("Attributes", {}).get("ApproximateReceiveCount", 0)
                ),
                "body": message["Body"],
            }
        )
    return letters


def list_keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    """Every key under a prefix, sorted."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return sorted(keys)


def read_metrics(
    cloudwatch: Any, namespace: str, *, since: datetime, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Sum of every metric (per dimension set) in `namespace` between `since` and `until`.

    Uses get_metric_data, which matches dimension sets exactly, so a total is never mixed up
    with its per-error-code breakdown.
    """
    until = until or datetime.now(timezone.utc) + timedelta(minutes=1)
    since = since - timedelta(minutes=1)
    unique: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
    for page in cloudwatch.get_paginator("list_metrics").paginate(Namespace=namespace):
        for metric in page.get("Metrics", []):
            dims = tuple(sorted((d["Name"], d["Value"]) for d in metric.get("Dimensions", [])))
            unique.setdefault((metric["MetricName"], dims), metric)  # moto repeats them
    metrics = list(unique.values())
    results = []
    for chunk in _chunks(metrics, 500):
        queries = [
            {
                "Id": f"m{i}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": namespace,
                        "MetricName": m["MetricName"],
                        "Dimensions": m.get("Dimensions", []),
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
            for i, m in enumerate(chunk)
        ]
        response = cloudwatch.get_metric_data(
            MetricDataQueries=queries, StartTime=since, EndTime=until
        )
        values = {r["Id"]: sum(r.get("Values", [])) for r in response["MetricDataResults"]}
        for i, m in enumerate(chunk):
            results.append(
                {
                    "name": m["MetricName"],
                    "dimensions": {d["Name"]: d["Value"] for d in m.get("Dimensions", [])},
                    "sum": values.get(f"m{i}", 0.0),
                }
            )
    return sorted(results, key=lambda r: (r["name"], sorted(r["dimensions"].items())))


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def download_prefix(s3: Any, bucket: str, prefix: str, target: Path) -> list[Path]:
    """Copy every object under `bucket/prefix/` to `target`, keeping the relative layout."""
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    written = []
    for key in list_keys(s3, bucket, prefix):
        path = target / key[len(prefix) :]
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(path))
        written.append(path)
    return written
