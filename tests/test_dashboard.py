"""The dashboard's endpoints (/actions, /activity, /errors/summary, /sources, /queues) against a
real uvicorn server over tables written by the real pipeline (`logsieve.storage.ingest.ingest`).

Expected answers come from the generated input itself: which lines are valid, when they happened
(zoneinfo row by row), what each invalid line's error code is. Local hours are recomputed by
brute force, minute by minute, never by the server's bisection.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from logsieve.api.app import create_app
from logsieve.api.dashboard import QueueProbe
from logsieve.api.serving import BackgroundServer
from logsieve.errors import ConfigError
from logsieve.storage.compact import compact
from logsieve.storage.ingest import ingest

UTC = timezone.utc
ACTIONS = ["login", "login", "logout", "view", "purchase", "LOGIN", "login "]
#: (zone, day): DST days of 23 and 25 hours, half-hour shifts, a +05:45 zone, and plain days.
ZONE_DAYS = [
    ("Europe/Berlin", "2025-03-30"),
    ("Europe/Berlin", "2025-10-26"),
    ("America/New_York", "2025-10-26"),
    ("Australia/Lord_Howe", "2025-04-06"),
    ("Australia/Lord_Howe", "2025-10-05"),
    ("Asia/Kathmandu", "2025-03-30"),
    ("UTC", "2025-03-30"),
    ("UTC", "2025-10-26"),
]
#: Invalid lines, each with the error code the contract gives it.
INVALID = [
    (b"not json", "invalid_json"),
    (b'{"timestamp": "2025-03-30T10:00:00Z", "user_id": "u1",}', "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (b'{"timestamp": "2025-03-30T10:00:00Z", "user_id": "u1"}', "missing_field"),
    (b'{"timestamp": "2025-03-30T10:00:00Z", "user_id": "", "action": "login"}', "invalid_field"),
    (
        b'{"timestamp": "2025-02-30T10:00:00Z", "user_id": "u1", "action": "login"}',
        "invalid_timestamp",
    ),
]


@dataclass(frozen=True)
class Event:
    """A valid line's instant (to the millisecond) and action."""

    instant: datetime
    action: str


@dataclass(frozen=True)
class Source:
    """One input: its lines, the valid events among them and the codes of the invalid ones."""

    name: str
    events: list[Event]
    invalid: list[tuple[bytes, str]]
    arrival: datetime

    def data(self, seed: int) -> bytes:
        """The lines in a shuffled order, in several timestamp forms."""
        rng = random.Random(seed)
        lines = [_line(e, rng) for e in self.events] + [raw for raw, _ in self.invalid]
        rng.shuffle(lines)
        return b"\n".join(lines) + b"\n"


def _line(event: Event, rng: random.Random) -> bytes:
    form = rng.randrange(3)
    if form == 0:
        stamp: Any = event.instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{event.instant:%f}"[:3] + "Z"
    elif form == 1:
        offset = timezone(timedelta(hours=rng.choice([-7, 2, 9]), minutes=rng.choice([0, 30])))
        stamp = event.instant.astimezone(offset).isoformat(timespec="milliseconds")
    else:
        stamp = int(event.instant.timestamp() * 1000)  # Unix milliseconds
    return json.dumps({"timestamp": stamp, "user_id": "u7", "action": event.action}).encode()


def make_events(seed: int, count: int, start: datetime, days: int) -> list[Event]:
    rng = random.Random(seed)
    span = days * 86_400_000
    return [
        Event(start + timedelta(milliseconds=rng.randrange(span)), rng.choice(ACTIONS))
        for _ in range(count)
    ]


def edge_events() -> list[Event]:
    """Events on the instants where Berlin's and Lord Howe's clocks change, and just before."""
    out = []
    for instant in [
        datetime(2025, 3, 30, 1, tzinfo=UTC),  # Berlin 02:00 CET -> 03:00 CEST
        datetime(2025, 10, 26, 1, tzinfo=UTC),  # Berlin 03:00 CEST -> 02:00 CET
        datetime(2025, 10, 26, 0, tzinfo=UTC),  # Berlin's first 02:00
        datetime(2025, 4, 5, 15, tzinfo=UTC),  # Lord Howe 02:00 +11 -> 01:30 +10:30
        datetime(2025, 10, 4, 15, 30, tzinfo=UTC),  # Lord Howe 02:00 +10:30 -> 02:30 +11
        datetime(2025, 3, 29, 23, tzinfo=UTC),  # Berlin's local midnight
    ]:
        for delta in (timedelta(0), timedelta(milliseconds=-1)):
            out += [Event(instant + delta, "login"), Event(instant + delta, "view")]
    return out


def sources() -> list[Source]:
    spring = datetime(2025, 3, 28, tzinfo=UTC)
    autumn = datetime(2025, 10, 3, tzinfo=UTC)
    return [
        Source(
            "/logs/spring.jsonl",
            make_events(1, 2500, spring, 11) + edge_events(),
            INVALID * 3,
            datetime(2025, 3, 30, 12, 5, tzinfo=UTC),
        ),
        Source(
            "/logs/autumn.jsonl",
            make_events(2, 2500, autumn, 25),
            INVALID[:4] * 2,
            datetime(2025, 10, 26, 8, tzinfo=UTC),
        ),
    ]


def store(root: Path, source: Source, seed: int = 0) -> None:
    """Ingest one source through the real pipeline (rows to the table, errors to JSONL)."""
    ingest(
        io.BytesIO(source.data(seed)),
        source=source.name,
        clean_uri=str(root / "clean"),
        error_uri=str(root / "errors"),
        arrival=source.arrival,
    )


# --- expected answers, from the input ---------------------------------------------------------


def expected_actions(events: list[Event], day: str, zone: str) -> dict[str, int]:
    tz, wanted = ZoneInfo(zone), date.fromisoformat(day)
    return dict(Counter(e.action for e in events if e.instant.astimezone(tz).date() == wanted))


def expected_hours(day: str, zone: str) -> list[str]:
    """Every local hour of the day as 'start with offset', found minute by minute."""
    tz, wanted = ZoneInfo(zone), date.fromisoformat(day)
    at = datetime(wanted.year, wanted.month, wanted.day, tzinfo=tz).astimezone(UTC)
    hours: list[str] = []
    while (local := at.astimezone(tz)).date() <= wanted:
        if local.date() == wanted:
            start = local.replace(minute=0, second=0, microsecond=0)
            if local.utcoffset() != start.utcoffset():  # a half-hour shift begins mid-hour
                start = local
            key = _hour_key(local)
            if not hours or _hour_key(datetime.fromisoformat(hours[-1])) != key:
                hours.append(start.isoformat())
        at += timedelta(minutes=1)
    return hours


def _hour_key(local: datetime) -> tuple[int, timedelta | None]:
    return local.hour, local.utcoffset()


def expected_per_hour(events: list[Event], day: str, zone: str, action: str | None) -> Counter:
    tz, wanted = ZoneInfo(zone), date.fromisoformat(day)
    counts: Counter = Counter()
    for e in events:
        local = e.instant.astimezone(tz)
        if local.date() == wanted and (action is None or e.action == action):
            counts[_hour_key(local)] += 1
    return counts


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Source]]:
    root = tmp_path_factory.mktemp("dashboard")
    inputs = sources()
    for source in inputs:
        store(root, source)
    return root, inputs


@pytest.fixture(scope="module")
def client(lake: tuple[Path, list[Source]]) -> Iterator[httpx.Client]:
    server = BackgroundServer(create_app(str(lake[0] / "clean")))
    with server, httpx.Client(base_url=server.url, timeout=30, trust_env=False) as http:
        yield http


def get_ok(client: httpx.Client, url: str, **params: str) -> dict:
    response = client.get(url, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def all_events(lake: tuple[Path, list[Source]]) -> list[Event]:
    return [e for source in lake[1] for e in source.events]


# --- /actions and /activity -------------------------------------------------------------------


@pytest.mark.parametrize(("zone", "day"), ZONE_DAYS)
def test_actions_of_a_local_day_match_the_input(client, lake, zone: str, day: str) -> None:
    answer = get_ok(client, "/actions", date=day, tz=zone)
    expected = expected_actions(all_events(lake), day, zone)
    assert expected  # the day has rows, so the comparison says something
    assert answer["actions"] == expected
    assert answer["total"] == sum(expected.values())
    assert (answer["date"], answer["tz"]) == (day, zone)
    counts = list(answer["actions"].values())
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize(("zone", "day"), ZONE_DAYS)
@pytest.mark.parametrize("action", ["login", None, "LOGIN"])
def test_activity_per_local_hour_matches_the_input(
    client, lake, zone: str, day: str, action: str | None
) -> None:
    params = {"date": day, "tz": zone, **({"action": action} if action else {})}
    answer = get_ok(client, "/activity", **params)
    assert [h["start"] for h in answer["hours"]] == expected_hours(day, zone)
    expected = expected_per_hour(all_events(lake), day, zone, action)
    got = {_hour_key(datetime.fromisoformat(h["start"])): h["count"] for h in answer["hours"]}
    assert {k: v for k, v in got.items() if v} == dict(expected)
    assert answer["total"] == sum(expected.values()) > 0
    for hour in answer["hours"]:  # each hour's UTC start is its local start
        start = datetime.fromisoformat(hour["start"])
        assert datetime.fromisoformat(hour["utc_start"].replace("Z", "+00:00")) == start


def test_dst_days_have_23_and_25_hours(client) -> None:
    spring = get_ok(client, "/activity", date="2025-03-30", tz="Europe/Berlin")["hours"]
    autumn = get_ok(client, "/activity", date="2025-10-26", tz="Europe/Berlin")["hours"]
    assert len(spring) == 23 and "T02:" not in "".join(h["start"] for h in spring)
    assert len(autumn) == 25
    assert [h["start"][11:] for h in autumn[2:4]] == ["02:00:00+02:00", "02:00:00+01:00"]


def test_an_action_with_no_rows_is_zero_every_hour(client) -> None:
    answer = get_ok(client, "/activity", date="2025-03-30", tz="UTC", action="no-such-action")
    assert answer["total"] == 0 and len(answer["hours"]) == 24
    assert {h["count"] for h in answer["hours"]} == {0}
    assert "no-such-action" not in get_ok(client, "/actions", date="2025-03-30")["actions"]


def test_a_day_without_rows_and_the_ends_of_the_calendar(client) -> None:
    assert get_ok(client, "/actions", date="2024-01-01")["actions"] == {}
    for day, zone in [("0001-01-01", "Pacific/Kiritimati"), ("9999-12-31", "Pacific/Pago_Pago")]:
        answer = get_ok(client, "/activity", date=day, tz=zone)
        assert answer["total"] == 0 and answer["hours"]


@pytest.mark.parametrize(
    ("path", "query", "parameter"),
    [
        ("/actions", "date=2025-02-30", "date"),
        ("/actions", "tz=Mars/Base", "tz"),
        ("/actions", "action=login", "action"),  # /actions takes no action
        ("/actions", "date=2025-03-30&date=2025-03-31", "date"),
        ("/activity", "action=", "action"),
        ("/activity", "action=login&action=view", "action"),
        ("/activity", "tz=Europe/Berlin%20", "tz"),
        ("/activity", "Date=2025-03-30", "Date"),
        ("/errors/summary", "date=20250330", "date"),
        ("/errors/summary", "tz=UTC", "tz"),
        ("/sources", "limit=0", "limit"),
        ("/sources", "limit=101", "limit"),
        ("/sources", "limit=ten", "limit"),
        ("/sources", "limit=%EF%BC%91", "limit"),  # a full-width digit one
    ],
)
def test_bad_parameter_is_a_400_naming_it(client, path: str, query: str, parameter: str) -> None:
    response = client.get(f"{path}?{query}")
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["parameter"] == parameter
    assert body["error"] and body["accepted"]


def test_a_bad_error_day_says_the_default_is_today_in_utc(client) -> None:
    """/errors/summary takes no tz: its 400 must not promise "today in tz"."""
    response = client.get("/errors/summary?date=bad")
    assert response.status_code == 400
    accepted = response.json()["accepted"]
    assert "today in UTC" in accepted and "in tz" not in accepted


def test_queues_are_absent_without_a_queue(client) -> None:
    assert client.get("/queues").status_code == 404


# --- /errors/summary ----------------------------------------------------------------------------


def test_error_summary_counts_codes_and_keeps_samples(client, lake) -> None:
    _, inputs = lake
    for source in inputs:
        day = source.arrival.date().isoformat()
        answer = get_ok(client, "/errors/summary", date=day)
        expected = Counter(code for _, code in source.invalid)
        assert answer["by_code"] == dict(expected)
        assert answer["total"] == sum(expected.values()) == len(source.invalid)
        assert set(answer["samples"]) == set(expected)
        for code, samples in answer["samples"].items():
            raws = {raw.decode() for raw, c in source.invalid if c == code}
            assert 1 <= len(samples) <= 3
            assert all(s["raw"] in raws and s["source"] == source.name for s in samples)
        # Written today, not on the arrival day: no hour of that day can claim them.
        assert answer["unplaced"] == answer["total"] and sum(answer["by_hour"]) == 0
        assert answer["files"] == 1
    empty = get_ok(client, "/errors/summary", date="2025-01-01")
    assert (empty["total"], empty["by_code"], empty["files"]) == (0, {}, 0)


def test_error_lines_are_placed_in_the_hour_their_file_was_written(tmp_path: Path) -> None:
    source = sources()[0]
    store(tmp_path, source)
    (error_file,) = (tmp_path / "errors" / "date=2025-03-30").glob("*.jsonl")
    written = datetime(2025, 3, 30, 14, 20, tzinfo=UTC).timestamp()
    os.utime(error_file, (written, written))
    with BackgroundServer(create_app(str(tmp_path / "clean"))) as server:
        answer = get_ok(
            httpx.Client(base_url=server.url, trust_env=False), "/errors/summary", date="2025-03-30"
        )
    assert answer["by_hour"][14] == answer["total"] == len(source.invalid)
    assert sum(answer["by_hour"]) == answer["total"] and answer["unplaced"] == 0


def test_error_location_from_the_option_the_environment_or_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = sources()[1]
    store(tmp_path, source)
    table = tmp_path / "table"
    (tmp_path / "clean").rename(table)  # no longer `clean` beside `errors`: nothing to guess
    day = source.arrival.date().isoformat()
    with BackgroundServer(create_app(str(table))) as server:
        response = httpx.get(f"{server.url}/errors/summary", params={"date": day}, trust_env=False)
        assert response.status_code == 404 and "--errors" in response.json()["error"]
    monkeypatch.setenv("LOGSIEVE_ERROR_URI", str(tmp_path / "errors"))
    with BackgroundServer(create_app(str(table))) as server:
        answer = httpx.get(f"{server.url}/errors/summary", params={"date": day}, trust_env=False)
        assert answer.json()["total"] == len(source.invalid)
    with pytest.raises(ConfigError, match="no error records at"):
        create_app(str(table), errors_uri=str(tmp_path / "missing"))


def test_serve_refuses_an_error_location_that_is_not_there(lake) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "logsieve.cli",
            "serve",
            "--clean",
            str(lake[0] / "clean"),
            "--errors",
            str(lake[0] / "nowhere"),
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"logsieve serve: error: no error records at {lake[0] / 'nowhere'}: it is not a directory"
    )


# --- /sources -----------------------------------------------------------------------------------


def test_sources_lists_the_latest_ingests_newest_first(client, lake) -> None:
    answer = get_ok(client, "/sources")
    ingests = answer["ingests"]
    assert [i["sources"] for i in ingests] == [[s.name] for s in reversed(lake[1])]
    assert [i["version"] for i in ingests] == [answer["version"], answer["version"] - 1]
    for ingest_, source in zip(ingests, reversed(lake[1])):
        assert ingest_["rows"] == len(source.events)
        assert ingest_["dates"] == sorted({e.instant.date().isoformat() for e in source.events})
        assert ingest_["source_count"] == 1 and ingest_["committed_at"].endswith("Z")
    assert len(get_ok(client, "/sources", limit="1")["ingests"]) == 1


def test_sources_tells_a_replay_from_an_ingest(tmp_path: Path) -> None:
    """A `logsieve replay` commit names the sources it adds rows to, as an ingest does: /sources
    marks it as a replay, and the page labels it."""
    from logsieve.storage.identity import FieldNames
    from logsieve.storage.replay import replay

    lines = [
        b'{"timestamp": "2025-03-30T10:00:00Z", "user_id": "u1", "action": "login"}',
        b'{"ts": "2025-03-30T11:00:00Z", "user_id": "u2", "action": "login"}',
        b'{"ts": "2025-03-30T12:00:00Z", "user_id": "u3", "action": "view"}',
    ]
    log = tmp_path / "app.jsonl"
    log.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "logsieve.cli", "process", str(log), "--out", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = replay(str(out / "errors"), str(out / "clean"), fields=FieldNames(timestamp="ts"))
    assert report.now_valid == 2 and report.table_version is not None
    with (
        BackgroundServer(create_app(str(out / "clean"), refresh_interval=0)) as server,
        httpx.Client(base_url=server.url, trust_env=False) as http,
    ):
        replayed, ingested = get_ok(http, "/sources")["ingests"]
        page = http.get("/").text
        schema = http.get("/openapi.json").json()["components"]["schemas"]["Sources"]
    assert replayed["version"] == report.table_version and replayed["replay"] is True
    assert replayed["rows"] == 2
    assert ingested["replay"] is False and ingested["rows"] == 1
    assert "replay" in schema["properties"]["ingests"]["items"]["required"]
    assert 'i.replay ? "replay: "' in page


# --- new commits: appends, a replaced source, compaction ---------------------------------------


def test_answers_follow_commits_and_the_cache_keeps_only_live_files(tmp_path: Path) -> None:
    spring, autumn = sources()
    store(tmp_path, spring)
    app = create_app(str(tmp_path / "clean"), refresh_interval=0)
    day, zone = "2025-03-30", "Europe/Berlin"
    with (
        BackgroundServer(app) as server,
        httpx.Client(base_url=server.url, trust_env=False) as http,
    ):

        def ask() -> dict[str, int]:
            return get_ok(http, "/actions", date=day, tz=zone)["actions"]

        assert ask() == expected_actions(spring.events, day, zone)
        grown = Source(
            spring.name,
            spring.events + make_events(9, 300, datetime(2025, 3, 30, tzinfo=UTC), 1),
            [],
            spring.arrival,
        )
        store(tmp_path, grown, seed=1)  # the same source again: its rows replaced
        store(tmp_path, autumn)
        both = grown.events + autumn.events
        assert ask() == expected_actions(both, day, zone)
        report = compact(str(tmp_path / "clean"), retention_hours=0)
        assert report.changed
        assert ask() == expected_actions(both, day, zone)
        sources_now = get_ok(http, "/sources")
        assert sources_now["ingests"][0]["version"] < sources_now["version"]  # compaction skipped
    table = app.state.table
    snapshot = table.snapshot()
    live = {f.path for p in ("2025-03-29", "2025-03-30") for f in snapshot.files(p)}
    assert app.state.activity.cached_paths() == live


# --- S3: the table, the error records and the queues as `logsieve up` lays them out ------------


def test_s3_table_errors_and_queue_depths(aws_stack) -> None:
    clients, resources = aws_stack
    source = sources()[0]
    ingest(
        io.BytesIO(source.data(0)),
        source="s3://logsieve-input/spring.jsonl",
        clean_uri=resources.clean_uri,
        error_uri=resources.error_uri,
        arrival=source.arrival,
        s3_client=clients.s3,
    )
    for number in range(3):
        clients.sqs.send_message(QueueUrl=resources.dead_letter_queue_url, MessageBody=str(number))
    clients.sqs.send_message(QueueUrl=resources.queue_url, MessageBody="waiting")
    probe = QueueProbe(
        clients.sqs, {"work": resources.queue_url, "dead-letter": resources.dead_letter_queue_url}
    )
    app = create_app(resources.clean_uri, errors_uri=resources.error_uri, queues=probe)
    with (
        BackgroundServer(app) as server,
        httpx.Client(base_url=server.url, trust_env=False) as http,
    ):
        day = "2025-03-30"
        assert get_ok(http, "/actions", date=day)["actions"] == expected_actions(
            source.events, day, "UTC"
        )
        errors = get_ok(http, "/errors/summary", date=day)
        assert errors["by_code"] == dict(Counter(code for _, code in source.invalid))
        depths = {q["name"]: q["visible"] for q in get_ok(http, "/queues")["queues"]}
        assert depths == {"work": 1, "dead-letter": 3}
        assert http.get("/queues?x=1").status_code == 400
