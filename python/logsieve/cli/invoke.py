"""`logsieve invoke EVENT.json` and `logsieve validate`: the Lambda handler from a terminal.

`invoke` runs the handler once on an event read from a file, against whatever endpoint boto3
is configured for (a moto server through `AWS_ENDPOINT_URL` or `--endpoint-url`, or AWS), as
`sam local invoke` does for a function. `validate` checks the handler's configuration
(the LOGSIEVE_* variables) and that its buckets, topic and CloudWatch answer, without
processing anything, as `vector validate` does: the question to ask before deploying or
before pointing a queue at it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logsieve.cli import ExitCode
from logsieve.errors import ConfigError

if TYPE_CHECKING:
    from logsieve.aws.config import HandlerConfig
    from logsieve.aws.pipeline import HandlerOutcome

#: Seconds `validate` waits for an endpoint: it answers a question, it should not hang.
_VALIDATE_TIMEOUT = 5


def _add_endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="AWS endpoint, e.g. a moto server http://127.0.0.1:5000 (default: $AWS_ENDPOINT_URL, "
        "else AWS itself)",
    )
    parser.add_argument(
        "--region",
        metavar="REGION",
        help="AWS region (default: $AWS_REGION, else $AWS_DEFAULT_REGION)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def add_invoke_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "event",
        metavar="EVENT.json",
        help="the event: an S3 notification, an SQS batch carrying them, SNS or EventBridge, "
        "as a Lambda receives it; - reads standard input",
    )
    _add_endpoint_arguments(parser)


def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    _add_endpoint_arguments(parser)


@dataclass(frozen=True)
class Endpoint:
    """Where the commands' AWS requests go."""

    url: str | None
    region: str


def _endpoint(args: argparse.Namespace) -> Endpoint:
    """The endpoint and region from the options, else the environment; also for delta-rs,
    which reads the environment rather than boto3's configuration."""
    if args.endpoint_url is not None:
        if not args.endpoint_url.startswith(("http://", "https://")):
            raise ConfigError(f"--endpoint-url {args.endpoint_url!r}: expected http(s)://HOST:PORT")
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConfigError("no AWS region: set AWS_REGION or give --region")
    os.environ["AWS_REGION"] = region
    return Endpoint(os.environ.get("AWS_ENDPOINT_URL") or None, region)


# --- invoke ------------------------------------------------------------------------------------


def _read_event(spec: str) -> Any:
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


def run_invoke(args: argparse.Namespace) -> int:
    """Run the handler once; exit 1 when an object or message failed (as Lambda would retry)."""
    from logsieve.aws.clients import Clients
    from logsieve.aws.config import HandlerConfig
    from logsieve.aws.pipeline import Pipeline

    event = _read_event(args.event)
    config = HandlerConfig.from_env()
    endpoint = _endpoint(args)
    clients = Clients.create(endpoint_url=endpoint.url, region_name=endpoint.region)
    outcome = Pipeline.from_clients(config, clients).handle(event)
    response = outcome.response()
    failed = _failures(outcome)
    if args.json:
        report = {
            "endpoint": endpoint.url,
            "region": endpoint.region,
            "response": response,
            "failed": failed,
        }
        print(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    elif not args.quiet:
        print(_format_invoke(outcome, response, endpoint))
    for problem in failed:
        print(f"logsieve invoke: error: {problem}", file=sys.stderr)
    return ExitCode.FAILED if failed else ExitCode.OK


def _failures(outcome: HandlerOutcome) -> list[str]:
    problems = [f"{o.ref.uri}: {o.error}" for o in outcome.objects if not o.ok]
    problems += [
        f"message {d.delivery.message_id}: {d.problem}"
        for d in outcome.deliveries
        if d.problem is not None
    ]
    return problems


def _format_invoke(outcome: HandlerOutcome, response: dict[str, Any], endpoint: Endpoint) -> str:
    where = endpoint.url or "AWS"
    lines = [f"logsieve invoke: the handler on {where} ({endpoint.region})"]
    if not outcome.objects and not any(d.problem for d in outcome.deliveries):
        lines.append("  the event names no objects (nothing to do)")
    for obj in outcome.objects:
        if obj.result is not None:
            r = obj.result
            again = " (this version was already ingested: nothing new)" * obj.already_ingested
            lines.append(
                f"  {obj.ref.uri}: {r.processed} processed, {r.valid} valid, {r.errors} invalid, "
                f"{r.blank} blank{again}"
            )
            if obj.alerts:
                lines.append(f"    alerts: {', '.join(obj.alerts)}")
        else:
            lines.append(f"  {obj.ref.uri}: FAILED, nothing written (the reason is on stderr)")
    lines.append(f"Lambda result: {json.dumps(response, ensure_ascii=False, default=str)}")
    return "\n".join(lines)


# --- validate ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One thing `validate` checked: what, whether it passed, and what it found."""

    name: str
    ok: bool
    detail: str


def run_validate(args: argparse.Namespace) -> int:
    """Check configuration, then each resource; exit 2 for configuration, 1 for a resource."""
    from logsieve.aws.config import HandlerConfig

    try:
        config = HandlerConfig.from_env()
        endpoint = _endpoint(args)
    except ConfigError as exc:
        _print_checks(args, None, [Check("configuration", False, str(exc))])
        print(f"logsieve validate: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    checks = [Check("configuration", True, _describe_config(config))]
    checks += _check_resources(config, endpoint)
    _print_checks(args, endpoint, checks)
    for check in checks:
        if not check.ok:
            print(f"logsieve validate: error: {check.name}: {check.detail}", file=sys.stderr)
    return ExitCode.OK if all(c.ok for c in checks) else ExitCode.FAILED


def _describe_config(config: HandlerConfig) -> str:
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


def _check_resources(config: HandlerConfig, endpoint: Endpoint) -> list[Check]:
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
    if uri.startswith("s3://"):
        bucket = uri[len("s3://") :].split("/", 1)[0]
        try:
            s3.head_bucket(Bucket=bucket)
        except Exception as exc:
            return Check(name, False, f"{uri}: bucket {bucket}: {_reason(exc)}")
        found = f"{uri}: bucket {bucket} answers"
    else:
        from logsieve.storage.table import file_url_path

        path = Path(file_url_path(uri) if uri.startswith("file:") else uri)
        existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            return Check(name, False, f"{uri}: {existing} is not a writable directory")
        found = f"{uri}: " + ("the directory exists" if existing == path else "will be created")
    if not table:
        return Check(name, True, found)
    from logsieve.storage.table import open_table

    try:
        snapshot = open_table(uri, s3 if uri.startswith("s3://") else None)
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


def _print_checks(args: argparse.Namespace, endpoint: Endpoint | None, checks: list[Check]) -> None:
    if args.json:
        report = {
            "ok": all(c.ok for c in checks),
            "endpoint": endpoint.url if endpoint else None,
            "region": endpoint.region if endpoint else None,
            "checks": [asdict(c) for c in checks],
        }
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return
    if args.quiet or endpoint is None:
        return
    print(
        f"logsieve validate: the handler's configuration on {endpoint.url or 'AWS'} "
        f"({endpoint.region})"
    )
    width = max(len(c.name) for c in checks)
    for check in checks:
        print(f"  {'ok' if check.ok else 'FAILED':<6}  {check.name:<{width}}  {check.detail}")
    passed = sum(c.ok for c in checks)
    verdict = "valid" if passed == len(checks) else "NOT valid"
    print(f"{verdict}: {passed} of {len(checks)} checks passed; nothing was processed")


__all__ = ["Check", "add_invoke_arguments", "add_validate_arguments", "run_invoke", "run_validate"]
