"""The Lambda handler from a terminal (`logsieve invoke`, `logsieve validate`).

`invoke` runs the handler once on an event read from a file, against whatever endpoint boto3
is configured for (a moto server through `AWS_ENDPOINT_URL`, or AWS), as `sam local invoke` does
for a function. The checks look at the handler's configuration (the LOGSIEVE_* variables) and
whether its buckets, topic and CloudWatch answer, without processing anything, as `vector
validate` does: the question to ask before deploying or before pointing a queue at it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logsieve.errors import ConfigError
from logsieve.locations import is_s3, local_path, s3_parts
from logsieve.settings import aws_region

if TYPE_CHECKING:
    from logsieve.aws.config import HandlerConfig
    from logsieve.aws.pipeline import HandlerOutcome

#: Seconds `validate` waits for an endpoint: it answers a question, it should not hang.
_VALIDATE_TIMEOUT = 5


@dataclass(frozen=True)
class Endpoint:
    """Where the commands' AWS requests go."""

    url: str | None
    region: str


def resolve_endpoint(endpoint_url: str | None, region: str | None) -> Endpoint:
    """The endpoint and region from the options, else the environment; also for delta-rs,
    which reads the environment rather than boto3's configuration."""
    if endpoint_url is not None:
        if not endpoint_url.startswith(("http://", "https://")):
            raise ConfigError(f"--endpoint-url {endpoint_url!r}: expected http(s)://HOST:PORT")
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    region = region or aws_region()
    if not region:
        raise ConfigError("no AWS region: set AWS_REGION or give --region")
    os.environ["AWS_REGION"] = region
    return Endpoint(os.environ.get("AWS_ENDPOINT_URL") or None, region)


def read_event(spec: str) -> Any:
    """The event file's JSON; a missing file or bad JSON is a one-line ConfigError."""
    try:
        text = sys.stdin.read() if spec == "-" else Path(spec).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{spec}: cannot read the event: {reason}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{spec}: not a JSON event: {exc}") from None


def invoke(event: Any, config: HandlerConfig, endpoint: Endpoint) -> HandlerOutcome:
    """The handler once on `event`, with clients for `endpoint`."""
    from logsieve.aws.clients import Clients
    from logsieve.aws.pipeline import Pipeline

    clients = Clients.create(endpoint_url=endpoint.url, region_name=endpoint.region)
    return Pipeline.from_clients(config, clients).handle(event)


def failures(outcome: HandlerOutcome) -> list[str]:
    """One line for each object and each message that failed."""
    problems = [f"{o.ref.uri}: {o.error}" for o in outcome.objects if not o.ok]
    problems += [
        f"message {d.delivery.message_id}: {d.problem}"
        for d in outcome.deliveries
        if d.problem is not None
    ]
    return problems


@dataclass(frozen=True)
class Check:
    """One thing `validate` checked: what, whether it passed, and what it found."""

    name: str
    ok: bool
    detail: str


def describe_config(config: HandlerConfig) -> str:
    """The configuration in one line: what the handler will do beyond the locations."""
    return (
        f"error-rate alert above {config.error_rate_alert:g}, metrics namespace "
        f"{config.metrics_namespace}, {config.max_receive_count} receives before the DLQ"
    )


def _clients(endpoint: Endpoint) -> dict[str, Any]:
    """Clients that give up within seconds: an unreachable endpoint is an answer here."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=_VALIDATE_TIMEOUT,
        read_timeout=_VALIDATE_TIMEOUT,
        retries={"max_attempts": 2, "mode": "standard"},
    )
    session = boto3.session.Session()
    return {
        name: session.client(
            name, region_name=endpoint.region, endpoint_url=endpoint.url, config=config
        )
        for name in ("s3", "sns", "cloudwatch")
    }


def check_resources(config: HandlerConfig, endpoint: Endpoint) -> list[Check]:
    """Whether the buckets, the topic and CloudWatch answer; processes nothing."""
    clients = _clients(endpoint)
    checks = [
        _check_location("clean table", config.clean_uri, clients["s3"], table=True),
        _check_location("error records", config.error_uri, clients["s3"], table=False),
    ]
    try:
        clients["sns"].get_topic_attributes(TopicArn=config.alert_topic_arn)
        checks.append(Check("alert topic", True, f"{config.alert_topic_arn}: the topic exists"))
    except Exception as exc:
        checks.append(Check("alert topic", False, f"{config.alert_topic_arn}: {_reason(exc)}"))
    try:
        clients["cloudwatch"].list_metrics(Namespace=config.metrics_namespace)
        checks.append(Check("metrics", True, f"CloudWatch answers ({config.metrics_namespace})"))
    except Exception as exc:
        checks.append(Check("metrics", False, f"CloudWatch: {_reason(exc)}"))
    return checks


def _check_location(name: str, uri: str, s3: Any, *, table: bool) -> Check:
    """An S3 location's bucket answers (or a directory can be written); for the clean table,
    also which version it is at."""
    if is_s3(uri):
        bucket, _ = s3_parts(uri)
        try:
            s3.head_bucket(Bucket=bucket)
        except Exception as exc:
            return Check(name, False, f"{uri}: bucket {bucket}: {_reason(exc)}")
        found = f"{uri}: bucket {bucket} answers"
    else:
        path = Path(local_path(uri))
        existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            return Check(name, False, f"{uri}: {existing} is not a writable directory")
        found = f"{uri}: " + ("the directory exists" if existing == path else "will be created")
    if not table:
        return Check(name, True, found)
    from logsieve.storage.table import open_table

    try:
        snapshot = open_table(uri, s3 if is_s3(uri) else None)
    except Exception as exc:
        return Check(name, False, f"{uri}: cannot read the Delta table: {_reason(exc)}")
    state = (
        f"Delta table at version {snapshot.version()}"
        if snapshot is not None
        else "no table yet (the first ingest creates it)"
    )
    return Check(name, True, f"{found}; {state}")


def _reason(exc: BaseException) -> str:
    """One line for a failed request: botocore's error code and message, or the exception."""
    from logsieve.aws.logs import describe_failure

    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    plain = {"404": "does not exist", "NoSuchBucket": "does not exist", "403": "access denied"}
    if code in plain:  # HEAD requests carry only a status code
        return plain[code]
    text = describe_failure(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0]


__all__ = [
    "Check",
    "Endpoint",
    "check_resources",
    "describe_config",
    "failures",
    "invoke",
    "read_event",
    "resolve_endpoint",
]
