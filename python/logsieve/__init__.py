"""logsieve: JSON Lines logs in, validated Arrow/Parquet out, nothing lost.

The heavy lifting lives in the private Rust extension `logsieve._core`; this package re-exports
its API and adds the Python layer around it (storage, AWS handler, HTTP API, command line).
"""

from __future__ import annotations

import os

# Allocator settings for the core's mimalloc, read once when the extension loads (explicit
# MIMALLOC_* variables win). Keep freed memory 10 s for reuse (mimalloc's default is 1 s; jemalloc
# keeps it 10 s): each call's output columns are freed while the caller writes them out, and the
# next call would otherwise fault fresh, zeroed pages in again (about 15% of a call's time).
# Commit arena memory as it is touched, not whole regions: with transparent huge pages that held
# ~40 MB more resident while streaming a 1 GiB file, at no measurable speed.
for _name, _value in (("MIMALLOC_PURGE_DELAY", "10000"), ("MIMALLOC_ARENA_EAGER_COMMIT", "0")):
    os.environ.setdefault(_name, _value)

from logsieve._core import ERROR_CODES, Batch, Stats, __version__, process  # noqa: E402
from logsieve.stream import DEFAULT_CHUNK_SIZE, process_stream  # noqa: E402

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ERROR_CODES",
    "Batch",
    "Stats",
    "__version__",
    "process",
    "process_stream",
]
