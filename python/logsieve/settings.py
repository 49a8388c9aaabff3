"""The environment variables logsieve reads: their names and defaults, spelled once.

The handler's configuration (`logsieve.aws.config.HandlerConfig`) checks the `LOGSIEVE_*`
values; the API, the commands, the demo and the CloudFormation template name them through
here. The AWS variables are boto3's own, read the way boto3 reads them, for the clients that
do not go through boto3 (delta-rs, pyarrow).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: The clean Delta table: `s3://bucket/prefix` or a local directory.
CLEAN_URI = "LOGSIEVE_CLEAN_URI"
#: The error records: `s3://bucket/prefix` or a local directory.
ERROR_URI = "LOGSIEVE_ERROR_URI"
#: The SNS topic alerts go to.
ALERT_TOPIC_ARN = "LOGSIEVE_ALERT_TOPIC_ARN"
#: The share of invalid lines in an object above which an alert is sent.
ERROR_RATE_ALERT = "LOGSIEVE_ERROR_RATE_ALERT"
DEFAULT_ERROR_RATE_ALERT = 0.1
#: The CloudWatch namespace of the metrics.
METRICS_NAMESPACE = "LOGSIEVE_METRICS_NAMESPACE"
DEFAULT_METRICS_NAMESPACE = "LogSieve"
#: The receive on which a failing object is alerted as failed for good (the queue's
#: maxReceiveCount).
MAX_RECEIVE_COUNT = "LOGSIEVE_MAX_RECEIVE_COUNT"
DEFAULT_MAX_RECEIVE_COUNT = 3
#: The handler's log level on Lambda.
LOG_LEVEL = "LOGSIEVE_LOG_LEVEL"
DEFAULT_LOG_LEVEL = "INFO"

#: The region where boto3 would find none (delta-rs and pyarrow need one).
DEFAULT_AWS_REGION = "us-east-1"


def value(name: str, env: Mapping[str, str] | None = None) -> str:
    """The variable's value without surrounding blanks; "" when unset."""
    return (os.environ if env is None else env).get(name, "").strip()


def aws_region() -> str | None:
    """The region as boto3 reads it: AWS_REGION, else AWS_DEFAULT_REGION; None when neither."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def aws_s3_endpoint() -> str | None:
    """The S3 endpoint as boto3 reads it: AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


__all__ = [
    "ALERT_TOPIC_ARN",
    "CLEAN_URI",
    "DEFAULT_AWS_REGION",
    "DEFAULT_ERROR_RATE_ALERT",
    "DEFAULT_LOG_LEVEL",
    "DEFAULT_MAX_RECEIVE_COUNT",
    "DEFAULT_METRICS_NAMESPACE",
    "ERROR_RATE_ALERT",
    "ERROR_URI",
    "LOG_LEVEL",
    "MAX_RECEIVE_COUNT",
    "METRICS_NAMESPACE",
    "aws_region",
    "aws_s3_endpoint",
    "value",
]
