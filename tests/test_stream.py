"""`process_stream`: chunked input, joined lines, continued line numbers, bounded batches."""

from __future__ import annotations

import io

import pyarrow as pa
import pytest

import logsieve
from logsieve import _core
from logsieve.errors import ConfigError


def _lines(n: int, bad_every: int = 7) -> list[bytes]:
    return [
        b"bad %d" % i
        if i % bad_every == 0
        else b'{"timestamp":%d,"user_id":"u","action":"login","i":%d}' % (1_700_000_000 + i, i)
        for i in range(n)
    ]


def _assert_batches_are(whole: logsieve.Batch, batches: list[logsieve.Batch]) -> None:
    """The batches' clean and error rows, raw bytes included, are exactly those of `whole`."""
    clean = pa.Table.from_batches([b.clean for b in batches], schema=whole.clean.schema)
    errors = pa.Table.from_batches([b.errors for b in batches], schema=whole.errors.schema)
    assert clean.equals(pa.Table.from_batches([whole.clean]))
    assert errors.equals(pa.Table.from_batches([whole.errors]))


def test_file_object_and_iterator_give_the_same_batches_as_process() -> None:
    data = b"\n".join(_lines(2_000)) + b"\n"
    whole = logsieve.process(data)
    for source in (io.BytesIO(data), (data[i : i + 333] for i in range(0, len(data), 333))):
        batches = list(logsieve.process_stream(source, chunk_size=4096))
        assert len(batches) > 10
        assert sum(b.stats.valid for b in batches) == whole.stats.valid
        lines = [n for b in batches for n in b.errors["line"].to_pylist()]
        assert lines == whole.errors["line"].to_pylist()
        extras = [e for b in batches for e in b.clean["extra"].to_pylist()]
        assert extras == whole.clean["extra"].to_pylist()


def test_batches_stay_near_the_chunk_size() -> None:
    data = b"\n".join(_lines(5_000))
    longest = max(len(line) for line in data.split(b"\n")) + 1
    sizes = [b.stats.bytes for b in logsieve.process_stream(io.BytesIO(data), chunk_size=8192)]
    assert sum(sizes) == len(data)
    assert max(sizes) <= 8192 + longest


def test_a_line_longer_than_the_chunk_is_joined() -> None:
    long_value = b"x" * 50_000
    data = b'{"timestamp":0,"user_id":"u","action":"a","blob":"' + long_value + b'"}\nnot json'
    batches = list(logsieve.process_stream(io.BytesIO(data), chunk_size=1000))
    assert sum(b.stats.valid for b in batches) == 1
    assert [n for b in batches for n in b.errors["line"].to_pylist()] == [2]


def test_bom_is_stripped_only_at_the_start_of_the_stream() -> None:
    line = b'{"timestamp":0,"user_id":"u","action":"a"}'
    chunks = [b"\xef", b"\xbb\xbf" + line + b"\n", b"\xef\xbb\xbf" + line + b"\n"]
    batches = list(logsieve.process_stream(iter(chunks), chunk_size=1))
    assert sum(b.stats.valid for b in batches) == 1
    assert [n for b in batches for n in b.errors["line"].to_pylist()] == [2]


def test_empty_input_yields_nothing() -> None:
    assert list(logsieve.process_stream(io.BytesIO(b""))) == []
    assert list(logsieve.process_stream(iter([b"", b""]))) == []


def test_accepts_bytearray_and_memoryview_chunks() -> None:
    line = b'{"timestamp":0,"user_id":"u","action":"a"}\n'
    batches = list(logsieve.process_stream([bytearray(line), memoryview(line)], chunk_size=10))
    assert sum(b.stats.valid for b in batches) == 2


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (io.StringIO("{}\n"), "binary mode"),
        (["text chunk"], "encode"),
        ("a string", "got a str"),
        (b"raw bytes", "logsieve.process"),
        (42, "got int"),
        ([1, 2], "got int"),
    ],
)
def test_wrong_sources_get_type_errors(source: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        list(logsieve.process_stream(source))  # type: ignore[arg-type]


def test_chunk_size_is_checked() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        list(logsieve.process_stream(io.BytesIO(b"x"), chunk_size=0))
    with pytest.raises(TypeError, match="chunk_size"):
        list(logsieve.process_stream(io.BytesIO(b"x"), chunk_size="8MB"))  # type: ignore[arg-type]


def test_field_names_pass_through() -> None:
    data = b'{"ts":0,"uid":1,"act":"a"}\n'
    batches = list(
        logsieve.process_stream(
            io.BytesIO(data), timestamp_field="ts", user_id_field="uid", action_field="act"
        )
    )
    assert batches[0].clean["user_id"].to_pylist() == ["1"]


def test_long_lines_among_short_ones_keep_every_byte() -> None:
    # Runs are read into two reused buffers; a line longer than a buffer grows it and the next
    # short run shrinks it again. Every batch is kept until the end, so a buffer refilled too
    # early would show up as changed rows or raw bytes.
    lines = []
    for i in range(1_000):
        size = 20_000 if i % 97 == 0 else 10
        if i % 5 == 0:
            lines.append(b"not json " + b"y" * size)
        else:
            lines.append(
                b'{"timestamp":%d,"user_id":"u%d","action":"a","pad":"%s"}'
                % (1_700_000_000 + i, i, b"x" * size)
            )
    data = b"\n".join(lines) + b"\n"
    whole = logsieve.process(data)
    batches = list(logsieve.process_stream(io.BytesIO(data), chunk_size=4096))
    assert len(batches) > 20
    _assert_batches_are(whole, batches)


def test_a_call_big_enough_for_huge_pages_gives_what_small_batches_give() -> None:
    # From 32 MiB of input (`memory::BIG_CALL`) the output columns are advised to use huge
    # pages; 1 MiB batches stay below it. The advice must change nothing but speed.
    data = b"\n".join(_lines(600_000, bad_every=13)) + b"\n"
    assert len(data) > 32 << 20
    whole = logsieve.process(data)
    batches = list(logsieve.process_stream(io.BytesIO(data), chunk_size=1 << 20))
    assert whole.stats.valid == 600_000 - len(range(0, 600_000, 13))
    _assert_batches_are(whole, batches)


def test_the_private_step_checks_its_arguments() -> None:
    line = b'{"timestamp":0,"user_id":"u","action":"a"}\n'
    fields = ("timestamp", "user_id", "action")
    batch, consumed = _core.process_lines(bytearray(line + b"{"), len(line), 1, False, *fields)
    assert batch is not None and batch.stats.valid == 1 and consumed == len(line)
    with pytest.raises(ValueError, match="beyond"):
        _core.process_lines(line, len(line) + 1, 1, False, *fields)
    with pytest.raises(TypeError, match="bytes or a bytearray"):
        _core.process_lines(memoryview(line), len(line), 1, False, *fields)  # type: ignore[arg-type]


def test_a_stream_with_nothing_to_read_yet_is_not_taken_for_its_end() -> None:
    class NotReadyYet(io.RawIOBase):
        """A non-blocking stream with nothing to read yet."""

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: object) -> None:  # type: ignore[override]
            return None

    with pytest.raises(BlockingIOError, match="non-blocking"):
        list(logsieve.process_stream(NotReadyYet()))
