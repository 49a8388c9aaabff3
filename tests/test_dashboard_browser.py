"""The dashboard in a real browser: headless Chromium (the system's, driven by Playwright) loads
`GET /` from a real uvicorn server over a table the real pipeline wrote, and the numbers the page
renders must equal what the API answers. Any request to another origin fails the test: the page
must work with no network.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from logsieve.api.app import create_app
from logsieve.api.serving import BackgroundServer
from test_dashboard import sources, store

DAY, ZONE = "2025-03-30", "Europe/Berlin"


def chromium_path() -> str:
    """The system's Chromium (Debian's `chromium`; `.ci/run` installs it when missing)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no Chromium on PATH: install Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    root = tmp_path_factory.mktemp("browser")
    for source in sources():
        store(root, source)
    with BackgroundServer(create_app(str(root / "clean"))) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        yield launched
        launched.close()


def test_dashboard_shows_what_the_api_answers(server, browser, tmp_path: Path) -> None:
    api = httpx.Client(base_url=server.url, trust_env=False, timeout=30)
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    foreign: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server.url) else foreign.append(r.url))
    failures: list[str] = []
    page.on("pageerror", lambda exc: failures.append(str(exc)))

    page.goto(f"{server.url}/?date={DAY}&tz={ZONE}")
    page.wait_for_function("Number(document.body.dataset.refreshes) >= 1", timeout=30_000)

    logins = api.get("/logins_today", params={"date": DAY, "tz": ZONE}).json()
    assert page.locator("#logins-count").get_attribute("data-count") == str(logins["logins_today"])
    assert page.locator("#logins-tz").inner_text() == ZONE

    actions = api.get("/actions", params={"date": DAY, "tz": ZONE}).json()["actions"]
    shown = page.eval_on_selector_all(
        "#actions-table td[data-action]",
        "cells => cells.map(c => [c.dataset.action, +c.dataset.count])",
    )
    assert dict(shown) == actions and len(shown) == len(actions)

    # The hourly chart: one bar per local hour (23 on this DST day) for each series.
    for series, params in [("all", {}), ("login", {"action": "login"})]:
        hours = api.get("/activity", params={"date": DAY, "tz": ZONE, **params}).json()["hours"]
        bars = page.eval_on_selector_all(
            f"#chart-activity rect[data-series='{series}']",
            "bars => bars.map(b => +b.dataset.count)",
        )
        assert bars == [h["count"] for h in hours] and len(bars) == 23

    errors = api.get("/errors/summary", params={"date": DAY}).json()
    assert page.locator("#invalid-total").inner_text() == f"{errors['total']:,}"
    codes = page.eval_on_selector_all(
        "#error-codes td[data-code]", "cells => cells.map(c => [c.dataset.code, +c.dataset.count])"
    )
    assert dict(codes) == errors["by_code"] and errors["total"] > 0
    assert page.locator("#error-codes pre").count() == sum(
        len(s) for s in errors["samples"].values()
    )
    valid = api.get("/activity", params={"date": DAY, "tz": "UTC"}).json()
    bars = page.eval_on_selector_all(
        "#chart-lines rect[data-series='valid']", "bars => bars.map(b => +b.dataset.count)"
    )
    assert bars == [h["count"] for h in valid["hours"]]

    ingests = api.get("/sources", params={"limit": "8"}).json()["ingests"]
    assert page.locator("#sources-table tbody tr").count() == len(ingests) == 2
    assert page.locator("#queues-card").is_hidden()  # no queue behind `logsieve serve`

    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000

    # Another zone: the page asks again and shows that zone's count.
    before = int(page.evaluate("document.body.dataset.refreshes"))
    page.select_option("#tz", "UTC")
    page.wait_for_function(f"Number(document.body.dataset.refreshes) > {before}", timeout=30_000)
    utc = api.get("/logins_today", params={"date": DAY, "tz": "UTC"}).json()["logins_today"]
    assert page.locator("#logins-count").get_attribute("data-count") == str(utc)
    assert (
        utc != logins["logins_today"]
    )  # the zone changed the answer, so the check means something
    assert "tz=UTC" in page.url

    assert foreign == [] and failures == []
    page.close()
