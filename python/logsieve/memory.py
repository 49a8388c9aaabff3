"""The allocators of the processes that stream files: `logsieve process`, `logsieve simulate`
and the Lambda worker.

Streaming a file allocates and frees a batch's worth of memory many times a second, in two
allocators: Arrow's pool (slices, statistics, lineage columns) and the core's mimalloc (parsed
columns, the Parquet encoder's pages and their compressed copies). Both keep freed memory mapped
for reuse (pyarrow's mimalloc 1 s, the core's 3 s), so while `logsieve process` streams 1 GiB,
freed pages pile up. For such processes Arrow's pool becomes jemalloc handing dirty pages back
after 0.1 s (peak 354-367 -> 279-298 MB when Arrow still encoded the Parquet files), and the
core's purge delay 0.1 s (327 -> 280 MB with the core's encoder), at the same speed.

Arrow picks its default pool once, when pyarrow is imported. `pyarrow.set_memory_pool` later
only changes the pool pyarrow's Python calls pass down; Arrow code that takes no pool from Python
keeps the first one (set after the import, jemalloc saved a third as much). So the choice is made
through `ARROW_DEFAULT_MEMORY_POOL` before the first import. Only entry points call this: a
library must not change the allocator of the process it is imported into. Not the HTTP API
either: `logsieve serve` answered 2-17% fewer requests per second under jemalloc.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

#: How long the core's allocator (mimalloc) keeps freed memory in a streaming process, in ms
#: (the extension loads with 3 s; why less here: the module's docstring).
STREAMING_PURGE_DELAY_MS = 100

#: jemalloc settings (`JE_ARROW_MALLOC_CONF`): freed pages go back to the OS after 0.1 s, straight
#: away rather than through MADV_FREE, whose pages still count as resident until the kernel wants
#: them.
LEAN_JEMALLOC_CONF = "dirty_decay_ms:100,muzzy_decay_ms:0"


def use_lean_memory() -> None:
    """Both allocators set for streaming: Arrow's pool (`use_lean_arrow_pool`) and the core's
    purge delay, unless the user chose one (`MIMALLOC_PURGE_DELAY`)."""
    use_lean_arrow_pool()
    if "MIMALLOC_PURGE_DELAY" not in os.environ:
        from logsieve import _core

        _core.set_purge_delay(STREAMING_PURGE_DELAY_MS)


def use_lean_arrow_pool() -> bool:
    """Ask for jemalloc as pyarrow's default pool if nothing decided yet; True if it was asked.

    Left alone: a pool the user chose (`ARROW_DEFAULT_MEMORY_POOL`), a process that already
    imported pyarrow (too late to choose), and a pyarrow built without jemalloc (Arrow would
    print a warning on every start). A `JE_ARROW_MALLOC_CONF` of the user's is kept.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL") or "pyarrow" in sys.modules:
        return False
    if not pyarrow_has_jemalloc():
        return False
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "jemalloc"
    os.environ.setdefault("JE_ARROW_MALLOC_CONF", LEAN_JEMALLOC_CONF)
    return True


def pyarrow_has_jemalloc() -> bool:
    """Whether the installed pyarrow was built with jemalloc, without importing it.

    Its wheels ship Arrow's build configuration header, which defines ARROW_JEMALLOC when
    jemalloc is compiled in (the Linux wheels are; Windows builds never are). Without the header
    the answer is no, so nothing changes.
    """
    spec = importlib.util.find_spec("pyarrow")
    if spec is None or not spec.submodule_search_locations:
        return False
    for location in spec.submodule_search_locations:
        header = Path(location, "include", "arrow", "util", "config.h")
        try:
            text = header.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        return any(line.strip() == "#define ARROW_JEMALLOC" for line in text.splitlines())
    return False


__all__ = [
    "LEAN_JEMALLOC_CONF",
    "STREAMING_PURGE_DELAY_MS",
    "pyarrow_has_jemalloc",
    "use_lean_arrow_pool",
    "use_lean_memory",
]
