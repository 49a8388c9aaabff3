"""logsieve: JSON Lines logs in, validated Arrow/Parquet out, nothing lost.

The heavy lifting lives in the private Rust extension `logsieve._core`; this package re-exports
its API and adds the Python layer around it (storage, AWS handler, HTTP API, command line).
"""

from __future__ import annotations

import os

# Allocator setting for the core's mimalloc, read once when the extension loads (an explicit
# MIMALLOC_ARENA_EAGER_COMMIT wins): commit arena memory as it is touched, not whole regions;
# with transparent huge pages that held ~40 MB more resident while streaming a 1 GiB file, at
# no measurable speed. Freed memory is kept 1 s for reuse (mimalloc's default): enough for calls
# in a loop, since each call writes its output once, straight into place.
os.environ.setdefault("MIMALLOC_ARENA_EAGER_COMMIT", "0")

from logsieve._core import ERROR_CODES, Batch, Stats, __version__, process
from logsieve.stream import DEFAULT_CHUNK_SIZE, process_stream

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ERROR_CODES",
    "Batch",
    "Stats",
    "__version__",
    "process",
    "process_stream",
]
