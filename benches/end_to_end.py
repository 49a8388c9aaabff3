"""File in, partitioned Parquet + error JSONL out: logsieve's job done the way peers would do it.

Each function reads one JSON Lines file and writes `clean/date=YYYY-MM-DD/<name>.parquet` (zstd)
and `errors/<name>.jsonl` (one JSON object per rejected line: line, error, detail, raw) under
`out`, and returns (valid rows, error records) so the benchmark can check the work was done.
"""

from __future__ import annotations

import base64
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from peers import FIELDS, is_blank, split_lines, strict_json_loads, validate

_DETAIL = {
    "invalid_json": "the line is not one valid JSON value",
    "not_an_object": "the JSON value is not an object",
    "missing_field": "a required field is missing or null",
    "invalid_field": "user_id or action is empty or of the wrong type",
    "invalid_timestamp": "the timestamp is not an accepted form",
}


def _error_record(number: int, code: str, raw: bytes) -> dict[str, Any]:
    record: dict[str, Any] = {"line": number, "error": code, "detail": _DETAIL[code]}
    try:
        record["raw"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["raw_base64"] = base64.b64encode(raw).decode()
    return record


def logsieve_ingest(path: Path, out: Path) -> tuple[int, int]:
    """`logsieve.storage.ingest.ingest`: what `logsieve process FILE` runs for each input."""
    from logsieve.storage.ingest import ingest

    with path.open("rb") as stream:
        result = ingest(
            stream,
            source=str(path.resolve()),
            clean_uri=str(out / "clean"),
            error_uri=str(out / "errors"),
        )
    return result.valid, result.errors


def seed_e2e(path: Path, out: Path) -> tuple[int, int]:
    """Plain Python: json.loads per line, rows grouped by date, one pyarrow table per date."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    by_date: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    errors_path = out / "errors" / "seed.jsonl"
    errors_path.parent.mkdir(parents=True, exist_ok=True)
    n_valid = n_errors = 0
    with errors_path.open("w", encoding="utf-8") as errors:
        for number, line in enumerate(split_lines(path.read_bytes()), start=1):
            if is_blank(line):
                continue
            try:
                row = validate(strict_json_loads(line))
            except ValueError:
                row = "invalid_json"
            if isinstance(row, str):
                errors.write(json.dumps(_error_record(number, row, line)) + "\n")
                n_errors += 1
                continue
            user, action, instant = row
            cols = by_date[instant.strftime("%Y-%m-%d")]
            cols["timestamp"].append(instant.strftime("%Y-%m-%d %H:%M:%S"))
            cols["day_of_week"].append(instant.strftime("%A"))
            cols["event_time"].append(instant)
            cols["user_id"].append(user)
            cols["action"].append(action)
            n_valid += 1
    for date, cols in by_date.items():
        table = pa.table(
            {
                "timestamp": pa.array(cols["timestamp"], pa.string()),
                "day_of_week": pa.array(cols["day_of_week"], pa.string()),
                "event_time": pa.array(cols["event_time"], pa.timestamp("us", tz="UTC")),
                "user_id": pa.array(cols["user_id"], pa.string()),
                "action": pa.array(cols["action"], pa.string()),
            }
        )
        target = out / "clean" / f"date={date}"
        target.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, target / "seed.parquet", compression="zstd")
    return n_valid, n_errors


def polars_e2e(path: Path, out: Path) -> tuple[int, int]:
    """polars: per-line pre-filter (read_ndjson aborts on dirty data), expressions, then
    `write_parquet(partition_by="date")`; rejected rows are traced back to their raw lines."""
    import polars as pl

    from peers import polars_expressions

    lines = split_lines(path.read_bytes())
    good: list[bytes] = []
    numbers: list[int] = []
    rejected: list[dict[str, Any]] = []
    loads = orjson.loads
    for number, line in enumerate(lines, start=1):
        if is_blank(line):
            continue
        try:
            obj = loads(line)
        except orjson.JSONDecodeError:
            rejected.append(_error_record(number, "invalid_json", line))
            continue
        if type(obj) is dict:
            good.append(line)
            numbers.append(number)
        else:
            rejected.append(_error_record(number, "not_an_object", line))

    frame = pl.read_ndjson(io.BytesIO(b"\n".join(good)), schema=dict.fromkeys(FIELDS, pl.String))
    exprs = polars_expressions()
    et = pl.col("event_time")
    present = pl.all_horizontal(pl.col(name).is_not_null() for name in FIELDS)
    staged = frame.with_columns(
        line=pl.Series(numbers, dtype=pl.Int64), event_time=exprs["event_time"]
    ).with_columns(
        error=pl.when(~present)
        .then(pl.lit("missing_field"))
        .when(~exprs["fields_ok"])
        .then(pl.lit("invalid_field"))
        .when(et.is_null() | ~et.dt.year().is_between(1, 9999))
        .then(pl.lit("invalid_timestamp"))
    )
    clean = staged.filter(pl.col("error").is_null()).select(
        timestamp=et.dt.strftime("%Y-%m-%d %H:%M:%S"),
        day_of_week=et.dt.strftime("%A"),
        event_time=et,
        user_id=pl.col("user_id"),
        action=pl.col("action"),
        date=et.dt.strftime("%Y-%m-%d"),
    )
    clean.write_parquet(out / "clean", partition_by="date", compression="zstd")
    bad = staged.filter(pl.col("error").is_not_null()).select("line", "error")
    for number, code in bad.iter_rows():
        rejected.append(_error_record(number, code, lines[number - 1]))
    rejected.sort(key=lambda record: record["line"])
    errors_path = out / "errors" / "polars.jsonl"
    errors_path.parent.mkdir(parents=True, exist_ok=True)
    with errors_path.open("wb") as errors:
        for record in rejected:
            errors.write(orjson.dumps(record) + b"\n")
    return clean.height, len(rejected)


E2E = {"logsieve": logsieve_ingest, "polars": polars_e2e, "seed": seed_e2e}
