"""The HTTP API against a real uvicorn server on loopback, over data the real pipeline stored.

Expected counts come from the generated input (which records are valid logins and when they
happened), never from the API's own arithmetic: the time-zone windows are recomputed here with
zoneinfo record by record.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from logsieve.api import ACCEPTED_PARAMETERS, BackgroundServer, create_app, openapi_document
from logsieve.errors import SourceError
from logsieve.storage import ingest

UTC = timezone.utc
BASE = datetime(2025, 8, 20, tzinfo=UTC)
ZONES = ["UTC", "America/New_York", "Asia/Tokyo", "Pacific/Kiritimati", "Pacific/Pago_Pago"]


@dataclass(frozen=True)
class Record:
    """One generated input line and what the pipeline must make of it."""

    line: str
    instant: datetime | None  # None: the line is invalid and must not count
    action: str | None

    @property
    def is_login(self) -> bool:
        return self.instant is not None and self.action == "login"


def _timestamp(instant: datetime, rng: random.Random) -> str | int:
    """The same instant in one of the forms the record contract accepts."""
    style = rng.randrange(5)
    if style == 0:
        return instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if style == 1:
        offset = timedelta(hours=rng.choice([-8, -3, 2, 9]), minutes=rng.choice([0, 30]))
        local = instant.astimezone(timezone(offset))
        return local.isoformat()
    if style == 2:
        return instant.strftime("%Y-%m-%d %H:%M:%S.%f")
    whole = instant.replace(microsecond=0)
    if style == 3:
        return int(whole.timestamp())
    return int(whole.timestamp()) * 1000


def make_records(seed: int, count: int, start: datetime, span: timedelta) -> list[Record]:
    """Valid records of several actions spread over [start, start + span), plus invalid ones."""
    rng = random.Random(seed)
    records = []
    for i in range(count):
        instant = start + timedelta(microseconds=rng.randrange(int(span.total_seconds() * 1e6)))
        if isinstance(stamp := _timestamp(instant, rng), int):
            instant = instant.replace(microsecond=0)
        action = rng.choice(["login", "login", "logout", "view", "LOGIN", "login "])
        roll = rng.random()
        if roll < 0.05:  # invalid: a date without a time
            line = json.dumps(
                {"timestamp": instant.date().isoformat(), "user_id": i, "action": action}
            )
            records.append(Record(line, None, action))
        elif roll < 0.08:  # invalid: no user
            records.append(Record(json.dumps({"timestamp": stamp, "action": action}), None, action))
        elif roll < 0.10:  # invalid: not JSON at all
            records.append(Record(f'{{"timestamp": "{stamp}", "action": "login",', None, action))
        else:
            body = {"timestamp": stamp, "user_id": f"u{rng.randrange(500)}", "action": action}
            if rng.random() < 0.3:
                body["extra"] = {"ip": f"10.0.0.{rng.randrange(255)}"}
            records.append(Record(json.dumps(body), instant, action))
    return records


def boundary_records() -> list[Record]:
    """Logins on both sides of a UTC midnight, to the microsecond."""
    midnight = datetime(2025, 8, 21, tzinfo=UTC)
    instants = [midnight - timedelta(microseconds=1), midnight, midnight + timedelta(seconds=1)]
    return [
        Record(
            json.dumps(
                {"timestamp": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "user_id": 1, "action": "login"}
            ),
            t,
            "login",
        )
        for t in instants
    ]


def expected_logins(records: list[Record], day: date, zone: str = "UTC") -> int:
    tz = ZoneInfo(zone)
    return sum(1 for r in records if r.is_login and r.instant.astimezone(tz).date() == day)


def store(records: list[Record], path: Path, clean: Path, errors: Path) -> None:
    """Write the records as a JSON Lines file and run it through the real pipeline."""
    path.write_text("\n".join(r.line for r in records) + "\n\n", encoding="utf-8")
    with path.open("rb") as stream:
        result = ingest(stream, source=str(path), clean_uri=str(clean), error_uri=str(errors))
    assert result.valid == sum(1 for r in records if r.instant is not None)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Record]]:
    """Three days of history, a source around 'now' and exact-midnight logins, all stored."""
    root = tmp_path_factory.mktemp("api")
    clean, errors = root / "clean", root / "errors"
    now = datetime.now(UTC)
    sources = {
        "history-a.jsonl": make_records(1, 1500, BASE - timedelta(days=1), timedelta(days=3)),
        "history-b.jsonl": make_records(2, 1500, BASE - timedelta(days=1), timedelta(days=3)),
        "recent.jsonl": make_records(3, 800, now - timedelta(hours=40), timedelta(hours=80)),
        "midnight.jsonl": boundary_records(),
    }
    everything: list[Record] = []
    for name, records in sources.items():
        store(records, root / name, clean, errors)
        everything.extend(records)
    return clean, everything


@pytest.fixture(scope="module")
def client(dataset: tuple[Path, list[Record]]) -> Iterator[httpx.Client]:
    server = BackgroundServer(create_app(str(dataset[0])))
    with server, httpx.Client(base_url=server.url, timeout=30, trust_env=False) as http:
        yield http


def get_ok(client: httpx.Client, url: str, **params: str) -> dict:
    response = client.get(url, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


# --- counts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("day", ["2025-08-19", "2025-08-20", "2025-08-21", "2025-08-22"])
def test_utc_day_counts_match_the_input(client: httpx.Client, dataset, day: str) -> None:
    _, records = dataset
    expected = expected_logins(records, date.fromisoformat(day))
    assert expected > 0 or day == "2025-08-22"
    assert get_ok(client, "/logins_today", date=day) == {
        "logins_today": expected,
        "date": day,
        "tz": "UTC",
    }


def test_midnight_belongs_to_the_day_it_starts(client: httpx.Client, dataset) -> None:
    _, records = dataset
    # the generated history alone would give these; the boundary records shift each by one or two
    history = [r for r in records if r not in boundary_records()]
    before = get_ok(client, "/logins_today", date="2025-08-20")["logins_today"]
    after = get_ok(client, "/logins_today", date="2025-08-21")["logins_today"]
    assert before == expected_logins(history, date(2025, 8, 20)) + 1
    assert after == expected_logins(history, date(2025, 8, 21)) + 2


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("day", ["2025-08-19", "2025-08-20", "2025-08-21"])
def test_tz_day_spans_two_utc_partitions(
    client: httpx.Client, dataset, zone: str, day: str
) -> None:
    _, records = dataset
    body = get_ok(client, "/logins_today", date=day, tz=zone)
    assert body == {
        "logins_today": expected_logins(records, date.fromisoformat(day), zone),
        "date": day,
        "tz": zone,
    }


def test_tz_changes_the_answer(client: httpx.Client, dataset) -> None:
    """Guards the test above: the zones really do cut the data differently."""
    answers = {
        get_ok(client, "/logins_today", date="2025-08-20", tz=z)["logins_today"] for z in ZONES
    }
    assert len(answers) == len(ZONES)


@pytest.mark.parametrize("zone", [None, "Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_default_is_today_in_the_zone(client: httpx.Client, dataset, zone: str | None) -> None:
    _, records = dataset
    tz = ZoneInfo(zone or "UTC")
    before = datetime.now(tz).date()
    body = get_ok(client, "/logins_today", **({"tz": zone} if zone else {}))
    after = datetime.now(tz).date()
    answered = date.fromisoformat(body["date"])
    assert answered in (before, after)
    assert body["logins_today"] == expected_logins(records, answered, zone or "UTC") > 0


@pytest.mark.parametrize(
    ("day", "zone"), [("0001-01-01", "Pacific/Kiritimati"), ("9999-12-31", "Pacific/Pago_Pago")]
)
def test_days_at_the_ends_of_the_calendar(client: httpx.Client, day: str, zone: str) -> None:
    assert get_ok(client, "/logins_today", date=day, tz=zone)["logins_today"] == 0


def test_last_day_of_the_calendar_east_of_utc_ends_at_its_local_midnight(tmp_path: Path) -> None:
    """9999-12-31 in Tokyo ends at 14:59:59.999999 UTC, not at the end of datetime's range."""
    partition = tmp_path / "clean" / "date=9999-12-31"
    partition.mkdir(parents=True)
    moments = [datetime(9999, 12, 31, hour, tzinfo=timezone.utc) for hour in (5, 20)]
    table = pa.table(
        {
            "action": pa.array(["login", "login"]),
            "event_time": pa.array(moments, pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, partition / "end.parquet")
    with BackgroundServer(create_app(str(tmp_path / "clean"))) as server:
        counts = {
            tz: httpx.get(
                f"{server.url}/logins_today",
                params={"date": "9999-12-31", "tz": tz},
                trust_env=False,
            ).json()["logins_today"]
            for tz in ("UTC", "Asia/Tokyo", "America/New_York")
        }
    # 20:00 UTC is already 10000-01-01 in Tokyo; in New York both are still 9999-12-31.
    assert counts == {"UTC": 2, "Asia/Tokyo": 1, "America/New_York": 2}


# --- bad requests -----------------------------------------------------------------------------

BAD_QUERIES = [
    ("date=2025-13-01", "date"),
    ("date=2025-02-30", "date"),
    ("date=20250820", "date"),
    ("date=2025-8-20", "date"),
    ("date=2025-W34-3", "date"),
    ("date=", "date"),
    ("date", "date"),
    ("date=today", "date"),
    ("date=2025-08-20T00:00:00", "date"),
    ("date=%EF%BC%92025-08-20", "date"),  # a full-width digit
    ("tz=Mars/Olympus_Mons", "tz"),
    ("tz=", "tz"),
    ("tz=europe/berlin", "tz"),
    ("tz=Europe/Berlin%20", "tz"),
    ("tz=../../etc/passwd", "tz"),
    ("tz=/etc/localtime", "tz"),
    ("tz=localtime", "tz"),  # the server's own zone: answers would depend on the machine
    ("tz=posixrules", "tz"),
    ("tz=posix/Europe/Berlin", "tz"),
    ("tz=right/UTC", "tz"),
    ("tz=Europe", "tz"),
    ("tz=%00", "tz"),
    ("tz=" + "x" * 5000, "tz"),
    ("foo=1", "foo"),
    ("DATE=2025-08-20", "DATE"),
    ("date=2025-08-20&date=2025-08-21", "date"),
    ("tz=UTC&tz=UTC", "tz"),
    ("date=2025-08-20&callback=x", "callback"),
]


@pytest.mark.parametrize(("query", "parameter"), BAD_QUERIES)
def test_bad_parameter_is_a_400_naming_it(client: httpx.Client, query: str, parameter: str) -> None:
    response = client.get(f"/logins_today?{query}")
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["parameter"] == parameter
    assert body["error"] and body["accepted"]
    if parameter in ACCEPTED_PARAMETERS:
        assert body["accepted"] == ACCEPTED_PARAMETERS[parameter]
    else:
        assert all(name in body["accepted"] for name in ACCEPTED_PARAMETERS)


@pytest.mark.parametrize("tz", ["Etc/GMT+5", "+05:00", "UTC+"])
def test_unencoded_plus_in_tz_gets_a_hint(client: httpx.Client, tz: str) -> None:
    response = client.get(f"/logins_today?date=2025-08-20&tz={tz}")
    assert response.status_code == 400
    assert "%2B" in response.json()["error"]
    encoded = client.get("/logins_today?date=2025-08-20&tz=Etc/GMT%2B5")
    assert encoded.status_code == 200 and encoded.json()["tz"] == "Etc/GMT+5"


def test_unknown_path_and_method_answer_json(client: httpx.Client) -> None:
    missing = client.get("/logins_yesterday")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    wrong = client.post("/logins_today")
    assert wrong.status_code == 405 and "error" in wrong.json()


def test_healthz(client: httpx.Client) -> None:
    assert get_ok(client, "/healthz") == {"status": "ok"}


# --- documentation ----------------------------------------------------------------------------


def test_openapi_document_is_valid_and_complete(client: httpx.Client) -> None:
    from openapi_spec_validator import validate

    document = get_ok(client, "/openapi.json")
    validate(document)
    assert document == json.loads(json.dumps(openapi_document()))
    assert set(document["paths"]) == {"/logins_today", "/healthz", "/openapi.json", "/docs"}
    operation = document["paths"]["/logins_today"]["get"]
    assert {p["name"] for p in operation["parameters"]} == set(ACCEPTED_PARAMETERS)
    assert {"200", "400", "503"} <= set(operation["responses"])


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)

    def handle_data(self, data: str) -> None:
        if "SwaggerUIBundle(" in data:
            self.scripts.append(data)


def test_docs_load_everything_from_our_server(client: httpx.Client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text and "//" not in page.text
    parser = _Assets()
    parser.feed(page.text)
    assert parser.urls, "the page references its assets"
    for url in parser.urls:
        assert url.startswith("/docs/assets/"), url
        asset = client.get(url)
        assert asset.status_code == 200 and asset.content, url
        if url.endswith(".css"):  # a stylesheet could pull fonts or images from elsewhere
            assert not re.search(r"url\((?!['\"]?data:)|@import", asset.text), url
    # Nothing else of the bundle package is served: not its demo (petstore) page, not a path.
    for other in ("index.html", "swagger-initializer.js", "..%2Fapi.py", "", "x/../index.html"):
        assert client.get(f"/docs/assets/{other}").status_code == 404, other
    bundle = client.get("/docs/assets/swagger-ui-bundle.js")
    revalidated = client.get(
        "/docs/assets/swagger-ui-bundle.js", headers={"If-None-Match": bundle.headers["etag"]}
    )
    assert revalidated.status_code == 304 and revalidated.content == b""
    assert "javascript" in bundle.headers["content-type"] and b"SwaggerUIBundle" in bundle.content
    (script,) = parser.scripts
    assert re.search(r'url:\s*"/openapi\.json"', script)
    assert re.search(r"validatorUrl:\s*null", script)  # no badge fetched from the internet


# --- liveness of the data and odd datasets ----------------------------------------------------


def test_new_file_is_noticed_while_serving(tmp_path: Path) -> None:
    clean, errors = tmp_path / "clean", tmp_path / "errors"
    first = make_records(10, 400, BASE, timedelta(days=1))
    second = make_records(11, 300, BASE, timedelta(days=1))
    store(first, tmp_path / "first.jsonl", clean, errors)
    with (
        BackgroundServer(create_app(str(clean))) as server,
        httpx.Client(base_url=server.url, trust_env=False) as http,
    ):
        day = BASE.date().isoformat()
        assert get_ok(http, "/logins_today", date=day)["logins_today"] == expected_logins(
            first, BASE.date()
        )
        store(second, tmp_path / "second.jsonl", clean, errors)
        want = expected_logins(first + second, BASE.date())
        deadline = time.monotonic() + 30
        while (got := get_ok(http, "/logins_today", date=day)["logins_today"]) != want:
            assert time.monotonic() < deadline, f"still {got}, want {want}"
            time.sleep(0.1)
        # storing the same source again replaces it: the count must not grow
        store(second, tmp_path / "second.jsonl", clean, errors)
        time.sleep(1.5)  # past the listing's lifetime, so the replaced file is re-read
        assert get_ok(http, "/logins_today", date=day)["logins_today"] == want


@pytest.mark.parametrize("exists", [False, True])
def test_missing_dataset_answers_zero_with_a_note(tmp_path: Path, exists: bool) -> None:
    clean = tmp_path / "not-yet"
    if exists:  # a directory, but not a dataset (yet): same note
        (clean / "_logsieve" / "manifests").mkdir(parents=True)
        (clean / "README.txt").write_text("not a partition")
    with (
        BackgroundServer(create_app(str(clean), listing_ttl=0.1)) as server,
        httpx.Client(base_url=server.url, trust_env=False) as http,
    ):
        body = get_ok(http, "/logins_today", date="2025-08-20")
        assert body["logins_today"] == 0 and str(clean) in body["note"]
        records = make_records(12, 200, BASE, timedelta(hours=20))
        store(records, tmp_path / "late.jsonl", clean, tmp_path / "errors")
        time.sleep(0.3)
        body = get_ok(http, "/logins_today", date="2025-08-20")
        assert body == {
            "logins_today": expected_logins(records, BASE.date()),
            "date": "2025-08-20",
            "tz": "UTC",
        }


def test_file_removed_after_listing_is_noticed(tmp_path: Path) -> None:
    """A listing cached just before a re-ingest names a file that is gone: list again, no 503."""
    from logsieve.api import CleanDataset, day_window

    clean, errors, source = tmp_path / "clean", tmp_path / "errors", tmp_path / "src.jsonl"
    before = make_records(20, 300, BASE, timedelta(hours=10))
    store(before, source, clean, errors)
    dataset = CleanDataset(str(clean), listing_ttl=3600)
    assert dataset.answer(day_window(BASE.date(), ZoneInfo("UTC"))).count == expected_logins(
        before, BASE.date()
    )
    # the same source again, now only on the next day: its file for BASE's date is deleted
    after = make_records(21, 300, BASE + timedelta(days=1), timedelta(hours=10))
    store(after, source, clean, errors)
    next_day = (BASE + timedelta(days=1)).date()
    tokyo = day_window(next_day, ZoneInfo("Asia/Tokyo"))  # reads BASE's date and the next
    assert dataset.answer(tokyo).count == expected_logins(after, next_day, "Asia/Tokyo") > 0


def test_unreadable_file_is_a_503_not_a_500(tmp_path: Path) -> None:
    partition = tmp_path / "clean" / "date=2025-08-20"
    partition.mkdir(parents=True)
    (partition / "broken.parquet").write_bytes(b"this is not parquet")
    with BackgroundServer(create_app(str(tmp_path / "clean"))) as server:
        response = httpx.get(f"{server.url}/logins_today?date=2025-08-20", trust_env=False)
    assert response.status_code == 503
    assert "cannot read the clean dataset" in response.json()["error"]


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("action", pa.array([1, 2], pa.int64())),
        ("event_time", pa.array(["2025-08-20 01:00:00", "2025-08-20 02:00:00"])),
    ],
)
def test_column_of_another_type_is_a_503_naming_the_file(
    tmp_path: Path, column: str, values: pa.Array
) -> None:
    """Parquet written by something else into the dataset: say which file, never a 500."""
    good = {
        "action": pa.array(["login", "login"]),
        "event_time": pa.array(
            [datetime(2025, 8, 20, 1, tzinfo=timezone.utc)] * 2, pa.timestamp("us", tz="UTC")
        ),
    }
    partition = tmp_path / "clean" / "date=2025-08-20"
    partition.mkdir(parents=True)
    pq.write_table(pa.table(good), partition / "fine.parquet")
    pq.write_table(pa.table({**good, column: values}), partition / "foreign.parquet")
    with BackgroundServer(create_app(str(tmp_path / "clean"))) as server:
        # Tokyo's day needs event_time as well as action; UTC's day reads action alone.
        for tz in ("UTC", "Asia/Tokyo"):
            query = {"date": "2025-08-20", "tz": tz}
            response = httpx.get(f"{server.url}/logins_today", params=query, trust_env=False)
            if column == "event_time" and tz == "UTC":
                assert response.status_code == 200  # the column is not read at all
                continue
            assert response.status_code == 503
            error = response.json()["error"]
            assert "cannot read the clean dataset" in error
            assert str(partition / "foreign.parquet") in error


def test_unreachable_s3_is_a_503_without_a_second_round_of_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The retry for files replaced since listing must not double the wait on a dead endpoint."""
    import socket
    import threading

    from logsieve.api import CleanDataset, day_window

    hangs_up = socket.socket()
    hangs_up.bind(("127.0.0.1", 0))
    hangs_up.listen(16)
    connections = []

    def accept_and_close() -> None:
        while True:
            try:
                conn, _ = hangs_up.accept()
            except OSError:
                return
            connections.append(conn)
            conn.close()

    threading.Thread(target=accept_and_close, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{hangs_up.getsockname()[1]}")
    try:
        dataset = CleanDataset("s3://lake/clean")
        with pytest.raises(SourceError, match="NETWORK_CONNECTION"):
            dataset.answer(day_window(date(2025, 8, 20), ZoneInfo("UTC")))
    finally:
        hangs_up.close()
    # One listing, which the S3 client itself tries twice (max_attempts=2); not two listings.
    assert len(connections) == 2


def test_s3_dataset_through_aws_endpoint_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="lake")
        with BackgroundServer(create_app("s3://lake/clean", listing_ttl=0.1)) as server:
            url = f"{server.url}/logins_today"
            empty = httpx.get(url, params={"date": "2025-08-20"}, trust_env=False).json()
            assert empty["logins_today"] == 0 and "s3://lake/clean" in empty["note"]
            records = make_records(13, 600, BASE - timedelta(hours=6), timedelta(hours=36))
            path = tmp_path / "s3.jsonl"
            path.write_text("\n".join(r.line for r in records) + "\n", encoding="utf-8")
            with path.open("rb") as stream:
                ingest(
                    stream,
                    source="s3://in/s3.jsonl",
                    clean_uri="s3://lake/clean",
                    error_uri="s3://lake/errors",
                    s3_client=s3,
                )
            time.sleep(0.3)
            for zone in ("UTC", "Asia/Tokyo"):
                body = httpx.get(
                    url, params={"date": "2025-08-20", "tz": zone}, trust_env=False
                ).json()
                assert body["logins_today"] == expected_logins(records, BASE.date(), zone) > 0
    finally:
        moto.stop()


class CountingProxy:
    """An HTTP proxy on 127.0.0.1 in front of moto's server that counts the requests it relays."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[str, str]] = []
        proxy = self

        class Relay(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy.requests.append((self.command, self.path))
                upstream_conn = http.client.HTTPConnection(*upstream)
                upstream_conn.request(self.command, self.path, body, dict(self.headers.items()))
                response = upstream_conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self) -> list[tuple[str, str]]:
        taken, self.requests = self.requests, []
        return taken


def parquet_bytes(moments: list[datetime]) -> bytes:
    table = pa.table(
        {
            "action": pa.array(["login"] * len(moments)),
            "event_time": pa.array(moments, pa.timestamp("us", tz="UTC")),
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def test_s3_requests_stay_few_for_bad_files_and_empty_days(monkeypatch: pytest.MonkeyPatch) -> None:
    """A corrupt file costs one read per listing, not one per request; an empty day lists one
    partition, not the whole history."""
    import boto3
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1")
        s3.create_bucket(Bucket="lake-requests")  # moto's state is per process: a name of its own
        for day in range(1, 31):  # a month of history
            moment = datetime(2025, 8, day, 12, tzinfo=timezone.utc)
            for part in range(2):
                key = f"clean/date={moment.date()}/part{part}.parquet"
                s3.put_object(Bucket="lake-requests", Key=key, Body=parquet_bytes([moment]))
        broken_key = "clean/date=2025-08-20/zz.parquet"
        s3.put_object(Bucket="lake-requests", Key=broken_key, Body=b"not parquet")
        proxy = CountingProxy((host, port))
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        with BackgroundServer(create_app("s3://lake-requests/clean", listing_ttl=60)) as server:
            url = f"{server.url}/logins_today"

            def ask(day: str) -> httpx.Response:
                return httpx.get(url, params={"date": day}, trust_env=False)

            assert ask("2025-08-19").json()["logins_today"] == 2
            proxy.take()
            broken = ask("2025-08-20")
            assert broken.status_code == 503
            assert "clean/date=2025-08-20/zz.parquet" in broken.json()["error"]
            first = proxy.take()
            # One listing, the three footers, one listing again to see whether a file changed.
            assert len(first) <= 6, first
            again = ask("2025-08-20")
            assert again.status_code == 503 and again.json() == broken.json()
            assert proxy.take() == []  # the same listing: the same answer, no storage touched

            empty = ask("2025-09-15")
            assert empty.json() == {"logins_today": 0, "date": "2025-09-15", "tz": "UTC"}
            (listing,) = proxy.take()  # that day's partition only: a day was seen already
            assert "date%3D2025-09-15" in listing[1] or "date=2025-09-15" in listing[1]
    finally:
        moto.stop()


# --- the `logsieve serve` command -------------------------------------------------------------


SERVE = [sys.executable, "-m", "logsieve.cli", "serve"]


def _logsieve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "logsieve.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_serve_command_serves_until_sigterm(dataset) -> None:
    clean, records = dataset
    proc = _logsieve("serve", "--port", "0", env={"LOGSIEVE_CLEAN_URI": str(clean)})
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        match = re.search(r"on (http://127\.0\.0\.1:\d+)", banner)
        assert match, banner + (proc.stderr.read() if proc.poll() is not None else "")
        body = httpx.get(
            f"{match.group(1)}/logins_today", params={"date": "2025-08-20"}, trust_env=False
        ).json()
        assert body["logins_today"] == expected_logins(records, BASE.date())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no clean dataset given"),
        (("--clean", "ftp://host/x"), "not supported"),
        (("--clean", "s3://"), "names no bucket"),
        (("--clean", "s3://bucket//clean/"), "has an empty path segment"),
        (("--clean", "file://elsewhere/data"), "is not a local file URL"),
        (("--clean", "file://[x/data"), "is not a local file URL"),
        (("--clean", "file:///data?version=2"), "is not a local file URL"),
        (("--clean", "file:///da%00ta"), "is not a local file URL"),
        (("--clean", ".", "--listing-ttl", "-1"), "listing TTL must be"),
        (("--clean", ".", "--host", "no-such-host.invalid"), "cannot listen on no-such-host"),
    ],
)
def test_serve_command_refuses_bad_settings(args: tuple[str, ...], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LOGSIEVE_CLEAN_URI"}
    assert message in serve_refuses(*args, env=env)


def serve_refuses(*args: str, env: dict[str, str]) -> str:
    """Run `logsieve serve ARGS --port 0`; it must exit 2 with one line on stderr, returned."""
    proc = subprocess.run(
        [*SERVE, "--port", "0", *args], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return proc.stderr


@pytest.mark.parametrize(
    ("endpoint", "problem"),
    [
        ("http://127.0.0.1:99999", "is not a valid URL"),
        ("http://[::1", "is not a valid URL"),
        ("ftp://127.0.0.1:9000", "is not an http(s) URL"),
        ("http://127.0.0.1:0", "has no usable port"),
        ("http://127.0.0.1:", "has no usable port"),
        ("http://user:secret@127.0.0.1:9000", "must be scheme://host[:port], without user info"),
        ("http://127.0.0.1:9000/prefix", "has a path, query or fragment"),
    ],
)
def test_serve_command_refuses_an_endpoint_that_cannot_work(endpoint: str, problem: str) -> None:
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    stderr = serve_refuses("--clean", "s3://lake/clean", env=env)
    assert f"AWS endpoint URL {endpoint!r} {problem}" in stderr


@pytest.mark.parametrize("form", ["file://localhost{}", "file:{}", "file://{}"])
def test_file_urls_name_the_local_directory(tmp_path: Path, form: str) -> None:
    partition = tmp_path / "clean" / "date=2025-08-20"
    partition.mkdir(parents=True)
    moment = datetime(2025, 8, 20, 9, tzinfo=timezone.utc)
    table = pa.table(
        {
            "action": pa.array(["login"]),
            "event_time": pa.array([moment], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, partition / "one.parquet")
    with BackgroundServer(create_app(form.format(tmp_path / "clean"))) as server:
        body = httpx.get(
            f"{server.url}/logins_today", params={"date": "2025-08-20"}, trust_env=False
        ).json()
    assert body["logins_today"] == 1


def test_serve_command_refuses_a_port_out_of_range() -> None:
    proc = subprocess.run(
        [*SERVE, "--clean", ".", "--port", "70000"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "'70000' is not a port number 0-65535" in proc.stderr


def test_serve_command_reports_a_busy_port(tmp_path: Path) -> None:
    from logsieve.api import bind_socket

    busy = bind_socket("127.0.0.1", 0)
    busy.listen()
    try:
        proc = subprocess.run(
            [*SERVE, "--clean", str(tmp_path), "--port", str(busy.getsockname()[1])],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        busy.close()
    assert proc.returncode == 2
    assert "cannot listen on 127.0.0.1" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
