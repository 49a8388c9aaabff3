"""Metrics and alerts: CloudWatch data points per object, SNS alerts on a high error rate or
an object that failed for good."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from logsieve.aws.config import HandlerConfig
from logsieve.aws.events import ObjectRef

if TYPE_CHECKING:
    from logsieve.storage.results import IngestResult


ALERT_HIGH_ERROR_RATE = "high_error_rate"


ALERT_OBJECT_FAILED = "object_failed"


_SAMPLE_ERRORS_IN_ALERT = 3


def _datum(name: str, value: float, unit: str, dimensions: list[dict[str, str]]) -> dict[str, Any]:
    return {"MetricName": name, "Value": float(value), "Unit": unit, "Dimensions": dimensions}


def alert_subject(kind: str, subject_of: str) -> str:
    """SNS subjects must be ASCII without control characters and under 100 characters."""
    title = "error rate too high" if kind == ALERT_HIGH_ERROR_RATE else "object failed"
    text = f"logsieve: {title}: {subject_of}"
    text = text.encode("ascii", "replace").decode("ascii")
    text = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    return text if len(text) < 100 else text[:96] + "..."


def high_error_rate_message(result: IngestResult, config: HandlerConfig) -> str:
    lines = [
        "logsieve alert: error rate above threshold",
        f"object: {result.source}",
        f"records: processed {result.processed}, valid {result.valid}, invalid {result.errors}, "
        f"blank lines {result.blank}",
        f"error rate: {result.error_rate:.1%} (threshold {config.error_rate_alert:.1%})",
        "by error code: " + ", ".join(f"{c} {n}" for c, n in sorted(result.error_counts.items())),
        "sample errors:",
    ]
    for sample in result.sample_errors[:_SAMPLE_ERRORS_IN_ALERT]:
        lines.append(f"  line {sample['line']}: {sample['error']}: {sample['detail']}")
    if result.error_keys:
        lines.append("error records: " + ", ".join(result.error_keys))
    return "\n".join(lines)


def object_failed_message(
    ref: ObjectRef,
    error: str,
    *,
    attempt: int | None,
    config: HandlerConfig,
    output_failed: bool = False,
) -> str:
    """The alert text; `attempt` is the SQS receive count, None for a direct invocation."""
    if attempt is None:
        tries = "attempts: 1 (a direct invocation; logsieve does not retry it)"
    else:
        tries = f"attempts: {attempt} of {config.max_receive_count}"
    if output_failed:
        advice = (
            "The object itself may be fine: fix the output location or its permissions "
            f"({config.clean_uri}, {config.error_uri}), then announce the object again."
        )
    else:
        advice = "Fix the object and upload it again."
    if attempt is not None:
        advice = "The SQS message now goes to the dead-letter queue. " + advice
    return "\n".join(
        [
            "logsieve alert: object failed for good",
            f"object: {ref.uri}",
            f"error: {error}",
            f"{tries}; "
            + (
                "its output may be incomplete until it is ingested again"
                if output_failed
                else "no records were written for it (processed 0, valid 0, invalid 0)"
            ),
            advice,
        ]
    )
