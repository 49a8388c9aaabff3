"""Deterministic sample logs for the demo and the tests, with the expected outcome of every line.

Every line is generated together with what the record contract says must happen to it (valid,
blank, or the error code), so tests derive their expectations from the input instead of
hard-coding numbers. Valid logins are dated "today" (UTC) so that `/logins_today` has answers.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from logsieve import ERROR_CODES


@dataclass(frozen=True)
class SampleLine:
    """One physical line and its fate: "valid", "blank" or an error code."""

    raw: bytes
    expect: str
    #: For valid lines: the UTC date of the event and its action (for logins-today checks).
    day: date | None = None
    action: str | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class SampleObject:
    """One object to upload: its key, stored bytes, and what processing it must produce."""

    key: str
    description: str
    lines: list[SampleLine]
    compression: str | None = None  # "gzip" or "zstd"
    #: The stored bytes are damaged, so every attempt fails and the message ends in the DLQ.
    always_fails: bool = False
    body: bytes = field(default=b"", repr=False)

    def expected(self) -> dict[str, Any]:
        """{"processed", "valid", "errors", "blank", "error_counts"} the contract demands."""
        fates = Counter(line.expect for line in self.lines)
        codes = {code: fates[code] for code in ERROR_CODES if fates[code]}
        errors = sum(codes.values())
        return {
            "processed": fates["valid"] + errors,
            "valid": fates["valid"],
            "errors": errors,
            "blank": fates["blank"],
            "error_counts": codes,
        }

    def logins_on(self, day: date) -> list[str]:
        return [
            line.user_id or ""
            for line in self.lines
            if line.expect == "valid" and line.action == "login" and line.day == day
        ]


def _record(**fields: Any) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode("utf-8")


def _at(day: date, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), tzinfo=timezone.utc)


def _valid(raw: bytes, day: date, action: str, user_id: str) -> SampleLine:
    return SampleLine(raw, "valid", day, action, user_id)


def web_lines(today: date) -> list[SampleLine]:
    """Valid events in every timestamp form the contract accepts, one partition for yesterday."""
    t = today.isoformat()
    yesterday = today - timedelta(days=1)
    epoch_s = int(_at(today, 9, 30).timestamp())
    epoch_ms = int(_at(today, 11, 0, 30).timestamp() * 1000) + 250
    return [
        _valid(
            _record(timestamp=f"{t}T07:58:12Z", user_id="alice", action="login", ip="10.0.0.7"),
            today,
            "login",
            "alice",
        ),
        _valid(
            _record(
                timestamp=f"{t}T08:03:45.123456Z", user_id="alice", action="view", path="/dashboard"
            ),
            today,
            "view",
            "alice",
        ),
        _valid(
            _record(
                timestamp=f"{t}T10:15:00+02:00",
                user_id="bob",
                action="login",
                device={"os": "linux"},
            ),
            today,
            "login",
            "bob",
        ),
        _valid(_record(timestamp=epoch_s, user_id=1042, action="login"), today, "login", "1042"),
        _valid(
            _record(
                timestamp=epoch_ms, user_id="carol", action="purchase", amount=19.99, currency="EUR"
            ),
            today,
            "purchase",
            "carol",
        ),
        _valid(
            _record(timestamp=f"{t} 12:00:00", user_id="dave", action="login"),
            today,
            "login",
            "dave",
        ),
        _valid(
            _record(timestamp=f"{yesterday.isoformat()}T23:59:59Z", user_id="erin", action="login"),
            yesterday,
            "login",
            "erin",
        ),
        _valid(
            _record(timestamp=f"{t}T13:20:00-0500", user_id="bob", action="logout"),
            today,
            "logout",
            "bob",
        ),
        _valid(
            f'{{"timestamp":"{t}T14:00:00Z","user\\u005fid":"zoe","action":"login"}}'.encode(),
            today,
            "login",
            "zoe",
        ),
        _valid(
            _record(timestamp=f"{t}T15:45:10Z", user_id="carol", action="login") + b"\r",
            today,
            "login",
            "carol",
        ),
        SampleLine(_record(timestamp=t, user_id="frank", action="login"), "invalid_timestamp"),
    ]


def mobile_lines(today: date) -> list[SampleLine]:
    t = today.isoformat()
    users = ["grace", "heidi", "alice", "ivan", "judy", "grace"]
    lines = []
    for i, user in enumerate(users):
        raw = _record(
            timestamp=f"{t}T{6 + i:02d}:{7 * i:02d}:00Z",
            user_id=user,
            action="login",
            app="ios" if i % 2 else "android",
        )
        lines.append(_valid(raw, today, "login", user))
    lines.append(
        _valid(
            _record(timestamp=f"{t}T18:30:00Z", user_id="heidi", action="logout"),
            today,
            "logout",
            "heidi",
        )
    )
    return lines


def api_lines(today: date) -> list[SampleLine]:
    t = today.isoformat()
    lines = [
        _valid(
            _record(
                timestamp=f"{t}T09:{i:02d}:00Z",
                user_id=f"svc-{i % 3}",
                action="api_call",
                status=200 + (i % 2) * 204,
            ),
            today,
            "api_call",
            f"svc-{i % 3}",
        )
        for i in range(8)
    ]
    lines.append(
        _valid(
            _record(timestamp=f"{t}T09:59:59Z", user_id="mallory", action="login", mfa=True),
            today,
            "login",
            "mallory",
        )
    )
    return lines


def every_error_lines(today: date) -> list[SampleLine]:
    """Every error code, several ways, plus blank lines and two valid records among them."""
    t = f"{today.isoformat()}T16:00:00Z"
    ok = {"timestamp": t, "user_id": "u-1", "action": "login"}
    return [
        SampleLine(
            b'{"timestamp": "' + t.encode() + b'", "user_id": "u-1", "action": "login"',
            "invalid_json",
        ),
        SampleLine(b"{'timestamp': 1, 'user_id': 'x', 'action': 'y'}", "invalid_json"),
        SampleLine(b'{"timestamp": NaN, "user_id": "x", "action": "y"}', "invalid_json"),
        SampleLine(b'{"timestamp": 1, "user_id": "x", "action": "y",}', "invalid_json"),
        SampleLine(b"GET /index.html 200", "invalid_json"),
        SampleLine(b'\xff\xfe{"user_id": "latin-1 garbage \xe9"}', "invalid_json"),
        SampleLine(b"", "blank"),
        SampleLine(b"[1, 2, 3]", "not_an_object"),
        SampleLine(b'"just a string"', "not_an_object"),
        SampleLine(b"42", "not_an_object"),
        SampleLine(_record(user_id="u-2", action="login"), "missing_field"),
        SampleLine(_record(timestamp=t, user_id="u-3", action=None), "missing_field"),
        SampleLine(b"{}", "missing_field"),
        SampleLine(b" \t ", "blank"),
        SampleLine(_record(timestamp=t, user_id="", action="login"), "invalid_field"),
        SampleLine(_record(timestamp=t, user_id=True, action="login"), "invalid_field"),
        SampleLine(_record(timestamp=t, user_id="u-4", action=7), "invalid_field"),
        SampleLine(
            _record(timestamp=today.isoformat(), user_id="u-5", action="login"), "invalid_timestamp"
        ),
        SampleLine(
            _record(timestamp="20250820T120115Z", user_id="u-6", action="login"),
            "invalid_timestamp",
        ),
        SampleLine(
            _record(timestamp="2025-02-30T10:00:00Z", user_id="u-7", action="login"),
            "invalid_timestamp",
        ),
        SampleLine(
            _record(timestamp=f"{today.isoformat()}T25:00:00Z", user_id="u-8", action="login"),
            "invalid_timestamp",
        ),
        SampleLine(_record(timestamp=True, user_id="u-9", action="login"), "invalid_timestamp"),
        _valid(_record(**ok), today, "login", "u-1"),
        _valid(_record(**{**ok, "user_id": "u-10", "action": "logout"}), today, "logout", "u-10"),
    ]


def bulk_lines(today: date, count: int) -> list[SampleLine]:
    """`count` valid records spread over today, for a rough throughput figure."""
    start = int(_at(today, 0, 0).timestamp())
    actions = ("login", "view", "purchase", "logout")
    lines = []
    for i in range(count):
        action = actions[i % 4]
        user = f"user-{i % 997}"
        raw = _record(
            timestamp=start + (i * 86399) // max(count, 1), user_id=user, action=action, seq=i
        )
        lines.append(_valid(raw, today, action, user))
    return lines


def join_lines(lines: list[SampleLine]) -> bytes:
    return b"".join(line.raw + b"\n" for line in lines)


def _compress(data: bytes, compression: str | None) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


def _object(
    key: str, description: str, lines: list[SampleLine], compression: str | None = None
) -> SampleObject:
    body = _compress(join_lines(lines), compression)
    return SampleObject(key, description, lines, compression, body=body)


def sample_objects(today: date, *, bulk_records: int = 0) -> list[SampleObject]:
    """The demo's uploads, in upload order; identical bytes for the same `today`."""
    truncated_lines = mobile_lines(today)
    whole = gzip.compress(join_lines(truncated_lines), mtime=0)
    objects = [
        _object(
            "web/app-server 1.jsonl",
            "valid events, every timestamp form, logins today",
            web_lines(today),
        ),
        _object(
            "mobile/ios+android ✓.jsonl.gz",
            "gzip; key with '+' and unicode",
            mobile_lines(today),
            "gzip",
        ),
        _object("api/gateway.jsonl.zst", "zstd-compressed API events", api_lines(today), "zstd"),
        _object(
            "batch/every-error.jsonl", "invalid lines of every error code", every_error_lines(today)
        ),
        _object("batch/empty.jsonl", "an empty object", []),
        SampleObject(
            "broken/truncated.jsonl.gz",
            "gzip cut in half: fails on every attempt",
            truncated_lines,
            "gzip",
            always_fails=True,
            body=whole[: len(whole) // 2],
        ),
    ]
    if bulk_records:
        objects.append(
            _object(
                "bulk/generated.jsonl.gz",
                f"{bulk_records} generated records",
                bulk_lines(today, bulk_records),
                "gzip",
            )
        )
    return objects


def utc_today() -> date:
    return datetime.now(timezone.utc).date()
