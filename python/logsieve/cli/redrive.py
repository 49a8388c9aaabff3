"""`logsieve redrive`: move the dead-letter queue's messages back to work (logsieve.aws.redrive)."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from logsieve.aws.redrive import DEFAULT_DLQ, redrive
from logsieve.cli import print_json


def add_redrive_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dlq",
        default=DEFAULT_DLQ,
        metavar="QUEUE",
        help=f"dead-letter queue, a name or URL (default: {DEFAULT_DLQ})",
    )
    parser.add_argument(
        "--to",
        metavar="QUEUE",
        help="work queue to move them to (default: the queue whose redrive policy names the DLQ)",
    )
    parser.add_argument(
        "--method",
        choices=("auto", "task", "receive"),
        default="auto",
        help="task: SQS StartMessageMoveTask; receive: receive, send, delete; auto: the task "
        "where the endpoint supports it",
    )
    parser.add_argument(
        "--max", type=_positive, metavar="N", help="move at most N messages (receive method)"
    )
    parser.add_argument("--endpoint-url", metavar="URL", help="SQS endpoint (default: boto3's)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"not a positive count: {text!r}")
    return int(text)


def run_redrive(args: argparse.Namespace) -> int:
    import boto3

    sqs = boto3.client("sqs", endpoint_url=args.endpoint_url)
    result = redrive(sqs, args.dlq, args.to, method=args.method, limit=args.max)
    if args.json:
        print_json(asdict(result))
    elif not args.quiet:
        how = f"{result.method}, {result.seconds} s"
        print(f"logsieve redrive: {result.moved} message(s) moved ({how})")
        print(f"  from {result.source}")
        print(f"  to   {result.destination}")
    return 0


__all__ = ["add_redrive_arguments", "run_redrive"]
