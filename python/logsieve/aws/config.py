"""The handler's configuration: the `LOGSIEVE_*` environment variables, read and checked once."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from logsieve import settings
from logsieve.errors import ConfigError
from logsieve.locations import resolve

_NAMESPACE = re.compile(r"[^:][\x20-\x7e]{0,254}")


_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}")


@dataclass(frozen=True)
class HandlerConfig:
    """Everything the handler needs besides clients, validated once per invocation."""

    clean_uri: str
    error_uri: str
    alert_topic_arn: str
    error_rate_alert: float = settings.DEFAULT_ERROR_RATE_ALERT
    metrics_namespace: str = settings.DEFAULT_METRICS_NAMESPACE
    max_receive_count: int = settings.DEFAULT_MAX_RECEIVE_COUNT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> HandlerConfig:
        """Read and check the LOGSIEVE_* variables; ConfigError names the first bad one."""
        env = os.environ if env is None else env
        config = cls(
            clean_uri=_location(env, settings.CLEAN_URI),
            error_uri=_location(env, settings.ERROR_URI),
            alert_topic_arn=_topic_arn(env, settings.ALERT_TOPIC_ARN),
            error_rate_alert=_fraction(
                env, settings.ERROR_RATE_ALERT, settings.DEFAULT_ERROR_RATE_ALERT
            ),
            metrics_namespace=_namespace(
                env, settings.METRICS_NAMESPACE, settings.DEFAULT_METRICS_NAMESPACE
            ),
            max_receive_count=_positive_int(
                env, settings.MAX_RECEIVE_COUNT, settings.DEFAULT_MAX_RECEIVE_COUNT
            ),
        )
        return dataclasses.replace(config, **overrides) if overrides else config


def _required(env: Mapping[str, str], name: str) -> str:
    value = settings.value(name, env)
    if not value:
        raise ConfigError(f"environment variable {name} is not set")
    return value


def _location(env: Mapping[str, str], name: str) -> str:
    value = _required(env, name)
    try:
        resolve(value, delta=False)  # the rules every location follows; the value stays as given
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return value


def _topic_arn(env: Mapping[str, str], name: str) -> str:
    value = _required(env, name)
    if not _TOPIC_ARN.fullmatch(value):
        raise ConfigError(
            f"{name}={value!r}: not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"
        )
    return value


def _fraction(env: Mapping[str, str], name: str, default: float) -> float:
    raw = settings.value(name, env)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}={raw!r}: expected a fraction between 0 and 1, e.g. 0.1")
    return value


def _namespace(env: Mapping[str, str], name: str, default: str) -> str:
    value = settings.value(name, env) or default
    if not _NAMESPACE.fullmatch(value) or value.startswith("AWS/"):
        raise ConfigError(
            f"{name}={value!r}: a CloudWatch namespace is 1-255 printable ASCII characters, "
            "not starting with ':' or 'AWS/'"
        )
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = settings.value(name, env)
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name}={raw!r}: expected a positive whole number")
    return int(raw)
