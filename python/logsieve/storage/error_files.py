"""Error records: one JSON object per invalid line (docs/contract.md), their keys under
`date=YYYY-MM-DD/`, and the per-source tallies and files an ingest writes them into."""

from __future__ import annotations

import base64
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from logsieve.storage.sinks import _output_errors

if TYPE_CHECKING:
    from logsieve import Batch


SAMPLE_ERRORS = 5


def error_record(source: str, line: int, code: str, detail: str, raw: bytes) -> dict[str, Any]:
    """One error record: the raw line as text, or as `raw_base64` when it is not UTF-8."""
    record: dict[str, Any] = {"source": source, "line": line, "error": code, "detail": detail}
    try:
        record["raw"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["raw_base64"] = base64.b64encode(raw).decode("ascii")
    return record


def raw_bytes(record: dict[str, Any]) -> bytes:
    """The exact bytes of the line an error record describes (the inverse of `error_record`)."""
    if "raw_base64" in record:
        return base64.b64decode(record["raw_base64"])
    return record["raw"].encode("utf-8")


def error_key(date: str, name: str) -> str:
    return f"date={date}/{name}.jsonl"


@dataclass
class _SourceTally:
    """What the core counted for one source while it streamed."""

    totals: Counter[str] = field(default_factory=Counter)
    error_counts: Counter[str] = field(default_factory=Counter)
    samples: list[dict[str, Any]] = field(default_factory=list)
    rows_by_date: Counter[str] = field(default_factory=Counter)
    error_date: str | None = None

    @property
    def has_errors(self) -> bool:
        return bool(self.error_counts)


class _ErrorFiles:
    """Staged error records: one JSON Lines file per arrival date for the whole group."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: dict[str, BinaryIO] = {}

    def add(self, batch: Batch, name: str, date: str, tally: _SourceTally) -> None:
        errors = batch.errors
        if errors.num_rows == 0:
            return
        file = self.files.get(date)
        with _output_errors(f"stage error records in {self.directory}"):
            if file is None:
                file = self.files[date] = open(self.directory / f"{date}.jsonl", "wb")  # noqa: SIM115
            # Rendered in Rust, a piece at a time: the same bytes as orjson.dumps(error_record(
            # ...)) per row, and a huge invalid line is never held twice.
            batch.write_error_lines(name, file)
        tally.error_counts.update(batch.error_counts)
        tally.error_date = date
        wanted = SAMPLE_ERRORS - len(tally.samples)
        if wanted > 0:
            head = errors.slice(0, wanted).select(["line", "error", "detail"])
            tally.samples.extend(head.to_pylist())

    def finish(self) -> dict[str, Path]:
        """Date -> complete staged file."""
        with _output_errors(f"stage error records in {self.directory}"):
            for file in self.files.values():
                file.close()
        return {date: self.directory / f"{date}.jsonl" for date in sorted(self.files)}

    def close(self) -> None:
        for file in self.files.values():
            with contextlib.suppress(OSError):
                file.close()
