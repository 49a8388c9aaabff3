"""Properties of the core that must hold for any input (hypothesis)."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logsieve

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
extras = st.dictionaries(
    st.text(max_size=8).filter(lambda k: k not in ("timestamp", "user_id", "action")),
    json_values,
    max_size=5,
)
instants = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(timezone.utc)
)
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59)


def _fmt_offset(minutes: int, colon: bool) -> str:
    sign = "-" if minutes < 0 else "+"
    h, m = divmod(abs(minutes), 60)
    return f"{sign}{h:02d}{':' if colon else ''}{m:02d}"


@st.composite
def rfc3339(draw: st.DrawFn) -> tuple[str, datetime]:
    """A timestamp string in one of the accepted forms, and the instant it denotes."""
    instant = draw(instants)
    offset = draw(offsets)
    local = instant + timedelta(minutes=offset)
    sep = draw(st.sampled_from("Tt "))
    digits = draw(st.integers(0, 9))
    frac = f"{local.microsecond:06d}{draw(st.integers(0, 999)):03d}"[:digits]
    zone = draw(st.sampled_from(["Z", "z", "", "colon", "plain"]))
    if zone in ("Z", "z", ""):
        offset = 0
        local = instant
        frac = f"{local.microsecond:06d}{draw(st.integers(0, 999)):03d}"[:digits]
        suffix = zone
    else:
        suffix = _fmt_offset(offset, zone == "colon")
    text = (
        local.strftime("%Y-%m-%d")
        if local.year >= 1000
        else f"{local.year:04d}" + local.strftime("-%m-%d")
    )
    text += f"{sep}{local:%H:%M:%S}" + (f".{frac}" if digits else "") + suffix
    micros = int(frac.ljust(6, "0")[:6]) if digits else 0
    expected = instant.replace(microsecond=micros)
    return text, expected


@given(rfc3339())
@SETTINGS
def test_rfc3339_timestamps_match_python_datetime(case: tuple[str, datetime]) -> None:
    text, expected = case
    batch = logsieve.process(
        json.dumps({"timestamp": text, "user_id": "u", "action": "a"}).encode()
    )
    assert batch.stats.valid == 1, batch.errors.to_pylist()
    row = batch.clean.to_pylist()[0]
    assert row["event_time"] == expected
    assert row["timestamp"] == expected.isoformat(sep=" ")[:19]
    assert row["day_of_week"] == expected.strftime("%A")


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@given(st.integers(-(2 * 10**10) + 1, 2 * 10**10 - 1), st.integers(0, 999_999))
@SETTINGS
def test_epoch_seconds_match_python_datetime(seconds: int, micros: int) -> None:
    batch = logsieve.process(
        f'{{"timestamp":{seconds}.{micros:06d},"user_id":"u","action":"a"}}'.encode()
    )
    sign = -1 if seconds < 0 else 1
    expected = EPOCH + timedelta(microseconds=seconds * 1_000_000 + sign * micros)
    assert batch.clean["event_time"][0].as_py() == expected


@given(st.integers(-62135596800000, 253402300799999).filter(lambda ms: abs(ms) > 2 * 10**10))
@SETTINGS
def test_epoch_milliseconds_match_python_datetime(millis: int) -> None:
    batch = logsieve.process(f'{{"timestamp":{millis},"user_id":"u","action":"a"}}'.encode())
    expected = EPOCH + timedelta(milliseconds=millis)
    row = batch.clean.to_pylist()[0]
    assert row["event_time"] == expected
    assert row["day_of_week"] == expected.strftime("%A")


@given(extras, st.text(min_size=1, max_size=10), st.integers(-(2**63), 2**63))
@SETTINGS
def test_extra_round_trips(extra: dict, action: str, user: int) -> None:
    obj = {"timestamp": 0, **extra, "user_id": user, "action": action}
    line = json.dumps(obj, ensure_ascii=False).encode()
    batch = logsieve.process(line)
    assert batch.stats.valid == 1, batch.errors.to_pylist()
    row = batch.clean.to_pylist()[0]
    assert row["user_id"] == str(user)
    assert row["action"] == action
    assert (json.loads(row["extra"]) if row["extra"] is not None else {}) == extra
    assert (row["extra"] is None) == (not extra)


line_kinds = st.sampled_from(["valid", "blank", "garbage", "array", "missing", "badts"])


def _make_line(kind: str, i: int) -> bytes:
    return {
        "valid": b'{"timestamp":%d,"user_id":"u%d","action":"a","i":%d}' % (i, i, i),
        "blank": b" \t" * (i % 3),
        "garbage": b"{oops %d" % i,
        "array": b"[%d]" % i,
        "missing": b'{"timestamp":%d}' % i,
        "badts": b'{"timestamp":"2025-02-30T00:00:00Z","user_id":"u","action":"a","i":%d}' % i,
    }[kind]


@given(st.lists(line_kinds, max_size=60), st.sampled_from([b"\n", b"\r\n"]), st.booleans())
@SETTINGS
def test_counts_and_error_line_numbers_are_exact(
    kinds: list[str], eol: bytes, final_eol: bool
) -> None:
    lines = [_make_line(k, i) for i, k in enumerate(kinds)]
    data = eol.join(lines) + (eol if final_eol and lines else b"")
    batch = logsieve.process(data)
    s = batch.stats
    assert s.processed == s.valid + s.errors
    # an empty last "line" with no newline after it is no line at all
    unterminated_empty_tail = bool(lines) and lines[-1] == b"" and not final_eol
    assert s.blank == kinds.count("blank") - unterminated_empty_tail
    assert s.valid == kinds.count("valid")
    expected_error_lines = [i + 1 for i, k in enumerate(kinds) if k not in ("valid", "blank")]
    assert batch.errors["line"].to_pylist() == expected_error_lines
    assert [bytes(r) for r in batch.errors["raw"].to_pylist()] == [
        lines[i - 1] for i in expected_error_lines
    ]


def _concat(batches: list[logsieve.Batch]) -> tuple[pa.Table, pa.Table, dict]:
    clean = pa.Table.from_batches(
        [b.clean for b in batches], schema=logsieve.process(b"").clean.schema
    )
    errors = pa.Table.from_batches(
        [b.errors for b in batches], schema=logsieve.process(b"").errors.schema
    )
    totals = {
        k: sum(getattr(b.stats, k) for b in batches)
        for k in ("processed", "valid", "errors", "blank", "bytes")
    }
    return clean, errors, totals


class _ReadOnly(io.RawIOBase):
    """A raw stream that implements only `read` (its `readinto` is io's NotImplementedError)."""

    def __init__(self, chunks: list[bytes]) -> None:
        super().__init__()
        self._chunks = iter(chunks)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return next(self._chunks, b"")


class _ShortReads(io.RawIOBase):
    """`readinto` that fills at most one chunk's worth per call, like a pipe or a socket."""

    def __init__(self, chunks: list[bytes]) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._rest or next(self._chunks, b"")
        n = min(len(chunk), len(buffer))
        memoryview(buffer)[:n] = chunk[:n]
        self._rest = chunk[n:]
        return n


@given(
    st.lists(line_kinds, max_size=40),
    st.lists(st.integers(1, 50), min_size=1, max_size=30),
    st.integers(1, 200),
    st.booleans(),
)
@SETTINGS
def test_any_chunking_gives_the_result_of_process(
    kinds: list[str], cuts: list[int], chunk_size: int, bom: bool
) -> None:
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(
        _make_line(k, i) for i, k in enumerate(kinds)
    )
    whole = logsieve.process(data)
    chunks, pos, k = [], 0, 0
    while pos < len(data):
        step = cuts[k % len(cuts)]
        chunks.append(data[pos : pos + step])
        pos += step
        k += 1
    sources = (iter(chunks), io.BytesIO(data), _ReadOnly(chunks), _ShortReads(chunks))
    for source in sources:
        clean, errors, totals = _concat(
            list(logsieve.process_stream(source, chunk_size=chunk_size))
        )
        assert clean.equals(pa.Table.from_batches([whole.clean]))
        assert errors.equals(pa.Table.from_batches([whole.errors]))
        assert totals == whole.stats.as_dict()


@given(st.binary(max_size=400))
@settings(max_examples=400, deadline=None)
def test_arbitrary_bytes_never_crash_and_lose_nothing(data: bytes) -> None:
    batch = logsieve.process(data)
    s = batch.stats
    assert s.processed == s.valid + s.errors == batch.clean.num_rows + batch.errors.num_rows
    physical = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    assert s.processed + s.blank == physical


@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=8))
@settings(max_examples=200, deadline=None)
def test_arbitrary_lines_with_json_noise(parts: list[bytes]) -> None:
    noise = b'{"timestamp":0,"user_id":"u","action":"a"' + b"".join(parts)
    batch = logsieve.process(noise + b"\n" + noise)
    assert batch.stats.processed == 2
    assert batch.stats.valid + batch.stats.errors == 2


@SETTINGS
@given(
    lines=st.lists(
        st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" "))
        | st.text(max_size=30).map(str.encode),
        min_size=1,
        max_size=20,
    ),
    source=st.text(max_size=20),
)
def test_error_lines_match_orjson_of_each_record(lines: list[bytes], source: str) -> None:
    """`Batch.error_lines` is byte for byte the per-record `orjson.dumps` it replaces."""
    import orjson

    from logsieve.storage.error_files import error_record

    batch = logsieve.process(b"\n".join(lines))
    errors = batch.errors
    expected = b"".join(
        orjson.dumps(error_record(source, line, code, detail, raw)) + b"\n"
        for line, code, detail, raw in zip(
            errors.column("line").to_pylist(),
            errors.column("error").to_pylist(),
            errors.column("detail").to_pylist(),
            errors.column("raw").to_pylist(),
        )
    )
    assert batch.error_lines(source) == expected
    assert batch.error_lines(source).count(b"\n") == errors.num_rows
    written = io.BytesIO()
    batch.write_error_lines(source, written)
    assert written.getvalue() == expected


class RawFile:
    """A raw file's write: takes at most `most` bytes a call and says how many."""

    def __init__(self, most: int) -> None:
        self.most, self.data = most, bytearray()

    def write(self, data: bytes) -> int:
        self.data += data[: self.most]
        return min(len(data), self.most)


def test_huge_invalid_lines_are_written_in_pieces_as_orjson_would() -> None:
    """Lines longer than the 1 MiB pieces `write_error_lines` hands over, with escapes and
    multi-byte characters across the cuts, and not UTF-8 (base64 cut in 3-byte groups), come
    out as the per-record orjson.dumps, also through a file that takes part of each write."""
    import orjson

    from logsieve.storage.error_files import error_record

    text = ('{"a":"\\"é\t😀' * 150_000).encode()  # 2.7 MB, cut mid-character somewhere
    binary = (
        bytes(b for b in range(256) if b != 0x0A) * 9_000 + b"\xff"
    )  # 2.3 MB, not a multiple of 3
    batch = logsieve.process(text + b"\n" + binary + b"\n")
    errors = batch.errors
    expected = b"".join(
        orjson.dumps(error_record("s", line, code, detail, raw)) + b"\n"
        for line, code, detail, raw in zip(
            *(errors.column(n).to_pylist() for n in errors.column_names)
        )
    )
    assert errors.num_rows == 2
    for sink in (io.BytesIO(), RawFile(300_001)):
        batch.write_error_lines("s", sink)
        assert bytes(sink.getvalue() if isinstance(sink, io.BytesIO) else sink.data) == expected


def test_a_failing_write_raises_its_own_exception() -> None:
    class Full:
        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

    batch = logsieve.process(b"not json\n")
    with pytest.raises(OSError, match="No space left"):
        batch.write_error_lines("s", Full())


def test_error_lines_of_a_clean_batch_is_empty() -> None:
    batch = logsieve.process(b'{"timestamp":0,"user_id":"u","action":"a"}\n\n')
    assert batch.stats.errors == 0
    assert batch.error_lines("s3://bucket/key") == b""
