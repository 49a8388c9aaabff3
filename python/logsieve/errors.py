"""Every exception logsieve raises, in one place.

The Rust core raises these too (it imports them from here), so `except LogsieveError` catches
anything the library refuses to do, while wrong argument types stay plain `TypeError`s.
"""

from __future__ import annotations


class LogsieveError(Exception):
    """Base class: logsieve could not do what it was asked, and says why."""


class InputTooLargeError(LogsieveError, ValueError):
    """One `process` call got more bytes than one Arrow batch can index; stream it instead."""


class ConfigError(LogsieveError, ValueError):
    """A setting (argument, environment variable, field name) is missing or malformed."""


class NoCleanTableError(ConfigError):
    """The clean table a command reads or replays into does not exist (yet)."""


class MissingExtraError(LogsieveError):
    """A command needs an optional part of the install (an extra) that is not installed."""


class SourceError(LogsieveError):
    """An input (file, S3 object, stream) could not be read or decoded."""


class OutputError(LogsieveError):
    """Output could not be written (no such bucket, no permission, disk full): not the input."""


class EventError(LogsieveError, ValueError):
    """An event the AWS handler cannot read: not an S3, SQS, SNS or EventBridge notification."""


class ConcurrentIngestError(LogsieveError):
    """Another ingest of the same source published at the same time; retrying resolves it."""


class InternalError(LogsieveError):
    """A bug in logsieve: the core caught a panic instead of crashing the interpreter."""


class QueryParameterError(LogsieveError, ValueError):
    """An HTTP query parameter is unknown or malformed; the API answers 400 naming it."""

    def __init__(self, parameter: str, message: str, accepted: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.accepted = accepted


__all__ = [
    "ConcurrentIngestError",
    "ConfigError",
    "EventError",
    "InputTooLargeError",
    "InternalError",
    "LogsieveError",
    "MissingExtraError",
    "NoCleanTableError",
    "OutputError",
    "QueryParameterError",
    "SourceError",
]
