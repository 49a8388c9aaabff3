"""What an ingest reports: per source (`IngestResult`), the sources that failed, per group."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from logsieve.storage.identity import Source

_STAT_NAMES = ("processed", "valid", "errors", "blank", "bytes")


@dataclass(frozen=True)
class IngestResult:
    """What one source produced. Error keys are S3 object keys for S3, else file paths."""

    source: str
    processed: int
    valid: int
    errors: int
    blank: int
    bytes: int
    error_counts: dict[str, int]
    error_keys: list[str]
    sample_errors: list[dict[str, Any]]
    seconds: float
    source_id: str = ""
    rows_by_date: dict[str, int] = field(default_factory=dict)
    table_version: int | None = None
    already_ingested: bool = False

    @property
    def error_rate(self) -> float:
        return self.errors / self.processed if self.processed else 0.0

    def summary(self) -> dict[str, Any]:
        """The Lambda-style summary: `{"processed", "valid", "errors", ...}`, JSON-ready."""
        return {
            "processed": self.processed,
            "valid": self.valid,
            "errors": self.errors,
            "blank": self.blank,
            "bytes": self.bytes,
            "error_counts": dict(self.error_counts),
            "source": self.source,
            "source_id": self.source_id,
            "rows_by_date": dict(self.rows_by_date),
            "table_version": self.table_version,
            "error_keys": list(self.error_keys),
            "seconds": round(self.seconds, 6),
            **({"already_ingested": True} if self.already_ingested else {}),
        }


@dataclass(frozen=True)
class SourceFailure:
    """A source that could not be read: nothing of it was committed."""

    source: Source
    error: BaseException


@dataclass
class GroupResult:
    """What one group ingest did: a result per ingested source, and the sources that failed."""

    results: dict[str, IngestResult] = field(default_factory=dict)
    failures: list[SourceFailure] = field(default_factory=list)
