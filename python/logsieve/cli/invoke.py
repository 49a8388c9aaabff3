"""`logsieve invoke EVENT.json` and `logsieve validate`: the Lambda handler from a terminal
(logsieve.aws.invoke), reported as text or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from logsieve.aws.invoke import (
    Check,
    Endpoint,
    check_resources,
    describe_config,
    failures,
    invoke,
    read_event,
    resolve_endpoint,
)
from logsieve.cli import ExitCode
from logsieve.errors import ConfigError

if TYPE_CHECKING:
    from logsieve.aws.pipeline import HandlerOutcome


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


def _endpoint(args: argparse.Namespace) -> Endpoint:
    return resolve_endpoint(args.endpoint_url, args.region)


# --- invoke ------------------------------------------------------------------------------------


def run_invoke(args: argparse.Namespace) -> int:
    """Run the handler once; exit 1 when an object or message failed (as Lambda would retry)."""
    from logsieve.aws.config import HandlerConfig

    event = read_event(args.event)
    config = HandlerConfig.from_env()
    endpoint = _endpoint(args)
    outcome = invoke(event, config, endpoint)
    response = outcome.response()
    failed = failures(outcome)
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
    checks = [Check("configuration", True, describe_config(config))]
    checks += check_resources(config, endpoint)
    _print_checks(args, endpoint, checks)
    for check in checks:
        if not check.ok:
            print(f"logsieve validate: error: {check.name}: {check.detail}", file=sys.stderr)
    return ExitCode.OK if all(c.ok for c in checks) else ExitCode.FAILED


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


__all__ = ["add_invoke_arguments", "add_validate_arguments", "run_invoke", "run_validate"]
