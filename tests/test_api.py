"""The HTTP API against a real uvicorn server on loopback, over Delta tables written with delta-rs.

Expected counts come from the generated rows (which are logins and when they happened), never
from the API's own arithmetic: the time-zone windows are recomputed here with zoneinfo row by
row. Tables are written with `deltalake.write_deltalake` in the clean table's schema, the way
the pipeline commits: appends, predicate overwrites that replace one source's rows, compaction.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
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
from deltalake import DeltaTable, write_deltalake
from deltalake.transaction import AddAction

from logsieve.api.app import create_app
from logsieve.api.dataset import CleanTable
from logsieve.api.openapi import openapi_document
from logsieve.api.queries import ACCEPTED_PARAMETERS, day_window
from logsieve.api.serving import BackgroundServer
from logsieve.storage.table import storage_options, table_schema, table_uri

UTC = timezone.utc
BASE = datetime(2025, 8, 20, tzinfo=UTC)
ZONES = ["UTC", "America/New_York", "Asia/Tokyo", "Pacific/Kiritimati", "Pacific/Pago_Pago"]
ACTIONS = ["login", "login", "logout", "view", "LOGIN", "login "]


@dataclass(frozen=True)
class Row:
    """One clean row: when it happened and what was done (only exactly 'login' counts)."""

    instant: datetime
    action: str

    @property
    def is_login(self) -> bool:
        return self.action == "login"


def make_rows(seed: int, count: int, start: datetime, span: timedelta) -> list[Row]:
    """Rows of several actions spread over [start, start + span), to the microsecond."""
    rng = random.Random(seed)
    micros = int(span.total_seconds() * 1e6)
    return [
        Row(start + timedelta(microseconds=rng.randrange(micros)), rng.choice(ACTIONS))
        for _ in range(count)
    ]


def boundary_rows() -> list[Row]:
    """Logins on both sides of a UTC midnight, to the microsecond."""
    midnight = datetime(2025, 8, 21, tzinfo=UTC)
    instants = [midnight - timedelta(microseconds=1), midnight, midnight + timedelta(seconds=1)]
    return [Row(t, "login") for t in instants]


def expected_logins(rows: list[Row], day: date, zone: str = "UTC") -> int:
    tz = ZoneInfo(zone)
    return sum(1 for r in rows if r.is_login and r.instant.astimezone(tz).date() == day)


def clean_table(rows: list[Row], source: str) -> pa.Table:
    """The rows in the clean table's schema, as one source's ingest would commit them."""
    instants = [r.instant for r in rows]
    n = len(rows)
    return pa.table(
        {
            "timestamp": [t.strftime("%Y-%m-%d %H:%M:%S") for t in instants],
            "day_of_week": [t.strftime("%A") for t in instants],
            "event_time": pa.array(instants, pa.timestamp("us", tz="UTC")),
            "user_id": [f"u{i % 97}" for i in range(n)],
            "action": [r.action for r in rows],
            "extra": [None] * n,
            "source_id": [source] * n,
            "source": [f"s3://in/{source}.jsonl"] * n,
            "source_version": ["v1"] * n,
            "date": [t.date().isoformat() for t in instants],
        },
        schema=table_schema(),
    )


def append(location: str | DeltaTable, rows: list[Row], source: str) -> None:
    write_deltalake(
        location if isinstance(location, DeltaTable) else table_uri(location),
        clean_table(rows, source),
        partition_by=["date"],
        mode="append",
        storage_options=_options(location),
    )


def replace(location: str | DeltaTable, rows: list[Row], source: str) -> None:
    """Replace every row of `source` by `rows` in one commit (files removed and added)."""
    write_deltalake(
        location if isinstance(location, DeltaTable) else table_uri(location),
        clean_table(rows, source),
        partition_by=["date"],
        mode="overwrite",
        predicate=f"source_id = '{source}'",
        storage_options=_options(location),
    )


def _options(location: str | DeltaTable) -> dict[str, str] | None:
    return None if isinstance(location, DeltaTable) else storage_options(table_uri(location))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Row]]:
    """Three days of history, a source around 'now' and exact-midnight logins, in 5 commits."""
    clean = tmp_path_factory.mktemp("api") / "clean"
    now = datetime.now(UTC)
    sources = {
        "history-a": make_rows(1, 1500, BASE - timedelta(days=1), timedelta(days=3)),
        "history-b": make_rows(2, 1500, BASE - timedelta(days=1), timedelta(days=3)),
        "recent": make_rows(3, 800, now - timedelta(hours=40), timedelta(hours=80)),
        "midnight": boundary_rows(),
    }
    for source, rows in sources.items():
        append(str(clean), rows, source)
    # history-b again, re-ingested: its rows replaced, not added
    sources["history-b"] = make_rows(4, 1200, BASE - timedelta(days=1), timedelta(days=3))
    replace(str(clean), sources["history-b"], "history-b")
    return clean, [row for rows in sources.values() for row in rows]


@pytest.fixture(scope="module")
def client(dataset: tuple[Path, list[Row]]) -> Iterator[httpx.Client]:
    server = BackgroundServer(create_app(str(dataset[0])))
    with server, httpx.Client(base_url=server.url, timeout=30, trust_env=False) as http:
        yield http


def get_ok(client: httpx.Client, url: str, **params: str) -> dict:
    response = client.get(url, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def logins(client: httpx.Client, day: str, tz: str | None = None) -> int:
    params = {"date": day, **({"tz": tz} if tz else {})}
    return int(get_ok(client, "/logins_today", **params)["logins_today"])


def wait_for(ask: Any, want: Any, timeout: float = 30) -> None:
    """Ask until the answer is `want`: a commit shows up within the refresh interval."""
    deadline = time.monotonic() + timeout
    while (got := ask()) != want:
        assert time.monotonic() < deadline, f"still {got}, want {want}"
        time.sleep(0.05)


# --- counts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("day", ["2025-08-19", "2025-08-20", "2025-08-21", "2025-08-22"])
def test_utc_day_counts_match_the_rows(client: httpx.Client, dataset, day: str) -> None:
    clean, rows = dataset
    expected = expected_logins(rows, date.fromisoformat(day))
    assert expected > 0 or day == "2025-08-22"
    assert get_ok(client, "/logins_today", date=day) == {
        "logins_today": expected,
        "date": day,
        "tz": "UTC",
        "version": DeltaTable(str(clean)).version(),
    }


def test_midnight_belongs_to_the_day_it_starts(client: httpx.Client, dataset) -> None:
    _, rows = dataset
    # the generated history alone would give these; the boundary rows shift each by one or two
    history = [r for r in rows if r not in boundary_rows()]
    assert logins(client, "2025-08-20") == expected_logins(history, date(2025, 8, 20)) + 1
    assert logins(client, "2025-08-21") == expected_logins(history, date(2025, 8, 21)) + 2


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("day", ["2025-08-19", "2025-08-20", "2025-08-21"])
def test_tz_day_spans_two_utc_partitions(
    client: httpx.Client, dataset, zone: str, day: str
) -> None:
    _, rows = dataset
    body = get_ok(client, "/logins_today", date=day, tz=zone)
    assert body["logins_today"] == expected_logins(rows, date.fromisoformat(day), zone)
    assert (body["date"], body["tz"]) == (day, zone)


def test_tz_changes_the_answer(client: httpx.Client, dataset) -> None:
    """Guards the test above: the zones really do cut the data differently."""
    assert len({logins(client, "2025-08-20", zone) for zone in ZONES}) == len(ZONES)


@pytest.mark.parametrize("zone", [None, "Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_default_is_today_in_the_zone(client: httpx.Client, dataset, zone: str | None) -> None:
    _, rows = dataset
    tz = ZoneInfo(zone or "UTC")
    before = datetime.now(tz).date()
    body = get_ok(client, "/logins_today", **({"tz": zone} if zone else {}))
    after = datetime.now(tz).date()
    answered = date.fromisoformat(body["date"])
    assert answered in (before, after)
    assert body["logins_today"] == expected_logins(rows, answered, zone or "UTC") > 0


@pytest.mark.parametrize(
    ("day", "zone"), [("0001-01-01", "Pacific/Kiritimati"), ("9999-12-31", "Pacific/Pago_Pago")]
)
def test_days_at_the_ends_of_the_calendar(client: httpx.Client, day: str, zone: str) -> None:
    assert logins(client, day, zone) == 0


def test_last_day_of_the_calendar_east_of_utc_ends_at_its_local_midnight(tmp_path: Path) -> None:
    """9999-12-31 in Tokyo ends at 14:59:59.999999 UTC, not at the end of datetime's range."""
    moments = [datetime(9999, 12, 31, hour, tzinfo=UTC) for hour in (5, 20)]
    append(str(tmp_path), [Row(t, "login") for t in moments], "end")
    with (
        BackgroundServer(create_app(str(tmp_path))) as server,
        httpx.Client(base_url=server.url, trust_env=False) as http,
    ):
        counts = {
            tz: logins(http, "9999-12-31", tz) for tz in ("UTC", "Asia/Tokyo", "America/New_York")
        }
    # 20:00 UTC is already 10000-01-01 in Tokyo; in New York both are still 9999-12-31.
    assert counts == {"UTC": 2, "Asia/Tokyo": 1, "America/New_York": 2}


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


def test_readyz_names_the_loaded_version(client: httpx.Client, dataset) -> None:
    clean, _ = dataset
    version = DeltaTable(str(clean)).version()
    assert get_ok(client, "/readyz") == {"status": "ready", "version": version}


# --- documentation ----------------------------------------------------------------------------


def test_openapi_document_is_valid_and_complete(client: httpx.Client) -> None:
    from openapi_spec_validator import validate

    document = get_ok(client, "/openapi.json")
    validate(document)
    assert document == json.loads(json.dumps(openapi_document()))
    assert set(document["paths"]) == {
        "/logins_today",
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/docs",
        "/",
        "/actions",
        "/activity",
        "/errors/summary",
        "/sources",
        "/queues",
    }
    operation = document["paths"]["/logins_today"]["get"]
    assert {p["name"] for p in operation["parameters"]} == set(ACCEPTED_PARAMETERS)
    assert {"200", "400", "503"} <= set(operation["responses"])
    assert {"200", "503"} <= set(document["paths"]["/readyz"]["get"]["responses"])


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


# --- commits while serving --------------------------------------------------------------------


def test_appends_and_a_predicate_overwrite_give_exact_counts(tmp_path: Path) -> None:
    """The removed files of an overwrite are still on disk: only the log says they are gone."""
    day = BASE.date()
    a1 = make_rows(10, 400, BASE, timedelta(days=1))
    b1 = make_rows(11, 300, BASE, timedelta(days=1))
    append(str(tmp_path), a1, "a")
    append(str(tmp_path), b1, "b")
    table = CleanTable(str(tmp_path), refresh_interval=0)
    utc, tokyo = day_window(day, ZoneInfo("UTC")), day_window(day, ZoneInfo("Asia/Tokyo"))
    assert table.answer(utc).count == expected_logins(a1 + b1, day)
    a2 = make_rows(12, 100, BASE + timedelta(hours=12), timedelta(days=1))  # into the next day
    replace(str(tmp_path), a2, "a")
    assert table.answer(utc).count == expected_logins(a2 + b1, day)
    assert table.answer(tokyo).count == expected_logins(a2 + b1, day, "Asia/Tokyo")
    assert len(list(tmp_path.rglob("*.parquet"))) > len(table.snapshot().files(day.isoformat()))


def test_files_of_other_writers_count_exactly_beside_ours(tmp_path: Path) -> None:
    """Small files are decoded by the core; one written with a codec it does not have (brotli)
    or with nanosecond times is read by pyarrow instead, and the counts stay exact."""
    from deltalake import WriterProperties

    day = BASE.date()
    ours = make_rows(30, 400, BASE, timedelta(days=1))
    brotli = make_rows(31, 300, BASE, timedelta(days=1))
    nanos = make_rows(32, 200, BASE, timedelta(days=1))
    append(str(tmp_path), ours, "ours")
    write_deltalake(
        table_uri(str(tmp_path)),
        clean_table(brotli, "brotli"),
        partition_by=["date"],
        mode="append",
        writer_properties=WriterProperties(compression="BROTLI"),
    )
    in_nanos = clean_table(nanos, "nanos")
    at = in_nanos.schema.get_field_index("event_time")
    in_nanos = in_nanos.set_column(
        at, "event_time", in_nanos["event_time"].cast(pa.timestamp("ns", tz="UTC"))
    )
    day_dir = tmp_path / f"date={day.isoformat()}"
    pq.write_table(in_nanos.drop_columns(["date"]), day_dir / "nanos.parquet")
    DeltaTable(str(tmp_path)).create_write_transaction(
        [file_action(day_dir / "nanos.parquet", tmp_path, day, len(nanos))],
        mode="append",
        schema=table_schema(),
        partition_by=["date"],
    )
    table = CleanTable(str(tmp_path), refresh_interval=0)
    for zone in ("UTC", "Asia/Tokyo", "America/Los_Angeles"):
        window = day_window(day, ZoneInfo(zone))
        assert table.answer(window).count == expected_logins(ours + brotli + nanos, day, zone)


def file_action(path: Path, root: Path, day: date, rows: int) -> AddAction:
    """The add action of a data file written outside delta-rs, without statistics."""
    return AddAction(
        path.relative_to(root).as_posix(),
        path.stat().st_size,
        {"date": day.isoformat()},
        int(time.time() * 1000),
        True,
        json.dumps({"numRecords": rows}),
    )


def test_new_commits_are_noticed_while_serving(tmp_path: Path) -> None:
    first = make_rows(10, 400, BASE, timedelta(days=1))
    second = make_rows(11, 300, BASE, timedelta(days=1))
    append(str(tmp_path), first, "first")
    day = BASE.date().isoformat()
    with (
        BackgroundServer(create_app(str(tmp_path))) as server,
        httpx.Client(base_url=server.url, trust_env=False) as http,
    ):
        assert logins(http, day) == expected_logins(first, BASE.date())
        append(str(tmp_path), second, "second")
        wait_for(lambda: logins(http, day), expected_logins(first + second, BASE.date()))
        # the same source again replaces it: the count must not grow
        replace(str(tmp_path), second, "second")
        DeltaTable(str(tmp_path)).optimize.compact()
        version = DeltaTable(str(tmp_path)).version()
        wait_for(lambda: get_ok(http, "/logins_today", date=day).get("version"), version)
        assert logins(http, day) == expected_logins(first + second, BASE.date())


def test_removed_files_leave_the_cache(tmp_path: Path) -> None:
    rows = make_rows(13, 200, BASE, timedelta(hours=20))
    for part in range(4):
        append(str(tmp_path), rows[part::4], f"s{part}")
    table = CleanTable(str(tmp_path), refresh_interval=0)
    window = day_window(BASE.date(), ZoneInfo("UTC"))
    assert table.answer(window).count == expected_logins(rows, BASE.date())
    assert len(table._logins) == 4
    DeltaTable(str(tmp_path)).optimize.compact()
    assert table.answer(window).count == expected_logins(rows, BASE.date())
    assert len(table._logins) == 1  # the compacted file; the four it replaced are forgotten


class Model:
    """The logins each committed version really holds, per question: the test's ground truth."""

    QUESTIONS = (
        ("2025-08-20", "UTC"),
        ("2025-08-20", "Asia/Tokyo"),
        ("2025-08-21", "Asia/Tokyo"),
        ("2025-08-21", "UTC"),
    )

    def __init__(self) -> None:
        self.sources: dict[str, list[Row]] = {}
        self.by_version: dict[int, dict[tuple[str, str], int]] = {}

    def record(self, version: int) -> None:
        rows = [row for rows in self.sources.values() for row in rows]
        self.by_version[version] = {
            (day, tz): expected_logins(rows, date.fromisoformat(day), tz)
            for day, tz in self.QUESTIONS
        }


def commit_forever(path: Path, model: Model, stop: threading.Event) -> None:
    """One writer: appends, overwrites of a source and compactions, until `stop`."""
    table = DeltaTable(str(path))
    rng = random.Random(7)
    step = 0
    while not stop.is_set():
        step += 1
        source = f"s{rng.randrange(6)}"
        rows = make_rows(1000 + step, rng.randrange(5, 40), BASE, timedelta(hours=40))
        if step % 7 == 0:
            table.optimize.compact()
        elif source in model.sources:
            replace(table, rows, source)
            model.sources[source] = rows
        else:
            append(table, rows, source)
            model.sources[source] = rows
        model.record(table.version())


def test_every_answer_is_one_committed_version_while_writers_and_compaction_commit(
    tmp_path: Path,
) -> None:
    model = Model()
    model.sources["s0"] = make_rows(999, 50, BASE, timedelta(hours=40))
    append(str(tmp_path), model.sources["s0"], "s0")
    model.record(DeltaTable(str(tmp_path)).version())
    stop = threading.Event()
    writer = threading.Thread(target=commit_forever, args=(tmp_path, model, stop), daemon=True)
    answers: list[tuple[int, tuple[str, str], int]] = []

    def ask(url: str) -> None:
        with httpx.Client(base_url=url, trust_env=False, timeout=30) as http:
            while not stop.is_set():
                for day, tz in Model.QUESTIONS:
                    body = get_ok(http, "/logins_today", date=day, tz=tz)
                    answers.append((body["version"], (day, tz), body["logins_today"]))

    with BackgroundServer(create_app(str(tmp_path), refresh_interval=0.02)) as server:
        readers = [threading.Thread(target=ask, args=(server.url,)) for _ in range(4)]
        writer.start()
        for thread in readers:
            thread.start()
        deadline = time.monotonic() + 60
        while len(model.by_version) < 40 and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        writer.join(60)
        for thread in readers:
            thread.join(60)
    wrong = [
        (version, question, count, model.by_version.get(version, {}).get(question))
        for version, question, count in answers
        if model.by_version.get(version, {}).get(question) != count
    ]
    assert not wrong, wrong[:10]
    assert len({version for version, _, _ in answers}) > 5  # answers really spanned commits


# --- no table, broken tables, unreachable storage ---------------------------------------------


def test_unreadable_data_file_is_a_503_naming_it(tmp_path: Path) -> None:
    append(str(tmp_path), make_rows(20, 50, BASE, timedelta(hours=10)), "a")
    (victim,) = tmp_path.rglob("*.parquet")
    victim.write_bytes(b"this is not parquet")
    with BackgroundServer(create_app(str(tmp_path))) as server:
        response = httpx.get(f"{server.url}/logins_today?date=2025-08-20", trust_env=False)
        again = httpx.get(f"{server.url}/logins_today?date=2025-08-20", trust_env=False)
    assert response.status_code == 503
    error = response.json()["error"]
    assert "cannot read the Delta table" in error and str(victim) in error
    assert "\n" not in error
    assert again.json() == response.json()  # kept for this version, not read again


def test_corrupt_log_is_a_503_and_not_ready(tmp_path: Path) -> None:
    append(str(tmp_path), make_rows(21, 50, BASE, timedelta(hours=10)), "a")
    with (
        BackgroundServer(create_app(str(tmp_path), refresh_interval=0.05)) as server,
        httpx.Client(base_url=server.url, trust_env=False) as http,
    ):
        assert get_ok(http, "/readyz")["status"] == "ready"
        (tmp_path / "_delta_log" / f"{1:020d}.json").write_text("not json\n")
        time.sleep(0.1)
        response = http.get("/logins_today", params={"date": "2025-08-20"})
        assert response.status_code == 503
        error = response.json()["error"]
        assert (
            error.startswith(f"cannot read the Delta table at {tmp_path}: ") and "\n" not in error
        )
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"error": error, "status": "not ready"}
        assert get_ok(http, "/healthz") == {"status": "ok"}


def test_unreachable_s3_is_a_quick_503_and_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    with (
        BackgroundServer(create_app("s3://lake/clean")) as server,
        httpx.Client(base_url=server.url, trust_env=False, timeout=60) as http,
    ):
        started = time.monotonic()
        ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "not ready"
        assert "Connection refused" in ready.json()["error"]
        answer = http.get("/logins_today", params={"date": "2025-08-20"})
        assert answer.status_code == 503
        assert answer.json()["error"].startswith("cannot read the Delta table at s3://lake/clean")
        assert time.monotonic() - started < 30
        assert get_ok(http, "/healthz") == {"status": "ok"}


def test_s3_table_before_and_after_its_first_commit(moto_endpoint: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket="lake")
    uri = "s3://lake/clean"
    with (
        BackgroundServer(create_app(uri, refresh_interval=0.1)) as server,
        httpx.Client(base_url=server.url, trust_env=False, timeout=30) as http,
    ):
        empty = get_ok(http, "/logins_today", date="2025-08-20")
        assert empty["logins_today"] == 0 and "no Delta table at s3://lake/clean" in empty["note"]
        not_ready = http.get("/readyz")
        assert not_ready.status_code == 503 and "no Delta table" in not_ready.json()["error"]

        first = make_rows(13, 600, BASE - timedelta(hours=6), timedelta(hours=36))
        second = make_rows(14, 300, BASE - timedelta(hours=6), timedelta(hours=36))
        append(uri, first, "first")
        append(uri, second, "second")
        for zone in ("UTC", "Asia/Tokyo"):
            want = expected_logins(first + second, BASE.date(), zone)
            wait_for(lambda zone=zone: logins(http, "2025-08-20", zone), want)
        assert get_ok(http, "/readyz")["status"] == "ready"

        replace(uri, second[:100], "second")
        want = expected_logins(first + second[:100], BASE.date(), "Asia/Tokyo")
        wait_for(lambda: logins(http, "2025-08-20", "Asia/Tokyo"), want)


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
    clean, rows = dataset
    proc = _logsieve("serve", "--port", "0", env={"LOGSIEVE_CLEAN_URI": str(clean)})
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        match = re.search(r"on (http://127\.0\.0\.1:\d+)", banner)
        assert match, banner + (proc.stderr.read() if proc.poll() is not None else "")
        body = httpx.get(
            f"{match.group(1)}/logins_today", params={"date": "2025-08-20"}, trust_env=False
        ).json()
        assert body["logins_today"] == expected_logins(rows, BASE.date())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no clean table given"),
        (("--clean", "ftp://host/x"), "not supported"),
        (("--clean", "s3://"), "names no bucket"),
        (("--clean", "s3://bucket//clean/"), "has an empty path segment"),
        (("--clean", "file://elsewhere/data"), "is not a local file URL"),
        (("--clean", "file://[x/data"), "is not a local file URL"),
        (("--clean", "file:///data?version=2"), "is not a local file URL"),
        (("--clean", "file:///da%00ta"), "is not a local file URL"),
        (("--clean", "{table}", "--refresh-interval", "-1"), "refresh interval must be"),
        (("--clean", "{table}", "--host", "no-such-host.invalid"), "cannot listen on no-such-host"),
    ],
)
def test_serve_command_refuses_bad_settings(
    dataset, args: tuple[str, ...], message: str, refused: Callable[..., str]
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LOGSIEVE_CLEAN_URI"}
    filled = [arg.format(table=dataset[0]) for arg in args]
    assert message in refused("serve", "--port", "0", *filled, env=env)


def test_serve_command_refuses_a_missing_local_table(
    tmp_path: Path, refused: Callable[..., str]
) -> None:
    missing = tmp_path / "nowhere"
    assert f"no Delta table at {missing}: the directory does not exist" in refused(
        "serve", "--port", "0", "--clean", str(missing)
    )
    (tmp_path / "date=2025-08-20").mkdir()  # Parquet partitions without a log are no table
    assert "holds no _delta_log/" in refused("serve", "--port", "0", "--clean", str(tmp_path))


def test_serve_command_points_at_the_table_inside_an_output_folder(
    tmp_path: Path, refused: Callable[..., str]
) -> None:
    """`logsieve process --out DIR` puts the table at DIR/clean: say so when given DIR."""
    append(str(tmp_path / "clean"), make_rows(22, 10, BASE, timedelta(hours=1)), "a")
    stderr = refused("serve", "--port", "0", "--clean", str(tmp_path))
    assert f"did you mean --clean {tmp_path / 'clean'}" in stderr


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
def test_serve_command_refuses_an_endpoint_that_cannot_work(
    endpoint: str, problem: str, refused: Callable[..., str]
) -> None:
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    stderr = refused("serve", "--port", "0", "--clean", "s3://lake/clean", env=env)
    assert f"AWS endpoint URL {endpoint!r} {problem}" in stderr


@pytest.mark.parametrize("form", ["file://localhost{}", "file:{}", "file://{}"])
def test_file_urls_name_the_local_directory(tmp_path: Path, form: str) -> None:
    append(str(tmp_path), [Row(datetime(2025, 8, 20, 9, tzinfo=UTC), "login")], "one")
    with (
        BackgroundServer(create_app(form.format(tmp_path))) as server,
        httpx.Client(base_url=server.url, trust_env=False) as http,
    ):
        assert logins(http, "2025-08-20") == 1


def test_serve_command_refuses_a_port_out_of_range() -> None:
    proc = subprocess.run(
        [*SERVE, "--clean", ".", "--port", "70000"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "'70000' is not a port number 0-65535" in proc.stderr


def test_serve_command_reports_a_busy_port(dataset) -> None:
    from logsieve.api.serving import bind_socket

    busy = bind_socket("127.0.0.1", 0)
    busy.listen()
    try:
        proc = subprocess.run(
            [*SERVE, "--clean", str(dataset[0]), "--port", str(busy.getsockname()[1])],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        busy.close()
    assert proc.returncode == 2
    assert "cannot listen on 127.0.0.1" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
