"""Streaming: feed the core from a file or an iterator of chunks, in bounded memory.

Lines split across chunk boundaries are carried over and joined, line numbers continue from
batch to batch, and each batch is the exact result `process` would give for those lines.

Three stages overlap, each in its own thread, one item ahead: reading (and decompressing) the
next chunk, the core working on the current one (GIL released, all cores), and the caller
consuming the previous batch (e.g. writing Parquet). Memory stays at a few chunks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, TypeVar, Union

from logsieve import _core
from logsieve.errors import ConfigError

DEFAULT_CHUNK_SIZE = 8 << 20
"""Bytes handed to the core per call: big enough to amortise the call and use every core."""

Source = Union[BinaryIO, Iterable[bytes]]
T = TypeVar("T")
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

    `source` is a binary file-like object (anything with `.read(n)`) or an iterable of
    bytes-like chunks of any size. Memory stays around `chunk_size` plus the longest line.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise TypeError(f"chunk_size must be an int, got {type(chunk_size).__name__}")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be at least 1 byte, got {chunk_size}")
    fields = (timestamp_field, user_id_field, action_field)
    yield from _ahead(_batches(_ahead(_chunks(source, chunk_size)), chunk_size, fields))


def _ahead(items: Iterator[T]) -> Iterator[T]:
    """Yield `items`, producing the next one in a background thread while this one is used."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="logsieve-stream") as pool:
        pending = pool.submit(next, items, _DONE)
        while True:
            item = pending.result()
            if item is _DONE:
                return
            pending = pool.submit(next, items, _DONE)
            yield item  # type: ignore[misc]


def _batches(
    chunks: Iterator[bytes], chunk_size: int, fields: tuple[str, str, str]
) -> Iterator[_core.Batch]:
    """Join chunks into runs of complete lines of about `chunk_size` bytes and process them."""
    first_line = 1
    parts: list[bytes] = []
    pending = 0
    for chunk in chunks:
        if not chunk:
            continue
        parts.append(chunk)
        pending += len(chunk)
        if pending < chunk_size:
            continue
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        batch, consumed = _core.process_lines(data, first_line, False, *fields)
        parts = [data[consumed:]] if consumed < len(data) else []
        pending = len(data) - consumed
        if batch is not None:
            first_line += batch.stats.processed + batch.stats.blank
            yield batch
    if pending:
        batch, _ = _core.process_lines(b"".join(parts), first_line, True, *fields)
        yield batch


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
            iterator = iter(source)
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
