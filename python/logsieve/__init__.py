"""logsieve: JSON Lines logs in, validated Arrow/Parquet out, nothing lost.

The heavy lifting lives in the private Rust extension `logsieve._core`; this package re-exports
its API and adds the Python layer around it (storage, AWS handler, HTTP API, command line).
"""

from __future__ import annotations

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
