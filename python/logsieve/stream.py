"""Streaming: feed the core from a file or an iterator of chunks, in bounded memory.

Lines split across chunk boundaries are carried over and joined, line numbers continue from
batch to batch, and each batch is the exact result `process` would give for those lines.

Three stages overlap, each in its own thread, one item ahead: reading (and decompressing) the
next chunk, the core working on the current one (GIL released, all cores), and the caller
consuming the previous batch (e.g. writing Parquet). Memory stays at a few chunks.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, Protocol, TypeVar, Union

from logsieve import _core
from logsieve.errors import ConfigError

DEFAULT_CHUNK_SIZE = 4 << 20
"""Bytes handed to the core per call: big enough to amortise the call and use every core."""


class SupportsRead(Protocol):
    """A binary stream: `read(n)`, and `readinto` used instead where it has one."""

    def read(self, size: int = -1, /) -> bytes: ...


Source = Union[BinaryIO, SupportsRead, Iterable[bytes]]
T = TypeVar("T")
_Run = tuple[bytearray, int, bool]
_DONE = object()


def process_stream(
    source: Source,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    *,
    timestamp_field: str = "timestamp",
    user_id_field: str = "user_id",
    action_field: str = "action",
) -> Iterator[_core.Batch]:
    """Yield one `Batch` per ~`chunk_size` bytes of complete lines read from `source`.

    `source` is a binary file-like object (read with `.readinto` straight into reused buffers
    when it has one, else `.read(n)`) or an iterable of bytes-like chunks of any size. Memory
    stays around two chunks plus the longest line.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise TypeError(f"chunk_size must be an int, got {type(chunk_size).__name__}")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be at least 1 byte, got {chunk_size}")
    fields = (timestamp_field, user_id_field, action_field)
    runs = _runs(_Filler(source, chunk_size).fill, chunk_size)
    yield from _ahead(_batches(_ahead(runs), fields))


def _ahead(items: Iterator[T]) -> Iterator[T]:
    """Yield `items`, producing the next one in a background thread while this one is used."""
    from concurrent.futures import (
        ThreadPoolExecutor,
    )  # not at import: `import logsieve` stays light

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="logsieve-stream") as pool:
        pending = pool.submit(next, items, _DONE)
        while True:
            item = pending.result()
            if item is _DONE:
                return
            pending = pool.submit(next, items, _DONE)
            yield item  # type: ignore[misc]


def _batches(runs: Iterator[_Run], fields: tuple[str, str, str]) -> Iterator[_core.Batch]:
    """Process each run of complete lines, numbering lines on from the previous run."""
    first_line = 1
    for buffer, length, last in runs:
        batch, _ = _core.process_lines(buffer, length, first_line, last, *fields)
        if batch is not None:
            first_line += batch.stats.processed + batch.stats.blank
            yield batch


def _runs(fill: Callable[[memoryview], int], chunk_size: int) -> Iterator[_Run]:
    """(buffer, length, last): about `chunk_size` bytes of complete lines at a time.

    Bytes are read straight into two buffers in turn, so the only copy is the partial line at
    the end of a run, moved to the front of the next one. Refilling a buffer is safe because
    `process_stream` runs one item ahead per stage: run k+1 is read while run k is processed,
    and run k-1, the buffer's previous content, is done by then. A line longer than the buffer
    grows it, and the next run lets it go: memory is two chunks plus the longest line.

    The growth is in place and by a quarter (`_grow`), not by doubling into a new buffer: that
    held the old and the new buffer at once and up to twice the line, so a 300 MB line took a
    512 MB buffer. Only the newly read bytes are searched for a line end.
    """
    buffers = [bytearray(chunk_size), bytearray(chunk_size)]
    current = 0
    carried = memoryview(b"")
    while True:
        buffer = buffers[current]
        if len(buffer) <= len(carried):  # a long partial line: leave room to read
            buffer = buffers[current] = bytearray(len(carried) + chunk_size)
        elif len(buffer) > chunk_size and len(carried) < chunk_size:  # long line done: shrink
            buffer = buffers[current] = bytearray(chunk_size)
        buffer[: len(carried)] = carried
        filled = searched = len(carried)  # a carried partial line holds no line end
        carried = memoryview(b"")
        if len(buffers[current ^ 1]) > chunk_size:
            # The previous run held a long line: let it go once its batch is made, not two
            # runs later, while the batch is being written.
            buffers[current ^ 1] = bytearray(chunk_size)
        while True:
            with memoryview(buffer) as view:
                while filled < len(buffer) and (n := fill(view[filled:])):
                    filled += n
            if filled < len(buffer):  # the source is exhausted
                if filled:
                    yield buffer, filled, True
                return
            end = buffer.rfind(b"\n", searched, filled) + 1
            if end:
                break
            searched = filled
            _grow(buffer, max(chunk_size, len(buffer) // 4))  # no line ends in it: a long line
        carried = memoryview(buffer)[end:filled]
        yield buffer, end, False
        current ^= 1


def _grow(buffer: bytearray, size: int) -> None:
    """Make `buffer` `size` bytes longer in place.

    A big bytearray is resized with `realloc`, which moves its pages rather than copying them,
    and the zeros come from a calloc'ed `bytes` whose pages are never touched: so the only new
    memory is the part that reading then fills.
    """
    buffer += bytes(size)


class _Filler:
    """`fill(view) -> bytes written`: `readinto` when the source has it, else copied chunks."""

    def __init__(self, source: Source, chunk_size: int) -> None:
        readinto = getattr(source, "readinto", None)
        self._readinto: Callable[[memoryview], int | None] | None = (
            readinto if callable(readinto) else None
        )
        self._chunks = _chunks(source, chunk_size)  # a generator: reads nothing until used
        self._rest = memoryview(b"")

    def fill(self, view: memoryview) -> int:
        if self._readinto is not None:
            try:
                return read_count(self._readinto(view))
            except (NotImplementedError, io.UnsupportedOperation):
                self._readinto = None  # a raw stream that only implements read()
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._rest = memoryview(chunk)
        n = min(len(view), len(self._rest))
        view[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def read_count(n: int | None) -> int:
    """What a `readinto` returned, as bytes read. None (a non-blocking stream with nothing yet)
    is not taken for the end: that would cut the input short without a word."""
    if n is None:
        raise BlockingIOError("the input is a non-blocking stream with no data yet")
    return int(n)


def _chunks(source: Source, chunk_size: int) -> Iterator[bytes]:
    """Bytes chunks from a binary file-like object or an iterable, with clear type errors."""
    read = getattr(source, "read", None)
    if callable(read):
        while True:
            chunk = read(chunk_size)
            if not chunk:
                return
            yield _as_bytes(chunk, "read()")
    else:
        if isinstance(source, (str, bytes, bytearray, memoryview)):
            kind = "a str" if isinstance(source, str) else "a single bytes object"
            raise TypeError(
                f"process_stream() expects a binary file-like object or an iterable of bytes "
                f"chunks, got {kind}; use logsieve.process() for data already in memory"
            )
        try:
            iterator = iter(source)  # type: ignore[arg-type]  # anything but a reader: try it
        except TypeError:
            raise TypeError(
                "process_stream() expects a binary file-like object or an iterable of bytes "
                f"chunks, got {type(source).__name__}"
            ) from None
        for chunk in iterator:
            yield _as_bytes(chunk, "the iterator")


def _as_bytes(chunk: object, origin: str) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, (bytearray, memoryview)):
        return bytes(chunk)
    if isinstance(chunk, str):
        raise TypeError(
            f"process_stream() got str from {origin}: open files in binary mode ('rb') "
            "or encode the text"
        )
    raise TypeError(f"process_stream() got {type(chunk).__name__} from {origin}, expected bytes")
