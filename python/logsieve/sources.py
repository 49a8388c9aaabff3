"""Where log bytes come from: local files, directories, globs, stdin and S3 objects.

Every opener hands back a plain binary stream of *decompressed* JSON Lines, read lazily, so that
the core sees the same thing whatever the input looks like and memory stays bounded by the chunk
size. A corrupt or truncated compressed stream raises `SourceError` instead of ending early:
a half-decoded source must never pass for a complete one.
"""

from __future__ import annotations

import glob
import gzip
import io
import itertools
import os
import stat
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Protocol, cast

from logsieve.errors import SourceError
from logsieve.stream import SupportsRead, read_count

#: Suffixes picked up when a directory is given; compressed variants add `.gz` / `.zst`.
LOG_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".log", ".ndjson")
GZIP_SUFFIXES: tuple[str, ...] = (".gz", ".gzip")
ZSTD_SUFFIXES: tuple[str, ...] = (".zst", ".zstd")
_GZIP_ENCODINGS = {"gzip", "x-gzip"}
_ZSTD_ENCODINGS = {"zstd"}
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_DEFLATE = 8  # CM, the header's third byte: the only compression method gzip defines
_GZIP_RESERVED_FLAGS = 0xE0  # FLG bits 5-7, zero in every real gzip header
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_RESERVED_BIT = 0x08  # of the Frame_Header_Descriptor, the byte after the magic
#: Bytes looked at to tell compressed from plain input: enough for the headers and the start of
#: the first block, little enough that a trial decode of them stays small.
_SNIFF_SIZE = 64
_READ_SIZE = 1 << 20


class Readable(SupportsRead, Protocol):
    """The least a wrapper here reads from: a file, an S3 body, stdin's spool, another wrapper."""

    def close(self) -> None: ...


class ByteStream(Readable, Protocol):
    """A binary stream the openers hand out: a plain file or one of the decoding wrappers here.

    A protocol rather than `BinaryIO`, which names a class the `io` wrappers do not derive from.
    """

    def __enter__(self) -> ByteStream: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
        /,
    ) -> None: ...


def compression_of(name: str, content_encoding: str | None = None) -> str | None:
    """`"gzip"`, `"zstd"` or None, from the name's suffix or an HTTP/S3 Content-Encoding."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in _GZIP_ENCODINGS:
        return "gzip"
    if encoding in _ZSTD_ENCODINGS:
        return "zstd"
    lowered = name.lower()
    if lowered.endswith(GZIP_SUFFIXES):
        return "gzip"
    if lowered.endswith(ZSTD_SUFFIXES):
        return "zstd"
    return None


def sniff_compression(head: bytes) -> str | None:
    """`"gzip"` or `"zstd"` when `head`, the first bytes of a stream, really starts one.

    Magic bytes alone misfire on a plain log whose first line happens to start with them (it
    must become one error record, not fail the whole file), so the header fields after the magic
    are checked too (gzip: method deflate, reserved flags zero; zstd: the frame header's reserved
    bit zero), as far as `head` holds them, and `head` must begin to decode without an error.
    """
    if head.startswith(_GZIP_MAGIC) and _gzip_header_ok(head) and _decodes("gzip", head):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC) and _zstd_header_ok(head) and _decodes("zstd", head):
        return "zstd"
    return None


def _gzip_header_ok(head: bytes) -> bool:
    method, flags = head[2:3], head[3:4]
    if method and method[0] != _GZIP_DEFLATE:
        return False
    return not (flags and flags[0] & _GZIP_RESERVED_FLAGS)


def _zstd_header_ok(head: bytes) -> bool:
    descriptor = head[4:5]
    return not (descriptor and descriptor[0] & _ZSTD_RESERVED_BIT)


def _decodes(kind: str, head: bytes) -> bool:
    """Whether `head` decodes as the start of a `kind` stream (it may stop short of the end)."""
    if kind == "gzip":
        try:
            zlib.decompressobj(wbits=31).decompress(head)
        except zlib.error:
            return False
        return True
    import zstandard

    try:
        zstandard.ZstdDecompressor().decompressobj().decompress(head)
    except zstandard.ZstdError:
        return False
    return True


def decompressing(raw: ByteStream, name: str, content_encoding: str | None = None) -> ByteStream:
    """Wrap `raw` so that reads return decompressed bytes; plain inputs come back unchanged.

    gzip (several members allowed) for `.gz` or Content-Encoding gzip, zstd (several frames
    allowed) for `.zst` or Content-Encoding zstd, and either by its first bytes when neither the
    name nor the encoding says (a compressed upload without its suffix would otherwise become
    one garbage error record per "line"; see `sniff_compression` for why plain bytes that
    merely start with a magic number stay plain). A stream named or sniffed as compressed that
    is corrupt or ends before its end-of-stream marker raises `SourceError` naming `name`, at
    the read that finds out.
    """
    kind = compression_of(name, content_encoding)
    if kind is None:
        raw, head = _peek(raw, _SNIFF_SIZE)
        kind = sniff_compression(head)
    if kind == "gzip":
        return _GzipReader(raw, name)
    if kind == "zstd":
        return _ZstdReader(raw, name)
    return raw


def _peek(raw: ByteStream, size: int) -> tuple[ByteStream, bytes]:
    """The first `size` bytes, and a stream that still yields them."""
    peek = getattr(raw, "peek", None)
    if callable(peek):
        return raw, peek(size)[:size]
    head = b""
    while len(head) < size and (more := raw.read(size - len(head))):
        head += more
    return _Rewound(raw, head), head


class _Wrapper(io.RawIOBase):
    """A readable raw stream over another one, which it closes with itself."""

    def __init__(self, raw: Readable) -> None:
        super().__init__()
        self._raw = raw

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        # RawIOBase.read gives None only when readinto does, which none of ours ever returns.
        return super().read(size) or b""

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


class _Rewound(_Wrapper):
    """`raw` with bytes already read from it put back in front."""

    def __init__(self, raw: Readable, head: bytes) -> None:
        super().__init__(raw)
        self._head = head

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return _read_into(self._raw, view)


def _read_into(raw: Readable, buffer: Any) -> int:
    """Bytes of `raw` into `buffer`: straight in where `raw` has `readinto` (a file: the kernel's
    one copy), else a `read` and a copy."""
    readinto = getattr(raw, "readinto", None)
    if not callable(readinto):
        data = raw.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)
    return read_count(readinto(buffer))


class _DecodingReader(_Wrapper):
    """A read-only stream over a decoder; subclasses say how to decode the next bytes."""

    def __init__(self, raw: Readable, name: str) -> None:
        super().__init__(raw)
        self._name = name

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._decode(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        return self._decode(size) if size else b""

    def readall(self) -> bytes:
        parts = []
        while part := self._decode(_READ_SIZE):
            parts.append(part)
        return b"".join(parts)

    def _decode(self, size: int) -> bytes:
        raise NotImplementedError

    def _fail(self, what: str, exc: BaseException | None = None) -> SourceError:
        reason = f": {exc}" if exc is not None and str(exc) else ""
        return SourceError(f"{self._name}: {what}{reason}")


class _GzipReader(_DecodingReader):
    def __init__(self, raw: Readable, name: str) -> None:
        super().__init__(raw, name)
        # typeshed also asks the file object for `seek`, which GzipFile needs only to rewind:
        # reading forward, as here, calls `read` alone (S3 bodies and pipes cannot seek).
        self._gzip = gzip.GzipFile(fileobj=cast(Any, raw), mode="rb")

    def _decode(self, size: int) -> bytes:
        try:
            return self._gzip.read(size)
        except EOFError as exc:
            raise self._fail("gzip stream is truncated (ended before its end marker)") from exc
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise self._fail("not a valid gzip stream", exc) from exc

    def close(self) -> None:
        try:
            self._gzip.close()
        finally:
            super().close()


class _ZstdReader(_DecodingReader):
    """zstd via `zstandard.decompressobj`, which (unlike its stream reader) reveals truncation."""

    def __init__(self, raw: Readable, name: str) -> None:
        super().__init__(raw, name)
        import zstandard

        self._zstd_error = zstandard.ZstdError
        self._decompressor = zstandard.ZstdDecompressor()
        self._decoder = self._decompressor.decompressobj()
        self._in_frame = False  # bytes of the current frame were fed and its end was not seen
        self._pending = b""
        self._input_done = False

    def _decode(self, size: int) -> bytes:
        while len(self._pending) < size and not self._input_done:
            self._pending += self._feed(self._raw.read(_READ_SIZE))
        out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def _feed(self, compressed: bytes) -> bytes:
        if not compressed:
            self._input_done = True
            if self._in_frame:
                raise self._fail("zstd stream is truncated (ended inside a frame)")
            return b""
        out = []
        try:
            while compressed:
                self._in_frame = True
                out.append(self._decoder.decompress(compressed))
                if not self._decoder.eof:
                    break
                self._in_frame = False
                compressed = self._decoder.unused_data
                self._decoder = self._decompressor.decompressobj()
        except self._zstd_error as exc:
            raise self._fail("not a valid zstd stream", exc) from exc
        return b"".join(out)


class CountingReader(_Wrapper):
    """Passes reads through and reports how many bytes went by (progress bars, MB/s)."""

    def __init__(self, raw: Readable, on_read: Callable[[int], None] | None = None) -> None:
        super().__init__(raw)
        self._on_read = on_read
        self.count = 0

    def readinto(self, buffer: Any) -> int:
        n = _read_into(self._raw, buffer)
        self._counted(n)
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._counted(len(data))
        return data

    def _counted(self, n: int) -> None:
        if n:
            self.count += n
            if self._on_read is not None:
                self._on_read(n)


# --- S3 -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3ObjectInfo:
    """What S3 said about the object: identity for the source-id, arrival time for error dates."""

    bucket: str
    key: str
    size: int
    etag: str
    last_modified: datetime
    version_id: str | None = None
    content_encoding: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def open_s3_object(s3_client: Any, bucket: str, key: str) -> tuple[ByteStream, S3ObjectInfo]:
    """Stream an S3 object's body, decompressed; nothing is downloaded before the first read.

    botocore errors (a missing key, throttling, a dropped connection) propagate unchanged so that
    the caller can tell transient failures (retry) from bad content (`SourceError`).
    """
    response = s3_client.get_object(Bucket=bucket, Key=key)
    last_modified = response.get("LastModified") or datetime.now(timezone.utc)
    if last_modified.tzinfo is None:
        last_modified = last_modified.replace(tzinfo=timezone.utc)
    info = S3ObjectInfo(
        bucket=bucket,
        key=key,
        size=int(response.get("ContentLength", 0)),
        etag=str(response.get("ETag", "")).strip('"'),
        last_modified=last_modified,
        version_id=response.get("VersionId"),
        content_encoding=response.get("ContentEncoding"),
    )
    body = response["Body"]
    return decompressing(body, key, info.content_encoding), info


# --- local inputs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalInput:
    """One resolved local input: a file (by absolute path) or stdin (`path` is None)."""

    spec: str
    path: Path | None

    @property
    def is_stdin(self) -> bool:
        return self.path is None

    @property
    def size(self) -> int | None:
        return None if self.path is None else self.path.stat().st_size

    @property
    def arrival(self) -> datetime:
        """The file's modification time (UTC): when its contents arrived; now for stdin."""
        if self.path is None:
            return datetime.now(timezone.utc)
        return datetime.fromtimestamp(self.path.stat().st_mtime, tz=timezone.utc)

    def open_raw(self) -> BinaryIO:
        """The undecoded bytes; raises `SourceError` when the file cannot be opened."""
        if self.path is None:
            return sys.stdin.buffer
        try:
            return open(self.path, "rb")
        except OSError as exc:
            raise SourceError(f"{self.spec}: cannot open: {exc.strerror or exc}") from exc


@dataclass(frozen=True)
class UnreadableInput:
    """An input spec that names nothing readable, and why; reported, never silently skipped."""

    spec: str
    reason: str


def is_log_file(path: Path) -> bool:
    """Whether a file found inside a directory looks like a log we should read."""
    name = path.name.lower()
    for suffix in GZIP_SUFFIXES + ZSTD_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.endswith(LOG_SUFFIXES) and not path.name.startswith((".", "_"))


def resolve_local_inputs(
    specs: Iterable[str], *, exclude: Iterable[Path] = (), skipped: list[Path] | None = None
) -> tuple[list[LocalInput], list[UnreadableInput]]:
    """Expand files, directories (recursively) and globs, in a stable order, without duplicates.

    Files named explicitly are taken whatever their suffix; inside directories only log files
    (`is_log_file`) are, skipping hidden entries. Directory walks and glob matches both pass
    over, appending them to `skipped` (`skip_reason` says why): anything under `exclude` (the
    output directory, so that re-runs never ingest their own output), logsieve and table output
    directories (`is_output_dir`, e.g. an earlier run's `--out`) and what is not a regular
    file: a FIFO, socket or device named `*.jsonl` would block the run or never end. Named
    explicitly, a non-regular file is refused ("not a regular file", in the second list) rather
    than read: a FIFO among files is far more often an accident than a stream (nobody writes to
    it, and the run would wait forever), and a stream has its own spelling, `- < FIFO`.
    """
    excluded = [p.resolve() for p in exclude]
    skipped = [] if skipped is None else skipped
    found: list[LocalInput] = []
    bad: list[UnreadableInput] = []
    seen: set[Path] = set()

    def add(spec: str, path: Path) -> None:
        resolved = path.resolve()
        if resolved not in seen:
            seen.add(resolved)
            found.append(LocalInput(spec=spec, path=resolved))

    def walk(spec: str, directory: Path, named: bool) -> None:
        files = _log_files_under(directory, excluded, skipped)
        for file in files:
            add(str(file), file)
        if not files and named:
            bad.append(UnreadableInput(spec, "directory holds no log files"))

    for spec in specs:
        if spec == "-":
            if not any(item.is_stdin for item in found):
                found.append(LocalInput(spec="-", path=None))
            continue
        path = Path(spec).expanduser()
        if path.exists() or path.is_symlink():
            if path.is_dir() and is_output_dir(path):
                reason = "is a logsieve output directory; name its files to ingest them"
                bad.append(UnreadableInput(spec, reason))
            elif path.is_dir():
                walk(spec, path, named=True)
            elif path.is_file():
                add(str(path), path)
            else:
                bad.append(UnreadableInput(str(path), "not a regular file"))
            continue
        if not glob.has_magic(spec):
            bad.append(UnreadableInput(spec, "no such file or directory"))
            continue
        pattern = os.path.expanduser(spec)
        matches = [Path(m) for m in sorted(glob.glob(pattern, recursive=True))]
        if not matches:
            bad.append(UnreadableInput(spec, "no file matches this pattern"))
        for match in matches:
            if _under_output(match, _glob_root(pattern), excluded) or not (
                match.is_dir() or match.is_file()
            ):
                skipped.append(match)
            elif match.is_dir():
                walk(spec, match, named=False)
            else:
                add(str(match), match)
    return found, bad


def is_output_dir(directory: Path) -> bool:
    """Whether `directory` holds logsieve or table output, never to be read back as input.

    Error roots hold `_logsieve/` (manifests, staging) and clean tables `_delta_log/` (a Delta
    Lake table); logs directories hold neither.
    """
    return (directory / "_logsieve").is_dir() or (directory / "_delta_log").is_dir()


def skip_reason(path: Path) -> str:
    """Why `resolve_local_inputs` left `path` out, for the note a command prints about it."""
    if path.is_dir():
        return "a logsieve output directory"
    if path.is_file():
        return "inside a logsieve output directory"
    return _not_regular(path)


def _not_regular(path: Path) -> str:
    """What kind of non-regular file `path` is, and why it is not read."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return "a broken symbolic link (its target does not exist)"
    kinds = {
        stat.S_ISFIFO: "a named pipe (FIFO)",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
    }
    kind = next((name for test, name in kinds.items() if test(mode)), "special")
    return f"{kind}, not a regular file: reading it could wait forever or never end"


def _glob_root(pattern: str) -> Path:
    """The directory a glob pattern searches: its leading parts without wildcards."""
    parts = Path(pattern).parts
    return Path(*itertools.takewhile(lambda part: not glob.has_magic(part), parts))


def _under_output(match: Path, root: Path, excluded: list[Path]) -> bool:
    """Whether a glob match lies under `excluded` or in an output directory the glob reached.

    Output directories count from the pattern's literal root down, so that a pattern aimed at
    an earlier run's output skips it just as a directory walk would.
    """
    resolved = match.resolve()
    if any(resolved == e or resolved.is_relative_to(e) for e in excluded):
        return True
    try:
        below = match.relative_to(root).parts
    except ValueError:
        root, below = Path(), match.parts
    directories = [root]
    for part in below:
        directories.append(directories[-1] / part)
    return any(is_output_dir(directory) for directory in directories)


def _log_files_under(directory: Path, excluded: list[Path], skipped: list[Path]) -> list[Path]:
    files = []
    for root, dirnames, filenames in os.walk(directory):
        root_path = Path(root)
        keep = []
        for d in sorted(dirnames):
            if d.startswith((".", "_")) or (root_path / d).resolve() in excluded:
                continue
            if is_output_dir(root_path / d):
                skipped.append(root_path / d)
            else:
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            file = root_path / name
            if not is_log_file(file):
                continue
            if file.is_file():
                files.append(file)
            else:
                skipped.append(file)
    return files


def open_local_input(item: LocalInput) -> ByteStream:
    """Decompressed stream of one local input (stdin compression is recognised by magic bytes)."""
    raw = item.open_raw()
    if item.path is not None:
        return decompressing(raw, str(item.path))
    return decompressing(raw, "<stdin>")


def iter_local_inputs(specs: list[str]) -> Iterator[tuple[str, ByteStream]]:
    """(name, decompressed stream) per input; the name is the absolute path, or `-` for stdin.

    Every spec is resolved before anything is yielded, so a missing input raises `SourceError`
    up front instead of after half the work. The caller closes each stream.
    """
    found, bad = resolve_local_inputs(specs)
    if bad:
        raise SourceError("; ".join(f"{b.spec}: {b.reason}" for b in bad))
    for item in found:
        yield ("-" if item.path is None else str(item.path)), open_local_input(item)


def prepend(head: bytes, stream: ByteStream) -> ByteStream:
    """`stream` with `head`, bytes already read from it, put back in front; reads into a buffer
    (`readinto`) go on into the caller's buffer, not through a copy."""
    return _Rewound(stream, head) if head else stream


def read_exactly(stream: Any, size: int) -> bytes:
    """`size` bytes from `stream`, fewer only at its end (one read may return less)."""
    parts = []
    while size > 0 and (part := stream.read(size)):
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


__all__ = [
    "ByteStream",
    "CountingReader",
    "LocalInput",
    "Readable",
    "S3ObjectInfo",
    "UnreadableInput",
    "compression_of",
    "decompressing",
    "is_log_file",
    "is_output_dir",
    "iter_local_inputs",
    "open_local_input",
    "open_s3_object",
    "prepend",
    "read_exactly",
    "resolve_local_inputs",
    "skip_reason",
    "sniff_compression",
]
