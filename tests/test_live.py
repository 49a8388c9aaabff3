"""`logsieve up` end to end: a real process with moto's server, the worker and the API.

A boto3 upload to the input bucket must change /logins_today, and SIGINT / SIGTERM must stop
the whole thing with exit status 0. Expected counts come from the uploaded lines.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

UTC = timezone.utc
DAY = date(2025, 8, 20)
#: How `logsieve up` starts each console line: the UTC time to the millisecond.
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


class Up:
    """A running `logsieve up`, its output read line by line in the background."""

    def __init__(self, *args: str, env_extra: dict[str, str] | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
        env.update(env_extra or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "logsieve.cli", "up", "--moto-port", "0", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.errors: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put)),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.errors.append)),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, sink: Callable[[str], None]) -> None:
        for line in stream:
            sink(line)

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None and not self._readers[0].is_alive():
                    break
                continue
            self.output.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no {pattern!r} in {self.output!r} {self.errors!r}")

    def stop(self, sig: int) -> int:
        """Signal the process, wait for it and for all of its output."""
        self.proc.send_signal(sig)
        status = self.proc.wait(timeout=60)
        for reader in self._readers:
            reader.join(10)
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return status


def dead_endpoint() -> str:
    """An http URL on 127.0.0.1 where nothing listens (the port was free a moment ago)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def up() -> Iterator[Up]:
    # Service-specific endpoints left in the shell must not lead `up` (or its API) past moto.
    dead = dead_endpoint()
    running = Up(env_extra={"AWS_ENDPOINT_URL_S3": dead, "AWS_ENDPOINT_URL_SQS": dead})
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait()


def log_lines(seed: int, logins: int, others: int) -> bytes:
    """A JSON Lines file with `logins` valid logins on DAY plus noise that must not count."""
    lines = []
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    for i in range(logins):
        stamp = (start + timedelta(seconds=seed * 1000 + i * 7)).isoformat()
        lines.append({"timestamp": stamp, "user_id": f"u{i}", "action": "login"})
    for i in range(others):
        stamp = (start + timedelta(seconds=i * 11)).isoformat()
        lines.append({"timestamp": stamp, "user_id": i, "action": "logout"})
    text = "\n".join(json.dumps(line) for line in lines)
    text += '\n{"timestamp": "2025-08-20", "user_id": "x", "action": "login"}\nnot json\n'
    return text.encode()


def wait_for_count(api: str, expected: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(
            f"{api}/logins_today", params={"date": DAY.isoformat()}, trust_env=False
        ).json()
        if body["logins_today"] == expected or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_upload_shows_up_in_logins_today_then_sigint_stops_cleanly(up: Up) -> None:
    import boto3

    up.wait_for(r"moto keeps the buckets, queues and the table in memory: all of it is gone")
    aws = up.wait_for(r"AWS endpoint \(moto\): (http://127\.0\.0\.1:\d+)").group(1)
    api = up.wait_for(r"HTTP API: +(http://127\.0\.0\.1:\d+)").group(1)
    bucket = up.wait_for(r"input bucket: +s3://([^/\s]+)/").group(1)
    up.wait_for(r"curl '")

    before = httpx.get(f"{api}/logins_today", params={"date": DAY.isoformat()}, trust_env=False)
    assert before.status_code == 200
    assert before.json()["logins_today"] == 0 and "note" in before.json()

    s3 = boto3.client(
        "s3",
        endpoint_url=aws,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    first_logins, second_logins = 37, 12
    first = log_lines(1, first_logins, 20)
    s3.put_object(Bucket=bucket, Key="app/one.jsonl", Body=first)
    assert wait_for_count(api, first_logins)["logins_today"] == first_logins
    counts = f"{first_logins + 20} valid, 2 errors, 0 blank"
    up.wait_for(rf"^{STAMP} processed s3://{bucket}/app/one\.jsonl: {counts}$")
    # The dashboard's panels under `up`: queue depths and the object's two invalid lines, filed
    # under the day the object arrived.
    queues = httpx.get(f"{api}/queues", trust_env=False).json()["queues"]
    assert [(q["name"], q["visible"]) for q in queues] == [("work", 0), ("dead-letter", 0)]
    arrived = s3.head_object(Bucket=bucket, Key="app/one.jsonl")["LastModified"]
    summary = f"{api}/errors/summary?date={arrived.astimezone(UTC).date().isoformat()}"
    assert httpx.get(summary, trust_env=False).json()["total"] == 2

    second = log_lines(2, second_logins, 5)
    s3.put_object(Bucket=bucket, Key="app/two.jsonl", Body=second)
    total = first_logins + second_logins
    assert wait_for_count(api, total)["logins_today"] == total

    assert up.stop(signal.SIGINT) == 0
    assert up.output[-1].endswith(" logsieve up: stopped\n")
    assert "Traceback" not in "".join(up.errors)


def test_sigterm_stops_cleanly(up: Up) -> None:
    api = up.wait_for(r"HTTP API: +(http://127\.0\.0\.1:\d+)").group(1)
    assert httpx.get(f"{api}/healthz", trust_env=False).json() == {"status": "ok"}
    assert up.stop(signal.SIGTERM) == 0
    assert up.output[-1].endswith(" logsieve up: stopped\n")
    assert "Traceback" not in "".join(up.errors)


@pytest.mark.parametrize("option", ["--moto-port", "--port"])
def test_busy_port_is_a_one_line_error(option: str, refused: Callable[..., str]) -> None:
    from logsieve.api.serving import bind_socket

    busy = bind_socket("127.0.0.1", 0)
    busy.listen()
    ports = {"--moto-port": "0", "--port": "0", option: str(busy.getsockname()[1])}
    try:
        line = refused("up", *(x for kv in ports.items() for x in kv))
    finally:
        busy.close()
    assert "cannot listen on 127.0.0.1" in line
    # The option that chooses another port is named.
    assert f"logsieve up: error: {option} {ports[option]}: " in line
    assert f"(choose another with {option} PORT, or 0 for a free one)" in line


def test_same_port_for_moto_and_the_api_is_refused_up_front(refused: Callable[..., str]) -> None:
    port = dead_endpoint().rsplit(":", 1)[1]
    line = refused("up", "--moto-port", port, "--port", port)
    assert f"--port and --moto-port are both {port}: they need two ports" in line


@pytest.mark.parametrize(
    ("host", "in_url"),
    [
        ("0.0.0.0", "127.0.0.1"),
        ("0", "127.0.0.1"),
        ("::", "[::1]"),
        ("::0", "[::1]"),
        ("0:0:0:0:0:0:0:0", "[::1]"),
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "[::1]"),
        ("fe80::1%lo", "[fe80::1%25lo]"),
        ("localhost", "localhost"),
    ],
)
def test_urls_printed_for_a_wildcard_address_use_loopback(host: str, in_url: str) -> None:
    from logsieve.api.serving import url_host

    assert url_host(host) == in_url


def test_json_log_lines_on_request() -> None:
    running = Up("--log-format", "json")
    try:
        first = json.loads(running.wait_for(r"^\{").string)
        assert first["message"] == "the pipeline is live" and first["level"] == "info"
        assert re.fullmatch(STAMP, first["time"])
        assert "in memory" in first["note"]
        assert first["aws_endpoint"].startswith("http://127.0.0.1:")
        assert running.stop(signal.SIGTERM) == 0
        assert [json.loads(line)["message"] for line in running.output] == [
            "the pipeline is live",
            "logsieve up: stopped",
        ]
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait()
