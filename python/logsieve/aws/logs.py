"""The handler's log lines (one JSON object each) and how a failure is described in them."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

logger = logging.getLogger("logsieve.aws")


def describe_failure(exc: BaseException) -> str:
    """One line a person can act on, for botocore errors as well as our own."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response["Error"]
        code = err.get("Code", type(exc).__name__)
        message = err.get("Message") or ""
        if code in ("NoSuchKey", "404"):
            message = message or "the object does not exist (deleted, or not yet visible)"
        return f"{code}: {message}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _expected_failure(exc: BaseException) -> bool:
    """Failures of the input or of S3 need no traceback in the logs; bugs do."""
    from logsieve.errors import LogsieveError

    if isinstance(exc, LogsieveError):
        return True
    module = type(exc).__module__ or ""
    return module.startswith(("botocore", "boto3", "urllib3"))


def log_line(event: str, **fields: Any) -> str:
    """Structured log message: one line of JSON that CloudWatch Logs Insights can query."""
    return json.dumps(
        {"event": event, **{k: v for k, v in fields.items() if v is not None}},
        ensure_ascii=False,
        default=str,
        separators=(",", ":"),
    )
