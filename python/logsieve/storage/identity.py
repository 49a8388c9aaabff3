"""What a source is: its identity (`source_id`), the content mark that tells one version of it
from another, the `Source` an ingest reads, and the field names the core looks for."""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from logsieve.errors import ConfigError

_SLUG_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def source_id(source: str) -> str:
    """Stable, filename- and S3-safe name: a readable slug of the identity plus a hash of it.

    `s3://logs/app/2025-08-20.jsonl.gz` -> `2025-08-20.jsonl.gz-<20 hex digits>`. The hash makes
    names of different sources distinct even when their last path components are equal.
    """
    if not source:
        raise ConfigError("a source needs a non-empty name to derive its id from")
    digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    tail = source.rstrip("/").rsplit("/", 1)[-1]
    slug = _SLUG_CHARS.sub("_", tail).strip("._-")[:60]
    return f"{slug}-{digest}" if slug else digest


@dataclass(frozen=True)
class ContentMark:
    """How a source's content begins: its first `length` bytes hash to `sha256`.

    Recorded in the ledger for local files, whose identity is a fingerprint of the first line:
    a later file with that fingerprint is the same source only if it begins with these bytes
    (a copy, or the file grown), not merely with the same line.
    """

    length: int
    sha256: str

    def begins(self, head: bytes) -> bool:
        """Whether content starting with `head` starts with the marked bytes."""
        return len(head) >= self.length and (
            hashlib.sha256(head[: self.length]).hexdigest() == self.sha256
        )


@dataclass(frozen=True)
class Source:
    """One source to ingest.

    `identity` decides which earlier rows an ingest replaces (`s3://bucket/key` for an object,
    a content fingerprint for a local file); `name` is what rows and error records call it;
    `version` tells a repeat from a change (an ETag, a size and mtime); `arrival` dates its
    error records; `open` gives its decompressed bytes, once per attempt.
    """

    identity: str
    name: str
    version: str
    open: Callable[[], contextlib.AbstractContextManager[Any]]
    arrival: datetime | None = None
    size: int | None = None
    content: ContentMark | None = None

    @property
    def slug(self) -> str:
        return source_id(self.identity)


def stream_source(
    stream: Any, *, name: str, identity: str | None = None, version: str | None = None, **kw: Any
) -> Source:
    """A Source for an already open stream (one attempt only)."""
    return Source(
        identity=identity or name,
        name=name,
        version=version or f"unversioned-{time.time_ns()}",
        open=lambda: contextlib.nullcontext(stream),
        **kw,
    )


@dataclass(frozen=True)
class FieldNames:
    """The input's names for the three required fields (output columns keep standard names)."""

    timestamp: str = "timestamp"
    user_id: str = "user_id"
    action: str = "action"
