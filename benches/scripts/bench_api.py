"""How fast `/logins_today` answers: latency warm and cold, and throughput under load.

The dataset is the clean Delta table the pipeline writes (partitioned by `date`, the table's
schema and writer properties, four sources per day, each appended in its own commit), generated
with pyarrow and delta-rs because pushing 10 M rows through the pipeline would only measure the
pipeline. It is cached under `.benchmarks/api/` (or `$LOGSIEVE_BENCH_DIR`).

The server is the real `logsieve serve` in its own process; latencies are measured from this
process one request at a time, throughput from a *second* process keeping many requests in
flight. "Cold" is the first question about a day: its files are read (the operating system's page
cache may still hold them: this measures our work, not the disk);
"warm" is a repeated question answered from the cache. The same per-day size is served with a
short and a long history to show the cost follows one day, not the number of days.

Script:  .venv/bin/python benches/scripts/bench_api.py [--rows 10000000] [--days 50] [--json]
pytest:  .venv/bin/pytest benches/scripts/bench_api.py -p no:cacheprovider --benchmark-only
         (smaller: $LOGSIEVE_BENCH_ROWS rows over $LOGSIEVE_BENCH_DAYS days, default 2 M / 10)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

FIRST_DAY = date(2025, 1, 1)
FILES_PER_DAY = 4
ACTIONS = ["login", "logout", "view", "purchase", "search"]
_TZ_SAMPLES = 20
_ZONES = [
    "Asia/Tokyo",
    "America/New_York",
    "Australia/Adelaide",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "Europe/Berlin",
]


# --- data -------------------------------------------------------------------------------------


def bench_dir() -> Path:
    return Path(os.environ.get("LOGSIEVE_BENCH_DIR", Path(".benchmarks") / "api"))


def build_dataset(rows: int, days: int, root: Path | None = None) -> Path:
    """`rows` rows spread evenly over `days` UTC days; reused when already built."""
    from logsieve.storage.table import create_table

    clean = (root or bench_dir()) / f"delta-rows{rows}-days{days}"
    marker = clean / "_complete.json"
    if marker.exists():
        return clean
    per_file = rows // (days * FILES_PER_DAY)
    table = create_table(str(clean))
    seed = 0
    for i in range(days):
        day = FIRST_DAY + timedelta(days=i)
        for _ in range(FILES_PER_DAY):
            seed += 1
            append_source(table, day, per_file, seed)
    marker.write_text(json.dumps({"rows": per_file * days * FILES_PER_DAY, "days": days}))
    return clean


def append_source(table: Any, day: date, rows: int, seed: int) -> None:
    """One source's rows for one day, in random time order, committed as the pipeline does."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import write_deltalake

    from logsieve.storage.table import table_schema, writer_properties

    def uniform_ints(high: int, salt: int) -> pa.Array:
        noise = pc.random(rows, initializer=seed * 7 + salt)
        return pc.cast(pc.floor(pc.multiply(noise, high)), pa.int64())

    midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    micros = pc.add(uniform_ints(86_400_000_000, 0), int(midnight.timestamp()) * 1_000_000)
    event_time = micros.cast(pa.timestamp("us", tz="UTC"))
    source = f"source-{seed}"
    data = pa.table(
        {
            "timestamp": pc.strftime(
                pc.floor_temporal(event_time, unit="second").cast(pa.timestamp("s", tz="UTC")),
                "%Y-%m-%d %H:%M:%S",
            ),
            "day_of_week": pc.strftime(event_time, "%A"),
            "event_time": event_time,
            "user_id": pc.binary_join_element_wise(
                "u", pc.cast(uniform_ints(100_000, 1), pa.string()), ""
            ),
            "action": pa.array(ACTIONS).take(uniform_ints(len(ACTIONS), 2)),
            "extra": pa.nulls(rows, pa.string()),
            "source_id": pa.array([source] * rows),
            "source": pa.array([f"s3://in/{source}.jsonl"] * rows),
            "source_version": pa.array(["1"] * rows),
            "date": pa.array([day.isoformat()] * rows),
        },
        schema=table_schema(),
    )
    write_deltalake(
        table, data, partition_by=["date"], mode="append", writer_properties=writer_properties()
    )


# --- server -----------------------------------------------------------------------------------


class Server:
    """`logsieve serve` in its own process."""

    def __init__(self, clean: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "logsieve.cli", "serve", "--clean", str(clean), "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        banner = self.proc.stdout.readline()
        match = re.search(r"on (http://\S+)", banner)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"logsieve serve did not start: {banner!r}")
        self.url = match.group(1)

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def days_of(count: int) -> list[str]:
    return [(FIRST_DAY + timedelta(days=i)).isoformat() for i in range(count)]


def timed_get(client: httpx.Client, params: dict[str, str]) -> float:
    started = time.perf_counter()
    response = client.get("/logins_today", params=params)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def cold_latencies(client: httpx.Client, days: list[str]) -> tuple[list[float], list[float]]:
    """Each day's first UTC question (one partition); zone questions (two) after a refresh."""
    utc = [timed_get(client, {"date": day}) for day in days]
    zoned = []
    questions = [(day, zone) for zone in _ZONES for day in days[1:]][:_TZ_SAMPLES]
    for day, zone in questions:  # each asked once, so no answer comes from the cache
        time.sleep(1.1)  # past the refresh interval, so the log is checked again
        zoned.append(timed_get(client, {"date": day, "tz": zone}))
    return utc, zoned


def warm_latencies(client: httpx.Client, days: list[str], count: int) -> list[float]:
    for day in days:
        timed_get(client, {"date": day})
    return [timed_get(client, {"date": days[i % len(days)]}) for i in range(count)]


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "n": len(ordered),
        "p50_ms": round(cut[49] * 1e3, 2),
        "p99_ms": round(cut[98] * 1e3, 2),
        "max_ms": round(ordered[-1] * 1e3, 2),
    }


# --- load from a second process ---------------------------------------------------------------


def _load(url: str, days: list[str], seconds: float, concurrency: int) -> dict[str, Any]:
    """`concurrency` threads, each with its own keep-alive connection, asking in a loop.

    urllib3 rather than httpx: httpx's client costs several milliseconds per request, so it
    would measure itself instead of the server.
    """
    import urllib3

    parts = urlsplit(url)
    pool = urllib3.HTTPConnectionPool(
        parts.hostname, parts.port, maxsize=concurrency, block=True, retries=False
    )
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    failures = [0] * concurrency
    deadline = time.perf_counter() + seconds

    def user(k: int) -> None:
        i = k
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = pool.request("GET", f"/logins_today?date={days[i % len(days)]}")
            latencies[k].append(time.perf_counter() - started)
            failures[k] += response.status != 200
            i += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=user, args=(k,)) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    samples = [x for per_user in latencies for x in per_user]
    return {
        "requests": len(samples),
        "failures": sum(failures),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(samples) / elapsed),
        "concurrency": concurrency,
        **percentiles(samples),
    }


def load_from_second_process(
    server: Server, days: int, seconds: float, concurrency: int
) -> dict[str, Any]:
    """Throughput as a client sees it, plus the server's own CPU time per request.

    On a small shared machine the load generator itself competes for the CPU, so requests per
    second of server CPU time ("per core") is the figure that carries over to other machines.
    """
    command = [sys.executable, __file__, "--load", server.url, "--days", str(days)]
    command += ["--seconds", str(seconds), "--concurrency", str(concurrency)]
    cpu_before = server.cpu_seconds()
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    result = dict(json.loads(out.stdout))
    cpu = server.cpu_seconds() - cpu_before
    result["server_cpu_seconds"] = round(cpu, 2)
    result["requests_per_server_cpu_second"] = round(result["requests"] / cpu) if cpu else None
    return result


# --- the whole measurement --------------------------------------------------------------------


def measure(rows: int, days: int, *, warm: int, load_seconds: float, concurrency: int) -> dict:
    started = time.perf_counter()
    clean = build_dataset(rows, days)
    built = time.perf_counter() - started
    names = days_of(days)
    with Server(clean) as server, httpx.Client(base_url=server.url, trust_env=False) as client:
        cold_utc, cold_tz = cold_latencies(client, names)
        hot = warm_latencies(client, names, warm)
        load = load_from_second_process(server, days, load_seconds, concurrency)
    return {
        "rows": rows,
        "days": days,
        "rows_per_day": rows // days,
        "build_seconds": round(built, 1),
        "cold_utc": percentiles(cold_utc),
        "cold_tz": percentiles(cold_tz),
        "warm": percentiles(hot),
        "load": load,
    }


def report(results: list[dict]) -> str:
    concurrency = results[0]["load"]["concurrency"]
    lines = [
        "| rows | days | cold UTC p50 / p99 | cold tz p50 / p99 | warm p50 / p99 "
        f"| req/s (c={concurrency}) | p99 under load | req per server CPU-s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cu, ct, w, ld = r["cold_utc"], r["cold_tz"], r["warm"], r["load"]
        lines.append(
            f"| {r['rows']:,} | {r['days']} | {cu['p50_ms']} / {cu['p99_ms']} ms "
            f"| {ct['p50_ms']} / {ct['p99_ms']} ms | {w['p50_ms']} / {w['p99_ms']} ms "
            f"| {ld['requests_per_s']} | {ld['p99_ms']} ms "
            f"| {ld['requests_per_server_cpu_second']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=50)
    parser.add_argument("--warm", type=int, default=2000, help="warm requests to time")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the load test")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load:
        result = _load(args.load, days_of(args.days), args.seconds, args.concurrency)
        print(json.dumps(result))
        return 0
    options = {"warm": args.warm, "load_seconds": args.seconds, "concurrency": args.concurrency}
    per_day = args.rows // args.days
    short = max(2, args.days // 10)
    results = [
        measure(per_day * short, short, **options),
        measure(args.rows, args.days, **options),
    ]
    print(json.dumps(results, indent=2) if args.json else report(results))
    return 0


# --- pytest-benchmark -------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # the script needs no pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="module")
    def served() -> Iterator[tuple[httpx.Client, list[str]]]:
        rows = int(os.environ.get("LOGSIEVE_BENCH_ROWS", 2_000_000))
        days = int(os.environ.get("LOGSIEVE_BENCH_DAYS", 10))
        with (
            Server(build_dataset(rows, days)) as server,
            httpx.Client(base_url=server.url, trust_env=False) as client,
        ):
            yield client, days_of(days)

    def test_logins_today_cold(benchmark: Any, served: tuple[httpx.Client, list[str]]) -> None:
        client, days = served
        pending = iter(days)
        benchmark.pedantic(
            lambda day: timed_get(client, {"date": day}),
            setup=lambda: ((next(pending),), {}),
            rounds=len(days),
        )

    def test_logins_today_warm(benchmark: Any, served: tuple[httpx.Client, list[str]]) -> None:
        client, days = served
        timed_get(client, {"date": days[0]})
        benchmark(timed_get, client, {"date": days[0]})


if __name__ == "__main__":
    sys.exit(main())
