"""What a user would write instead of logsieve, doing the same job on the same bytes.

Every peer turns JSON Lines into the same five columns logsieve produces (`timestamp` as UTC
"YYYY-MM-DD HH:MM:SS", `day_of_week`, `event_time` timestamp[us, UTC], `user_id`, `action`) and
separates invalid lines, so their times can be compared with `logsieve.process`. They do *not*
build logsieve's sixth column (`extra`, the other members re-serialised), which favours them.

- `seed`: the plain-Python approach (`json.loads` per line, `datetime` parsing and formatting).
- `orjson`: the same loop tuned: orjson, the fastest JSON parser a Python user can reach for,
  and f-string formatting instead of strftime.
- `pyarrow`: `pyarrow.json.read_json` + `pyarrow.compute`.
- `polars`: `polars.read_ndjson` + expressions.

The bulk readers cannot express every rule of the record contract, and where they cannot, the
difference is documented in `LIMITS` (and shows up as a different valid count on dirty data):
they read the three fields as strings, so a JSON number and its text are the same to them.
When a bulk reader fails outright (one bad line aborts the whole read), `PeerFailed` is raised;
`*_fallback` is then the per-line pre-filter a user would have to add to get any result.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BOM = b"\xef\xbb\xbf"
FIELDS = ("timestamp", "user_id", "action")

LIMITS = {
    "seed": "implements every rule of the contract",
    "orjson": "implements every rule of the contract",
    "pyarrow": (
        "read_json fails on any column whose JSON type changes (epoch numbers next to strings, "
        "integer user_ids) and on any malformed line, so on this corpus it always needs the "
        "per-line orjson fallback; strptime accepts impossible dates (Feb 30 becomes Mar 2) "
        "and offsets of 24 hours; a JSON string and a JSON number are the same to it"
    ),
    "polars": (
        "read_ndjson with a String schema turns numbers, booleans and objects into text, so it "
        "cannot reject user_id true/12.5/{...}, action 5/false, or tell the timestamp "
        '1755691275 from "1755691275"; one malformed line or non-object line fails the whole '
        "read (ignore_errors does not help), so dirty data needs the per-line fallback"
    ),
}


class PeerFailed(Exception):
    """The peer's bulk reader gave up on the input as a whole."""


@dataclass
class PeerResult:
    """The clean rows (any tabular object with a length) and the number of rejected records."""

    clean: Any
    errors: int

    @property
    def valid(self) -> int:
        return len(self.clean)


# ----- shared line handling and validation (plain Python) -----------------------------------


def split_lines(data: bytes) -> list[bytes]:
    """Physical lines without their line endings (BOM dropped, a final newline ends the last)."""
    if data.startswith(_BOM):
        data = data[3:]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def is_blank(line: bytes) -> bool:
    return not line.strip(b" \t")


_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(?:([Zz])|([+-])([0-9]{2}):?([0-9]{2}))?"
)


def parse_timestamp(value: object) -> datetime | None:
    """The instant a timestamp value names per the contract, or None when it names none."""
    try:
        if isinstance(value, str):
            return _parse_text(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _parse_epoch(value)
    except (ValueError, OverflowError):
        return None
    return None


def _parse_text(value: str) -> datetime | None:
    match = _RFC3339.fullmatch(value)
    if match is None:
        return None
    y, mo, d, h, mi, s, frac, _z, sign, oh, om = match.groups()
    micros = int(frac[:6].ljust(6, "0")) if frac else 0
    instant = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micros, tzinfo=UTC)
    if sign:
        hours, minutes = int(oh), int(om)
        if hours > 23 or minutes > 59:
            return None
        offset = timedelta(hours=hours, minutes=minutes)
        instant = instant - offset if sign == "+" else instant + offset
    return instant


def _parse_epoch(value: float) -> datetime:
    if isinstance(value, int):
        micros = value * 1_000_000 if abs(value) <= 2e10 else value * 1_000
    else:
        seconds = value if abs(value) <= 2e10 else value / 1000
        micros = math.floor(seconds * 1_000_000)
    return _EPOCH + timedelta(microseconds=micros)


def validate(obj: object) -> tuple[str, str, datetime] | str:
    """(user_id, action, instant) of a parsed record, or the error code that rejects it."""
    if not isinstance(obj, dict):
        return "not_an_object"
    ts, user, action = obj.get("timestamp"), obj.get("user_id"), obj.get("action")
    if ts is None or user is None or action is None:
        return "missing_field"
    if isinstance(user, int) and not isinstance(user, bool):
        user = str(user)
    if not isinstance(user, str) or not user or not isinstance(action, str) or not action:
        return "invalid_field"
    instant = parse_timestamp(ts)
    if instant is None or not 1 <= instant.year <= 9999:
        return "invalid_timestamp"
    return user, action, instant


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


def strict_json_loads(line: bytes) -> object:
    return json.loads(
        line.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float
    )


_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _strftime_texts(instant: datetime) -> tuple[str, str]:
    return instant.strftime("%Y-%m-%d %H:%M:%S"), instant.strftime("%A")


def _fast_texts(instant: datetime) -> tuple[str, str]:
    """What a user tuning the loop writes instead of strftime (about 5x cheaper)."""
    text = (
        f"{instant.year:04d}-{instant.month:02d}-{instant.day:02d} "
        f"{instant.hour:02d}:{instant.minute:02d}:{instant.second:02d}"
    )
    return text, _WEEKDAYS[instant.weekday()]


def _python_peer(
    data: bytes,
    loads: Callable[[bytes], object],
    texts: Callable[[datetime], tuple[str, str]],
) -> tuple[dict[str, list], int]:
    """The per-line loop both Python peers share; they differ in the JSON parser and formatting."""
    cols: dict[str, list] = {k: [] for k in ("timestamp", "day_of_week", "event_time")}
    cols.update(user_id=[], action=[])
    errors = 0
    for line in split_lines(data):
        if is_blank(line):
            continue
        try:
            obj = loads(line)
        except ValueError:  # json.JSONDecodeError, orjson.JSONDecodeError, UnicodeDecodeError
            errors += 1
            continue
        row = validate(obj)
        if isinstance(row, str):
            errors += 1
            continue
        user, action, instant = row
        text, weekday = texts(instant)
        cols["timestamp"].append(text)
        cols["day_of_week"].append(weekday)
        cols["event_time"].append(instant)
        cols["user_id"].append(user)
        cols["action"].append(action)
    return cols, errors


def _arrow_table(cols: dict[str, list]) -> Any:
    import pyarrow as pa

    return pa.table(
        {
            "timestamp": pa.array(cols["timestamp"], pa.string()),
            "day_of_week": pa.array(cols["day_of_week"], pa.string()),
            "event_time": pa.array(cols["event_time"], pa.timestamp("us", tz="UTC")),
            "user_id": pa.array(cols["user_id"], pa.string()),
            "action": pa.array(cols["action"], pa.string()),
        }
    )


def seed(data: bytes) -> PeerResult:
    cols, errors = _python_peer(data, strict_json_loads, _strftime_texts)
    return PeerResult(_arrow_table(cols), errors)


def orjson_loop(data: bytes) -> PeerResult:
    cols, errors = _python_peer(data, orjson.loads, _fast_texts)
    return PeerResult(_arrow_table(cols), errors)


# ----- the per-line fallback the bulk readers need ------------------------------------------


def object_lines(data: bytes) -> tuple[list[bytes], list[int], int]:
    """Lines that are JSON objects (what a bulk reader can take), their 1-based numbers, and the
    number of records rejected on the way: the pre-filter a user must write for dirty data."""
    good: list[bytes] = []
    numbers: list[int] = []
    rejected = 0
    loads = orjson.loads
    for number, line in enumerate(split_lines(data), start=1):
        if is_blank(line):
            continue
        try:
            obj = loads(line)
        except orjson.JSONDecodeError:
            rejected += 1
            continue
        if type(obj) is dict:
            good.append(line)
            numbers.append(number)
        else:
            rejected += 1
    return good, numbers, rejected


def _text_or_none(value: object) -> str | None:
    """A field as the bulk readers see it: strings as is, other JSON values as their text."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


# ----- pyarrow ------------------------------------------------------------------------------

_NUMERIC = r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
_RFC3339_PARTS = (
    r"^(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ](?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"(?:\.(?P<frac>[0-9]{1,9}))?(?:[Zz]|(?P<sign>[+-])(?P<oh>[0-9]{2}):?(?P<om>[0-9]{2}))?$"
)


def pyarrow_read(data: bytes) -> PeerResult:
    """`pyarrow.json.read_json` of the three fields as strings, then the compute transform."""
    import pyarrow as pa
    import pyarrow.json as pj

    schema = pa.schema([(name, pa.string()) for name in FIELDS])
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        table = pj.read_json(io.BytesIO(data), parse_options=options)
    except pa.ArrowInvalid as exc:
        raise PeerFailed(f"pyarrow.json.read_json: {exc}") from exc
    return pyarrow_transform(table, rejected=0)


def pyarrow_fallback(data: bytes) -> PeerResult:
    """Per line: orjson decodes, objects keep their three fields as text; then the transform."""
    import pyarrow as pa

    cols: dict[str, list] = {name: [] for name in FIELDS}
    rejected = 0
    loads = orjson.loads
    for line in split_lines(data):
        if is_blank(line):
            continue
        try:
            obj = loads(line)
        except orjson.JSONDecodeError:
            rejected += 1
            continue
        if type(obj) is not dict:
            rejected += 1
            continue
        for name in FIELDS:
            cols[name].append(_text_or_none(obj.get(name)))
    table = pa.table({name: pa.array(values, pa.string()) for name, values in cols.items()})
    return pyarrow_transform(table, rejected)


def pyarrow_transform(table: Any, rejected: int) -> PeerResult:
    """The contract's transform in pyarrow.compute, over string columns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ts = table["timestamp"]
    numeric = pc.fill_null(pc.match_substring_regex(ts, _NUMERIC), False)
    number = pc.cast(pc.if_else(numeric, ts, None), pa.float64())
    scale = pc.if_else(pc.less_equal(pc.abs(number), 2e10), 1e6, 1e3)
    epoch_us = pc.cast(pc.floor(pc.multiply(number, scale)), pa.int64())
    from_epoch = pc.cast(epoch_us, pa.timestamp("us", tz="UTC"))

    parts = pc.extract_regex(ts, _RFC3339_PARTS)

    def field(name: str) -> Any:
        return pc.struct_field(parts, name)

    sign = field("sign")
    zone = pc.if_else(
        pc.equal(sign, ""), "+0000", pc.binary_join_element_wise(sign, field("oh"), field("om"), "")
    )
    text = pc.binary_join_element_wise(field("date"), "T", field("time"), zone, "")
    whole = pc.strptime(text, format="%Y-%m-%dT%H:%M:%S%z", unit="us", error_is_null=True)
    frac = pc.utf8_rpad(pc.utf8_slice_codeunits(field("frac"), 0, 6), width=6, padding="0")
    micros = pc.cast(frac, pa.int64())
    from_text = pc.cast(pc.add(pc.cast(whole, pa.int64()), micros), pa.timestamp("us", tz="UTC"))

    event_time = pc.if_else(numeric, from_epoch, from_text)
    lo = pa.scalar(datetime(1, 1, 1, tzinfo=UTC), pa.timestamp("us", tz="UTC"))
    in_range = pc.greater_equal(event_time, lo)
    user, action = table["user_id"], table["action"]
    present = pc.and_(pc.and_(pc.is_valid(ts), pc.is_valid(user)), pc.is_valid(action))
    fields_ok = pc.and_(pc.not_equal(user, ""), pc.not_equal(action, ""))
    keep = pc.fill_null(pc.and_(pc.and_(present, fields_ok), in_range), False)

    kept = event_time.filter(keep)
    seconds = pc.cast(kept, pa.timestamp("s", tz="UTC"), safe=False)
    clean = pa.table(
        {
            "timestamp": pc.strftime(seconds, "%Y-%m-%d %H:%M:%S"),
            "day_of_week": pc.strftime(seconds, "%A"),
            "event_time": kept,
            "user_id": user.filter(keep),
            "action": action.filter(keep),
        }
    )
    return PeerResult(clean, rejected + len(table) - len(clean))


# ----- polars -------------------------------------------------------------------------------


def polars_read(data: bytes) -> PeerResult:
    """`polars.read_ndjson` of the three fields as strings, then the expression transform."""
    import polars as pl

    try:
        frame = pl.read_ndjson(io.BytesIO(data), schema=dict.fromkeys(FIELDS, pl.String))
    except pl.exceptions.ComputeError as exc:
        raise PeerFailed(f"polars.read_ndjson: {str(exc).splitlines()[0]}") from exc
    return polars_transform(frame, rejected=0)


def polars_fallback(data: bytes) -> PeerResult:
    """Per line: keep what orjson accepts as an object, then one read_ndjson of those lines."""
    import polars as pl

    good, _numbers, rejected = object_lines(data)
    frame = pl.read_ndjson(io.BytesIO(b"\n".join(good)), schema=dict.fromkeys(FIELDS, pl.String))
    return polars_transform(frame, rejected)


def polars_expressions() -> dict[str, Any]:
    """The contract's transform as polars expressions: event_time and the validity mask."""
    import polars as pl

    ts = pl.col("timestamp")
    numeric = ts.str.contains(_NUMERIC)
    number = ts.cast(pl.Float64, strict=False)
    epoch_us = (
        pl.when(number.abs() <= 2e10).then(number * 1e6).otherwise(number * 1e3).floor()
    ).cast(pl.Int64)
    # Normalise to one format without regex rewriting (cheap slices; validated below): separator
    # `T`, and an explicit offset, `+00:00` for `Z`, `z` or none.
    base = ts.str.slice(0, 10) + "T" + ts.str.slice(11)
    text = (
        pl.when(ts.str.contains(r"[+-][0-9]{2}:?[0-9]{2}$"))
        .then(base)
        .otherwise(base.str.strip_chars_end("Zz") + "+00:00")
    )
    parsed = text.str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_unit="us", time_zone="UTC"
    )
    event_time = (
        pl.when(numeric)
        .then(epoch_us.cast(pl.Datetime("us", "UTC")))
        .when(ts.str.contains(_RFC3339_PARTS))
        .then(parsed)
        .otherwise(None)
    )
    user, action = pl.col("user_id"), pl.col("action")
    return {
        "event_time": event_time,
        "fields_ok": user.is_not_null() & action.is_not_null() & (user != "") & (action != ""),
    }


def polars_transform(frame: Any, rejected: int) -> PeerResult:
    import polars as pl

    exprs = polars_expressions()
    staged = frame.with_columns(event_time=exprs["event_time"], _ok=exprs["fields_ok"])
    et = pl.col("event_time")
    clean = staged.filter(
        pl.col("_ok") & et.is_not_null() & et.dt.year().is_between(1, 9999)
    ).select(
        timestamp=et.dt.strftime("%Y-%m-%d %H:%M:%S"),
        day_of_week=et.dt.strftime("%A"),
        event_time=et,
        user_id=pl.col("user_id"),
        action=pl.col("action"),
    )
    return PeerResult(clean, rejected + frame.height - clean.height)


# ----- registry -----------------------------------------------------------------------------

PEERS: dict[str, Callable[[bytes], PeerResult]] = {
    "seed": seed,
    "orjson": orjson_loop,
    "pyarrow": pyarrow_read,
    "polars": polars_read,
}
FALLBACKS: dict[str, Callable[[bytes], PeerResult]] = {
    "pyarrow": pyarrow_fallback,
    "polars": polars_fallback,
}


def run_peer(name: str, data: bytes) -> tuple[PeerResult, str | None]:
    """The peer's result and, when its bulk reader failed outright, why (then the fallback ran)."""
    try:
        return PEERS[name](data), None
    except PeerFailed as exc:
        return FALLBACKS[name](data), str(exc)
