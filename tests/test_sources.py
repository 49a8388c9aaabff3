"""Sources: decompression on the fly (and its failures), local input discovery, S3 objects."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import zstandard

from logsieve.errors import SourceError
from logsieve.sources import (
    CountingReader,
    compression_of,
    decompressing,
    is_log_file,
    iter_local_inputs,
    open_s3_object,
    prepend,
    read_exactly,
    resolve_local_inputs,
    skip_reason,
    sniff_compression,
)

PAYLOAD = b"".join(
    b'{"timestamp":"2025-08-20T10:%02d:00Z","user_id":%d,"action":"login"}\n' % (i % 60, i)
    for i in range(5000)
)


def read_in_pieces(stream: io.RawIOBase, size: int = 777) -> bytes:
    parts = []
    while part := stream.read(size):
        assert len(part) <= size
        parts.append(part)
    return b"".join(parts)


@pytest.mark.parametrize(
    ("name", "encoding", "expected"),
    [
        ("a.jsonl", None, None),
        ("a.jsonl.gz", None, "gzip"),
        ("A.LOG.GZ", None, "gzip"),
        ("a.jsonl.zst", None, "zstd"),
        ("a.jsonl", "gzip", "gzip"),
        ("a.jsonl", "x-gzip", "gzip"),
        ("a.jsonl", "zstd", "zstd"),
        ("a.jsonl.gz", "identity", "gzip"),
    ],
)
def test_compression_is_named_by_suffix_or_content_encoding(
    name: str, encoding: str | None, expected: str | None
) -> None:
    assert compression_of(name, encoding) == expected


def test_plain_input_is_passed_through_untouched() -> None:
    raw = io.BufferedReader(io.BytesIO(PAYLOAD))  # a stream that can peek is not even wrapped
    assert decompressing(raw, "x.jsonl") is raw
    assert read_in_pieces(decompressing(io.BytesIO(PAYLOAD), "x.jsonl")) == PAYLOAD


@pytest.mark.parametrize("data", [b"", b"{", b"{}\n", b"\x1f", b"\x1f\x8a"])
def test_short_plain_inputs_keep_every_byte(data: bytes) -> None:
    assert decompressing(io.BytesIO(data), "x.jsonl").read() == data


@pytest.mark.parametrize(
    "compress", [gzip.compress, lambda data: zstandard.ZstdCompressor().compress(data)]
)
def test_compressed_bytes_without_suffix_are_recognised(compress: object) -> None:
    """An upload that lost its .gz/.zst suffix must not become thousands of garbage records."""
    data = compress(PAYLOAD)  # type: ignore[operator]
    assert read_in_pieces(decompressing(io.BytesIO(data), "logs/app.jsonl")) == PAYLOAD
    buffered = io.BufferedReader(io.BytesIO(data))
    assert read_in_pieces(decompressing(buffered, "logs/app.jsonl")) == PAYLOAD


# A plain log whose first line merely starts with a magic number: the header fields after the
# magic (gzip: method 8, reserved flags 0; zstd: the descriptor's reserved bit) or a trial decode
# of the first bytes show that it is not compressed.
PLAIN_WITH_MAGIC = [
    b'\x1f\x8b{"timestamp":"2025-08-20T10:00:00Z","user_id":1,"action":"login"}\n',
    b"\x1f\x8b\x08\xe0 reserved gzip flags set\n",
    b'\x1f\x8b\x08\x00{"timestamp":"2025-08-20T10:00:00Z","user_id":1,"action":"login"}\n',
    b"\x1f\x8b\x08\x00" + b"a" * 200 + b"\n",
    b'\x28\xb5\x2f\xfd{"timestamp":"2025-08-20T10:00:00Z","user_id":1,"action":"login"}\n',
    b"\x28\xb5\x2f\xfd\x00" + b"a" * 200 + b"\n",
]


@pytest.mark.parametrize("first_line", PLAIN_WITH_MAGIC)
def test_plain_bytes_starting_with_a_magic_number_stay_plain(first_line: bytes) -> None:
    data = first_line + PAYLOAD
    assert sniff_compression(data[:64]) is None
    assert read_in_pieces(decompressing(io.BytesIO(data), "logs/app.jsonl")) == data
    buffered = io.BufferedReader(io.BytesIO(data))
    assert read_in_pieces(decompressing(buffered, "logs/app.jsonl")) == data


@pytest.mark.parametrize("first_line", PLAIN_WITH_MAGIC[:2])
def test_plain_bytes_starting_with_a_magic_number_become_one_error_record(
    tmp_path: Path, first_line: bytes
) -> None:
    """End to end through the core: one bad line, every other line kept."""
    import logsieve

    path = tmp_path / "app.jsonl"
    path.write_bytes(first_line + PAYLOAD)
    ((_, stream),) = list(iter_local_inputs([str(path)]))
    with stream:
        batches = list(logsieve.process_stream(stream))
    assert sum(b.stats.errors for b in batches) == 1
    assert sum(b.stats.valid for b in batches) == 5000
    assert batches[0].errors.column("line").to_pylist() == [1]


def test_a_name_saying_gz_still_means_gzip_even_for_plain_bytes() -> None:
    with pytest.raises(SourceError, match=r"^x\.jsonl\.gz: not a valid gzip stream"):
        decompressing(io.BytesIO(PLAIN_WITH_MAGIC[2] + PAYLOAD), "x.jsonl.gz").read()


def test_truncated_gzip_without_suffix_is_still_gzip() -> None:
    data = gzip.compress(PAYLOAD)[:-20]
    with pytest.raises(SourceError, match="gzip stream is truncated"):
        read_in_pieces(decompressing(io.BytesIO(data), "logs/app.jsonl"), 1 << 16)


def test_gzip_with_several_members_decompresses_in_small_reads() -> None:
    half = len(PAYLOAD) // 2
    data = gzip.compress(PAYLOAD[:half]) + gzip.compress(PAYLOAD[half:])
    assert read_in_pieces(decompressing(io.BytesIO(data), "x.jsonl.gz")) == PAYLOAD


def test_gzip_by_content_encoding_without_suffix() -> None:
    stream = decompressing(io.BytesIO(gzip.compress(PAYLOAD)), "x.jsonl", "gzip")
    assert stream.read() == PAYLOAD


def test_zstd_with_several_frames_decompresses_in_small_reads() -> None:
    compressor = zstandard.ZstdCompressor()
    half = len(PAYLOAD) // 3
    data = compressor.compress(PAYLOAD[:half]) + compressor.compress(PAYLOAD[half:])
    assert read_in_pieces(decompressing(io.BytesIO(data), "x.jsonl.zst")) == PAYLOAD


def test_zstd_stream_without_content_size_decompresses() -> None:
    out = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(out, closefd=False) as writer:
        writer.write(PAYLOAD)
    assert decompressing(io.BytesIO(out.getvalue()), "x.zst").read() == PAYLOAD


def test_truncated_gzip_raises_source_error_naming_the_input() -> None:
    data = gzip.compress(PAYLOAD)[:-20]
    stream = decompressing(io.BytesIO(data), "logs/x.jsonl.gz")
    with pytest.raises(SourceError, match=r"^logs/x\.jsonl\.gz: gzip stream is truncated"):
        read_in_pieces(stream, 1 << 16)


def test_garbage_named_gz_raises_source_error() -> None:
    stream = decompressing(io.BytesIO(PAYLOAD), "x.jsonl.gz")
    with pytest.raises(SourceError, match="not a valid gzip stream"):
        stream.read(100)


def test_corrupted_gzip_body_raises_source_error() -> None:
    data = bytearray(gzip.compress(PAYLOAD))
    data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
    with pytest.raises(SourceError, match=r"^x\.gz: "):
        read_in_pieces(decompressing(io.BytesIO(bytes(data)), "x.gz"), 1 << 16)


def test_truncated_zstd_raises_source_error() -> None:
    data = zstandard.ZstdCompressor().compress(PAYLOAD)[:-10]
    with pytest.raises(SourceError, match=r"^x\.zst: zstd stream is truncated"):
        read_in_pieces(decompressing(io.BytesIO(data), "x.zst"), 1 << 16)


def test_garbage_named_zst_raises_source_error() -> None:
    with pytest.raises(SourceError, match="not a valid zstd stream"):
        decompressing(io.BytesIO(PAYLOAD), "x.zst").read()


def test_empty_compressed_inputs_are_empty() -> None:
    assert decompressing(io.BytesIO(gzip.compress(b"")), "e.gz").read() == b""
    assert (
        decompressing(io.BytesIO(zstandard.ZstdCompressor().compress(b"")), "e.zst").read() == b""
    )
    assert decompressing(io.BytesIO(b""), "e.zst").read() == b""


# --- local inputs -------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    files = [
        "a.jsonl",
        "b.log",
        "c.ndjson.gz",
        "d.json.zst",
        "sub/e.jsonl",
        "sub/deeper/f.log.gz",
        "notes.txt",
        "data.parquet",
        ".hidden.jsonl",
        ".git/g.jsonl",
        "_tmp/h.jsonl",
        "out/errors/date=2025-01-01/x.jsonl",
    ]
    for name in files:
        path = tmp_path / "logs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"{}\n")
    return tmp_path / "logs"


def test_directories_are_searched_recursively_for_log_files_only(tree: Path) -> None:
    found, bad = resolve_local_inputs([str(tree)], exclude=[tree / "out"])
    assert bad == []
    names = [str(item.path.relative_to(tree.resolve())) for item in found if item.path]
    assert names == [
        "a.jsonl",
        "b.log",
        "c.ndjson.gz",
        "d.json.zst",
        "sub/e.jsonl",
        "sub/deeper/f.log.gz",
    ]


def test_explicit_files_globs_stdin_and_duplicates(tree: Path) -> None:
    specs = [str(tree / "notes.txt"), str(tree / "*.jsonl"), "-", str(tree / "a.jsonl"), "-"]
    found, bad = resolve_local_inputs(specs)
    assert bad == []
    assert [item.path.name if item.path else "-" for item in found] == ["notes.txt", "a.jsonl", "-"]
    assert found[2].is_stdin


def test_recursive_glob(tree: Path) -> None:
    found, _ = resolve_local_inputs([str(tree / "**" / "*.gz")])
    assert sorted(item.path.name for item in found if item.path) == ["c.ndjson.gz", "f.log.gz"]


def test_missing_inputs_are_reported_not_dropped(tree: Path) -> None:
    found, bad = resolve_local_inputs(
        [str(tree / "nope.jsonl"), str(tree / "*.nothing"), str(tree / "a.jsonl")]
    )
    assert [item.path.name for item in found if item.path] == ["a.jsonl"]
    assert [(b.spec, b.reason) for b in bad] == [
        (str(tree / "nope.jsonl"), "no such file or directory"),
        (str(tree / "*.nothing"), "no file matches this pattern"),
    ]


def test_fifos_and_other_special_files_are_skipped_in_walks_and_globs(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    (logs / "sub").mkdir(parents=True)
    (logs / "a.jsonl").write_bytes(b"{}\n")
    os.mkfifo(logs / "pipe.jsonl")
    os.mkfifo(logs / "sub" / "pipe.log.gz")
    (logs / "dangling.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    special = {logs / "pipe.jsonl", logs / "sub" / "pipe.log.gz", logs / "dangling.jsonl"}
    for specs in ([str(logs)], [str(logs / "*.jsonl"), str(logs / "**" / "*.gz")]):
        skipped: list[Path] = []
        found, bad = resolve_local_inputs(specs, skipped=skipped)
        assert bad == []
        assert [item.path for item in found] == [(logs / "a.jsonl").resolve()]
        assert set(skipped) == special
    assert skip_reason(logs / "pipe.jsonl").startswith("a named pipe (FIFO), not a regular file")
    assert skip_reason(logs / "dangling.jsonl").startswith("a broken symbolic link")


def test_a_fifo_named_explicitly_is_refused_with_the_reason(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jsonl")
    (tmp_path / "a.jsonl").write_bytes(b"{}\n")
    found, bad = resolve_local_inputs([str(tmp_path / "pipe.jsonl"), str(tmp_path / "a.jsonl")])
    assert [item.path.name for item in found if item.path] == ["a.jsonl"]
    assert [(b.spec, b.reason) for b in bad] == [
        (str(tmp_path / "pipe.jsonl"), "not a regular file")
    ]


def test_process_command_does_not_hang_on_a_fifo_in_a_directory(tmp_path: Path) -> None:
    """The real command, in a subprocess: nobody ever writes to the FIFO."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.jsonl").write_bytes(PAYLOAD[:1000])
    os.mkfifo(logs / "stuck.jsonl")
    run = subprocess.run(
        [sys.executable, "-m", "logsieve.cli", "process", str(logs), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert f"note: skipped {logs / 'stuck.jsonl'}" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("marker", ["_logsieve", "_delta_log"])
def test_recursive_glob_skips_output_directories(tree: Path, marker: str) -> None:
    """`logsieve process 'logs/**/*.jsonl' --out logs/out` must not read logs/out back."""
    (tree / "out" / "errors" / marker).mkdir()
    (tree / "old" / "clean" / marker).mkdir(parents=True)
    (tree / "old" / "clean" / "part.jsonl").write_bytes(b"{}\n")
    skipped: list[Path] = []
    found, bad = resolve_local_inputs(
        [str(tree / "**" / "*.jsonl")], exclude=[tree / "out"], skipped=skipped
    )
    assert bad == []
    names = sorted(str(item.path.relative_to(tree.resolve())) for item in found if item.path)
    assert names == ["_tmp/h.jsonl", "a.jsonl", "sub/e.jsonl"]
    assert set(skipped) == {
        tree / "out" / "errors" / "date=2025-01-01" / "x.jsonl",
        tree / "old" / "clean" / "part.jsonl",
    }
    assert skip_reason(tree / "old" / "clean" / "part.jsonl") == (
        "inside a logsieve output directory"
    )


def test_glob_skips_the_excluded_output_directory_without_a_marker(tree: Path) -> None:
    skipped: list[Path] = []
    found, _ = resolve_local_inputs(
        [str(tree / "**" / "x.jsonl"), str(tree / "*")], exclude=[tree / "out"], skipped=skipped
    )
    assert [item.path for item in found if item.path and "out" in item.path.parts] == []
    assert tree / "out" in skipped


def test_directory_walk_skips_table_output(tree: Path) -> None:
    (tree / "sub" / "table" / "_delta_log").mkdir(parents=True)
    (tree / "sub" / "table" / "part.jsonl").write_bytes(b"{}\n")
    skipped: list[Path] = []
    found, _ = resolve_local_inputs([str(tree)], exclude=[tree / "out"], skipped=skipped)
    assert not any("table" in item.path.parts for item in found if item.path)
    assert skipped == [tree / "sub" / "table"]


def test_directory_without_logs_is_reported(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hi")
    found, bad = resolve_local_inputs([str(tmp_path)])
    assert found == []
    assert [b.reason for b in bad] == ["directory holds no log files"]


def test_is_log_file() -> None:
    assert is_log_file(Path("x/app.LOG"))
    assert is_log_file(Path("app.ndjson.zst"))
    assert not is_log_file(Path("app.gz"))
    assert not is_log_file(Path("_manifest.json"))


def test_iter_local_inputs_yields_decompressed_streams(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(PAYLOAD[:100])
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(PAYLOAD[100:300]))
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(PAYLOAD[300:600]))
    got = {}
    for name, stream in iter_local_inputs([str(tmp_path)]):
        with stream:
            got[Path(name).name] = stream.read()
        assert Path(name).is_absolute()
    assert got == {
        "a.jsonl": PAYLOAD[:100],
        "b.jsonl.gz": PAYLOAD[100:300],
        "c.jsonl.zst": PAYLOAD[300:600],
    }


def test_iter_local_inputs_refuses_missing_inputs_before_yielding(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b"{}\n")
    iterator = iter_local_inputs([str(tmp_path / "a.jsonl"), str(tmp_path / "missing.log")])
    with pytest.raises(SourceError, match=r"missing\.log: no such file or directory"):
        next(iterator)


# --- S3 -------------------------------------------------------------------------------------------


@pytest.fixture
def s3():
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="input")
        yield client


def test_open_s3_object_streams_and_reports_identity(s3) -> None:
    s3.put_object(Bucket="input", Key="dir/my log+1.jsonl", Body=PAYLOAD)
    stream, info = open_s3_object(s3, "input", "dir/my log+1.jsonl")
    head = s3.head_object(Bucket="input", Key="dir/my log+1.jsonl")
    assert read_in_pieces(stream, 4096) == PAYLOAD
    assert (info.bucket, info.key, info.size) == ("input", "dir/my log+1.jsonl", len(PAYLOAD))
    assert info.etag == head["ETag"].strip('"')
    assert info.last_modified == head["LastModified"]
    assert info.last_modified.tzinfo is not None
    assert info.uri == "s3://input/dir/my log+1.jsonl"
    assert info.version_id is None


def test_open_s3_object_versioned_bucket_reports_version(s3) -> None:
    s3.put_bucket_versioning(Bucket="input", VersioningConfiguration={"Status": "Enabled"})
    put = s3.put_object(Bucket="input", Key="v.jsonl", Body=b"{}\n")
    _, info = open_s3_object(s3, "input", "v.jsonl")
    assert info.version_id == put["VersionId"]


def test_open_s3_object_gunzips_by_suffix_and_by_content_encoding(s3) -> None:
    s3.put_object(Bucket="input", Key="a.jsonl.gz", Body=gzip.compress(PAYLOAD))
    s3.put_object(
        Bucket="input", Key="b.jsonl", Body=gzip.compress(PAYLOAD), ContentEncoding="gzip"
    )
    s3.put_object(Bucket="input", Key="c.jsonl.zst", Body=zstandard.compress(PAYLOAD))
    for key in ("a.jsonl.gz", "b.jsonl", "c.jsonl.zst"):
        stream, _ = open_s3_object(s3, "input", key)
        assert read_in_pieces(stream, 10_000) == PAYLOAD, key


def test_open_s3_object_truncated_gzip_raises_source_error(s3) -> None:
    s3.put_object(Bucket="input", Key="t.jsonl.gz", Body=gzip.compress(PAYLOAD)[:-30])
    stream, _ = open_s3_object(s3, "input", "t.jsonl.gz")
    with pytest.raises(SourceError, match=r"t\.jsonl\.gz: gzip stream is truncated"):
        stream.read()


def test_open_s3_object_missing_key_raises_botocore_error(s3) -> None:
    with pytest.raises(s3.exceptions.NoSuchKey):
        open_s3_object(s3, "input", "missing.jsonl")


def test_local_input_arrival_is_the_file_mtime(tmp_path: Path) -> None:
    import os

    path = tmp_path / "a.jsonl"
    path.write_bytes(b"{}\n")
    moment = datetime(2024, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    os.utime(path, (moment.timestamp(), moment.timestamp()))
    (item,), _ = resolve_local_inputs([str(path)])
    assert item.arrival == moment
    assert item.size == 3


def test_iter_local_inputs_reads_compressed_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.compress(PAYLOAD))))
    ((name, stream),) = list(iter_local_inputs(["-"]))
    assert name == "-"
    assert read_in_pieces(stream) == PAYLOAD


class _ReadOnly(io.RawIOBase):
    """A raw stream with `read` only, returning a few bytes at a time."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = 7 if size < 0 else min(size, 7)
        out, self.data = self.data[:size], self.data[size:]
        return out

    readinto = None  # type: ignore[assignment]


class _NotReadyYet(io.RawIOBase):
    """A non-blocking stream with nothing to read yet."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: object) -> None:  # type: ignore[override]
        return None


def _drain(stream: object, size: int = 1000) -> bytes:
    out = bytearray()
    buffer = bytearray(size)
    while n := stream.readinto(buffer):  # type: ignore[attr-defined]
        out += buffer[:n]
    return bytes(out)


@pytest.mark.parametrize("raw_kind", ["file", "read only"])
def test_counting_reader_and_prepend_pass_every_byte_once(tmp_path: Path, raw_kind: str) -> None:
    data = b"".join(b'{"n":%d}\n' % i for i in range(2000))
    path = tmp_path / "x.jsonl"
    path.write_bytes(data)
    seen: list[int] = []
    raw = path.open("rb", buffering=0) if raw_kind == "file" else _ReadOnly(data)
    counted = CountingReader(raw, seen.append)
    head = read_exactly(counted, 100)
    assert _drain(prepend(head, counted), 333) == data
    assert sum(seen) == counted.count == len(data)
    counted.close()


def test_a_stream_with_nothing_to_read_yet_is_not_taken_for_its_end() -> None:
    with pytest.raises(BlockingIOError):
        _drain(CountingReader(_NotReadyYet()))
    with pytest.raises(BlockingIOError):
        _drain(prepend(b"head", _NotReadyYet()))  # type: ignore[arg-type]
