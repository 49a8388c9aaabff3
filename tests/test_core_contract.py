"""The record contract (docs/contract.md), rule by rule, through `logsieve.process`."""

from __future__ import annotations

import json
from datetime import datetime

import pyarrow as pa
import pytest

import logsieve
from logsieve import _core
from logsieve.errors import ConfigError, LogsieveError

BASE = {"user_id": "u1", "action": "login"}


def rec(**fields: object) -> bytes:
    """A record line with the two non-timestamp fields filled in unless given."""
    return json.dumps({**BASE, **fields}, separators=(",", ":")).encode()


def one(line: bytes, **kwargs: object) -> dict:
    """Process a single line; return its row or its error record as a dict."""
    batch = logsieve.process(line, **kwargs)
    assert batch.stats.processed == 1, batch.stats
    rows = batch.clean.to_pylist() + batch.errors.to_pylist()
    assert len(rows) == 1
    return rows[0]


def code(line: bytes, **kwargs: object) -> str | None:
    return one(line, **kwargs).get("error")


# ---- rule 1: invalid_json -------------------------------------------------------------------
@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b'{"timestamp":0,"user_id":"u","action":"a"',  # unterminated
        b'{"timestamp":0,"user_id":"u","action":"a",}',  # trailing comma
        b'{"timestamp":0,"user_id":"u","action":"a","x":[1,2,]}',
        b"{'timestamp':0,'user_id':'u','action':'a'}",  # single quotes
        b'{"timestamp":NaN,"user_id":"u","action":"a"}',
        b'{"timestamp":0,"user_id":"u","action":"a","x":Infinity}',
        b'{"timestamp":0,"user_id":"u","action":"a","x":-Infinity}',
        b'{"timestamp":0,"user_id":"u","action":"a","x":01}',  # leading zero
        b'{"timestamp":0,"user_id":"u","action":"a","x":1e999}',  # not a 64-bit float
        b'{"timestamp":0,"user_id":"u","action":"a\tb"}',  # raw tab in a string
        b'{"timestamp":0,"user_id":"u","action":"a\x01"}',
        b'{"timestamp":0,"user_id":"u","action":"a"}{"timestamp":0}',  # two objects
        b'{"timestamp":0,"user_id":"u","action":"a"} x',  # trailing text
        b'{"timestamp":0,"user_id":"u","action":"\\q"}',  # bad escape
        b'{"timestamp":0,"user_id":"u","action":"\\u12"}',
        b'{"timestamp":0,"user_id":"u","action":"\xff"}',  # invalid UTF-8
        b'{"timestamp":0,"user_id":"u","action":"\xc3"}',  # truncated UTF-8 sequence
        b"\r",  # not blank: \r is not a space or tab
        b'{timestamp:0,"user_id":"u","action":"a"}',
    ],
)
def test_invalid_json(line: bytes) -> None:
    result = one(line)
    assert result["error"] == "invalid_json"
    assert result["raw"] == line
    assert result["detail"]


def test_invalid_json_detail_points_at_the_problem() -> None:
    assert one(b'{"a":1,}')["detail"] == "invalid JSON at column 8: trailing comma before '}'"
    assert "not valid UTF-8" in one(b'{"a":"\xff"}')["detail"]
    assert "64-bit float" in one(b'{"a":1e999}')["detail"]


def test_whitespace_around_the_value_is_allowed() -> None:
    assert code(b' \t{"timestamp":0,"user_id":"u","action":"a"} \t') is None


# ---- rule 2: not_an_object ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b"[1,2]", "an array"),
        (b'"text"', "a string"),
        (b"42", "a number"),
        (b"true", "a boolean"),
        (b"null", "null"),
    ],
)
def test_not_an_object(line: bytes, kind: str) -> None:
    result = one(line)
    assert result["error"] == "not_an_object"
    assert result["detail"] == f"expected a JSON object, got {kind}"


# ---- rule 3: missing_field ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("obj", "named"),
    [
        ({"user_id": "u", "action": "a"}, ["timestamp is missing"]),
        ({"timestamp": 0, "action": "a"}, ["user_id is missing"]),
        ({"timestamp": 0, "user_id": "u"}, ["action is missing"]),
        ({"timestamp": None, "user_id": "u", "action": "a"}, ["timestamp is null"]),
        ({}, ["timestamp is missing", "user_id is missing", "action is missing"]),
        ({"timestamp": "garbage", "user_id": None}, ["user_id is null", "action is missing"]),
    ],
)
def test_missing_field_names_every_missing_one(obj: dict, named: list[str]) -> None:
    result = one(json.dumps(obj).encode())
    assert result["error"] == "missing_field"
    assert result["detail"] == "required field missing: " + ", ".join(named)


def test_escaped_key_counts_as_the_field() -> None:
    row = one(b'{"timestamp":0,"user\\u005fid":"u","action":"a"}')
    assert row["user_id"] == "u"


# ---- rule 4: invalid_field ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("user_id", "action", "stored"),
    [
        ("u-1", "login", "u-1"),
        (42, "login", "42"),
        (-7, "login", "-7"),
        (123456789012345678901234567890, "login", "123456789012345678901234567890"),
        (" ", "x", " "),
        ("é ☃ 😀", "ação", "é ☃ 😀"),
    ],
)
def test_valid_fields(user_id: object, action: str, stored: str) -> None:
    row = one(json.dumps({"timestamp": 0, "user_id": user_id, "action": action}).encode())
    assert (row["user_id"], row["action"]) == (stored, action)


@pytest.mark.parametrize(
    ("user_id", "action"),
    [
        ("", "login"),
        (1.5, "login"),
        (1e3, "login"),
        (True, "login"),
        ([1], "login"),
        ({"id": 1}, "login"),
        ("u", ""),
        ("u", 5),
        ("u", ["login"]),
        ("u", False),
    ],
)
def test_invalid_fields(user_id: object, action: object) -> None:
    result = one(json.dumps({"timestamp": 0, "user_id": user_id, "action": action}).encode())
    assert result["error"] == "invalid_field"


def test_invalid_field_is_checked_before_the_timestamp() -> None:
    assert code(b'{"timestamp":"junk","user_id":"","action":"a"}') == "invalid_field"


def test_escaped_strings_are_unescaped_in_columns() -> None:
    row = one(b'{"timestamp":0,"user_id":"a\\"b\\\\c\\u00e9","action":"\\ud83d\\ude00"}')
    assert (row["user_id"], row["action"]) == ('a"b\\cé', "😀")


def test_lone_surrogate_in_a_required_string_is_an_invalid_field() -> None:
    result = one(b'{"timestamp":0,"user_id":"\\ud800","action":"a"}')
    assert result["error"] == "invalid_field"
    assert "surrogate" in result["detail"]


# ---- rule 5: invalid_timestamp and the transform -------------------------------------------
@pytest.mark.parametrize(
    ("ts", "utc"),
    [
        ("2025-08-20T12:01:15Z", "2025-08-20 12:01:15"),
        ("2025-08-20t12:01:15z", "2025-08-20 12:01:15"),
        ("2025-08-20 12:01:15", "2025-08-20 12:01:15"),
        ("2025-08-20T12:01:15.123456789Z", "2025-08-20 12:01:15"),
        ("2025-08-20T12:01:15+02:00", "2025-08-20 10:01:15"),
        ("2025-08-20T12:01:15-0700", "2025-08-20 19:01:15"),
        ("2025-08-21T01:30:00+03:00", "2025-08-20 22:30:00"),  # crosses midnight
        ("2025-01-01T00:30:00+01:00", "2024-12-31 23:30:00"),  # crosses a year end
        ("2024-12-31T23:30:00-01:00", "2025-01-01 00:30:00"),
        ("2024-02-29T12:00:00Z", "2024-02-29 12:00:00"),  # leap day
        ("2000-02-29T12:00:00Z", "2000-02-29 12:00:00"),
        ("2024-03-01T00:30:00+01:00", "2024-02-29 23:30:00"),
        ("0001-01-01T00:00:00Z", "0001-01-01 00:00:00"),
        ("9999-12-31T23:59:59.999999999Z", "9999-12-31 23:59:59"),
        (1724155275, "2024-08-20 12:01:15"),  # epoch seconds
        (1724155275.987, "2024-08-20 12:01:15"),
        (1724155275123, "2024-08-20 12:01:15"),  # epoch milliseconds
        (20000000000, "2603-10-11 11:33:20"),  # 2e10 is still seconds
        (20000000001, "1970-08-20 11:33:20"),  # just above: milliseconds
        (-1, "1969-12-31 23:59:59"),
        (0, "1970-01-01 00:00:00"),
    ],
)
def test_valid_timestamps(ts: object, utc: str) -> None:
    row = one(rec(timestamp=ts))
    assert row["timestamp"] == utc
    assert row["day_of_week"] == datetime.fromisoformat(utc).strftime("%A")
    assert row["event_time"].isoformat(sep=" ")[:19] == utc


def test_event_time_keeps_microseconds_and_truncates_the_rest() -> None:
    row = one(rec(timestamp="2025-08-20T12:01:15.123456789+02:00"))
    assert row["event_time"].isoformat() == "2025-08-20T10:01:15.123456+00:00"
    row = one(b'{"timestamp":1724155275123.4567,"user_id":"u","action":"a"}')
    assert row["event_time"].isoformat() == "2024-08-20T12:01:15.123456+00:00"


@pytest.mark.parametrize(
    "ts",
    [
        "2025-08-20",  # date only
        "20250820T120115Z",  # basic format
        "2025-08-20T12:01:15Z trailing",
        "2025-08-20T12:01",
        "2025-08-20T12:01:15.",
        "2025-08-20T12:01:15.1234567890Z",  # 10 fraction digits
        "2025-02-29T00:00:00Z",  # not a leap year
        "1900-02-29T00:00:00Z",
        "2025-04-31T00:00:00Z",
        "2025-13-01T00:00:00Z",
        "2025-08-20T24:00:00Z",
        "2025-08-20T12:60:00Z",
        "2025-08-20T12:00:60Z",  # no leap seconds
        "2025-08-20T12:00:00+24:00",
        "2025-08-20T12:00:00+01:60",
        "2025-08-20T12:00:00+01",
        "0000-01-01T00:00:00Z",  # before year 1
        "9999-12-31T23:00:00-02:00",  # after year 9999 in UTC
        "",
        "yesterday",
        True,
        [2025, 8, 20],
        {"iso": "2025-08-20T12:01:15Z"},
        1e300,
        -62135596800001,  # just before 0001-01-01 in milliseconds
        253402300800000,  # 10000-01-01 in milliseconds
    ],
)
def test_invalid_timestamps(ts: object) -> None:
    result = one(rec(timestamp=ts))
    assert result["error"] == "invalid_timestamp", result
    assert result["detail"].startswith("timestamp ")


# ---- extra, duplicates, configuration --------------------------------------------------------
def test_extra_holds_every_other_member_losslessly() -> None:
    line = (
        b'{"timestamp":0, "n": 12345678901234567890123, "f": 1.5e-7, "s": "tab\\t \\u00e9",'
        b' "o": {"a": [1, {"b": null}], "c": true}, "user_id":"u","action":"a", "e": []}'
    )
    extra = one(line)["extra"]
    expected = json.loads(line)
    for name in ("timestamp", "user_id", "action"):
        del expected[name]
    assert json.loads(extra) == expected
    assert " " not in extra.replace("tab\\t ", "")  # compact outside strings


def test_extra_is_null_without_other_members() -> None:
    assert one(rec(timestamp=0))["extra"] is None


def test_duplicate_keys_last_one_wins() -> None:
    line = b'{"timestamp":"bad","user_id":"a","action":"x","k":1,"timestamp":0,"k":2,"user_id":"b"}'
    row = one(line)
    assert (row["timestamp"], row["user_id"], json.loads(row["extra"])) == (
        "1970-01-01 00:00:00",
        "b",
        {"k": 2},
    )
    assert code(b'{"timestamp":0,"user_id":"u","action":"a","action":null}') == "missing_field"


def test_configurable_field_names_keep_output_column_names() -> None:
    line = b'{"ts":"2025-08-20T12:01:15Z","uid":7,"event":"login","user_id":"other"}'
    row = one(line, timestamp_field="ts", user_id_field="uid", action_field="event")
    assert (row["timestamp"], row["user_id"], row["action"]) == (
        "2025-08-20 12:01:15",
        "7",
        "login",
    )
    assert json.loads(row["extra"]) == {"user_id": "other"}
    missing = one(b'{"timestamp":0,"user_id":1,"action":"a"}', timestamp_field="ts")
    assert missing["detail"] == "required field missing: ts is missing"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timestamp_field": ""},
        {"user_id_field": "action"},
        {"timestamp_field": "x", "action_field": "x"},
    ],
)
def test_bad_field_names_are_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        logsieve.process(b"{}", **kwargs)


# ---- lines, counts and the batch --------------------------------------------------------------
def test_line_handling_bom_crlf_blank_and_missing_final_newline() -> None:
    data = (
        b"\xef\xbb\xbf" + rec(timestamp=0) + b"\r\n"  # 1: BOM + CRLF
        b"\n"  # 2: empty
        b" \t \n"  # 3: spaces and tabs
        b"oops\r\n"  # 4
         + rec(timestamp=1)  # 5: no final newline
    )
    batch = logsieve.process(data)
    assert batch.stats.as_dict() == {
        "processed": 3,
        "valid": 2,
        "errors": 1,
        "blank": 2,
        "bytes": len(data),
    }
    assert batch.errors.to_pylist() == [
        {
            "line": 4,
            "error": "invalid_json",
            "detail": batch.errors["detail"][0].as_py(),
            "raw": b"oops",
        }
    ]


def test_bom_in_the_middle_is_data() -> None:
    batch = logsieve.process(rec(timestamp=0) + b"\n\xef\xbb\xbf" + rec(timestamp=0))
    assert batch.stats.errors == 1
    assert batch.errors["line"].to_pylist() == [2]


def test_empty_input() -> None:
    batch = logsieve.process(b"")
    assert batch.stats.as_dict() == dict.fromkeys(
        ("processed", "valid", "errors", "blank", "bytes"), 0
    )
    assert batch.clean.num_rows == 0 and batch.errors.num_rows == 0


def test_schemas() -> None:
    batch = logsieve.process(rec(timestamp=0) + b"\nbad")
    assert batch.clean.schema == pa.schema(
        [
            pa.field("timestamp", pa.string(), nullable=False),
            pa.field("day_of_week", pa.string(), nullable=False),
            pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("user_id", pa.string(), nullable=False),
            pa.field("action", pa.string(), nullable=False),
            pa.field("extra", pa.string()),
        ]
    )
    assert batch.errors.schema == pa.schema(
        [
            pa.field("line", pa.int64(), nullable=False),
            pa.field("error", pa.string(), nullable=False),
            pa.field("detail", pa.string(), nullable=False),
            pa.field("raw", pa.binary(), nullable=False),
        ]
    )


def test_batch_speaks_the_arrow_pycapsule_protocol() -> None:
    batch = logsieve.process(b"\n".join(rec(timestamp=i) for i in range(5)))
    assert len(batch) == 5
    via_stream = pa.RecordBatchReader.from_stream(batch).read_all()
    assert via_stream.to_batches()[0].equals(batch.clean)
    assert pa.record_batch(batch).equals(batch.clean)
    assert pa.schema(batch) == batch.clean.schema
    assert batch.clean is batch.clean  # built once, then cached
    assert "valid=5" in repr(batch)


def test_accepts_any_buffer_and_refuses_other_types() -> None:
    data = rec(timestamp=0)
    for form in (data, bytearray(data), memoryview(data)):
        assert logsieve.process(form).stats.valid == 1
    with pytest.raises(TypeError, match="encode"):
        logsieve.process(data.decode())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got int"):
        logsieve.process(12)  # type: ignore[arg-type]


def test_first_line_rebases_line_numbers() -> None:
    batch = logsieve.process(b"x\ny\n", first_line=10)
    assert batch.errors["line"].to_pylist() == [10, 11]
    with pytest.raises(LogsieveError):
        logsieve.process(b"x", first_line=0)


def test_first_line_that_would_overflow_line_numbers_is_refused() -> None:
    """Line numbers are int64: past 2**63 - 1 they used to wrap to negative values silently."""
    assert logsieve.process(b"x", first_line=2**63 - 1).errors["line"].to_pylist() == [2**63 - 1]
    assert logsieve.process(b"x\n", first_line=2**63 - 2).errors["line"].to_pylist() == [2**63 - 2]
    for first_line, data in [(2**63 - 1, b"x\ny\n"), (2**63 - 2, b"x\ny\nz\n"), (2**63, b"x")]:
        with pytest.raises(ValueError, match="first_line") as raised:
            logsieve.process(data, first_line=first_line)
        assert isinstance(raised.value, LogsieveError)
    with pytest.raises(ValueError, match="first_line"):
        logsieve.process(b"x", first_line=-(2**70))
    with pytest.raises(ValueError, match="first_line"):
        _core.process_lines(bytearray(b"x\ny\n"), 4, 2**63 - 1, True, "timestamp", "u", "a")


def test_large_input_in_parallel_keeps_order_and_line_numbers() -> None:
    lines = [rec(timestamp=i, i=i) if i % 101 else b"broken %d" % i for i in range(40_000)]
    batch = logsieve.process(b"\n".join(lines))
    assert batch.stats.processed == 40_000
    assert batch.errors["line"].to_pylist() == [i + 1 for i in range(0, 40_000, 101)]
    ids = [json.loads(e)["i"] for e in batch.clean["extra"].to_pylist()]
    assert ids == [i for i in range(40_000) if i % 101]


def test_error_codes_are_exported_in_rule_order() -> None:
    assert logsieve.ERROR_CODES == (
        "invalid_json",
        "not_an_object",
        "missing_field",
        "invalid_field",
        "invalid_timestamp",
    )
    seen = {
        row["error"]
        for row in logsieve.process(
            b'x\n[1]\n{}\n{"timestamp":0,"user_id":"","action":"a"}\n'
            b'{"timestamp":"now","user_id":"u","action":"a"}'
        ).errors.to_pylist()
    }
    assert seen == set(logsieve.ERROR_CODES)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    deep = b'{"timestamp":0,"user_id":"u","action":"a","x":' + b"[" * 600 + b"]" * 600 + b"}"
    result = one(deep)
    assert result["error"] == "invalid_json"
    assert "512" in result["detail"]


def test_allocator_settings_reach_mimalloc_and_the_environment_wins() -> None:
    """`import logsieve` sets the core allocator's options before the extension loads."""
    import os
    import subprocess
    import sys

    def options(**env: str) -> str:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MIMALLOC_")}
        done = subprocess.run(
            [sys.executable, "-c", "import logsieve"],
            env={**clean, "MIMALLOC_VERBOSE": "1", **env},
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stderr

    printed = options()
    assert "option 'purge_delay': 3000" in printed
    assert "option 'arena_eager_commit': 0" in printed
    assert "option 'purge_delay': 250" in options(MIMALLOC_PURGE_DELAY="250")
    assert "option 'arena_eager_commit': 1" in options(MIMALLOC_ARENA_EAGER_COMMIT="1")
