"""Memory: peak RSS of the handler's path streaming one large S3 object.

A moto server runs in its own process on 127.0.0.1 (so the object's bytes live there, not in
the measured process); a fresh subprocess then reads the object through
`sources.open_s3_object` and `storage.ingest` into clean/error prefixes on that server, and
reports its own peak RSS. The object is gzip-compressed, as producers usually upload it.
Size: LOGSIEVE_BENCH_S3_MB (uncompressed, default 256).
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import corpus
from harness import measure

S3_MB = int(os.environ.get("LOGSIEVE_BENCH_S3_MB", "256"))

_PROBE = r"""
import json, sys, time
from logsieve.memory import use_lean_memory
use_lean_memory()  # what the Lambda handler does on a cold start
import boto3
from logsieve.sources import open_s3_object
from logsieve.storage.ingest import ingest

s3 = boto3.client("s3")
start = time.perf_counter()
stream, info = open_s3_object(s3, "input", "big.jsonl.gz")
result = ingest(stream, source=info.uri, clean_uri="s3://output/clean",
                error_uri="s3://output/errors", arrival=info.last_modified, s3_client=s3)
print(json.dumps({
    "seconds": time.perf_counter() - start,
    # VmHWM, not ru_maxrss: the latter can carry the parent's peak over into a child.
    "peak_rss_mb": next(int(l.split()[1]) for l in open("/proc/self/status")
                        if l.startswith("VmHWM:")) / 1024,
    "processed": result.processed, "valid": result.valid, "bytes": result.bytes,
}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    try:
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def env(moto_endpoint: str) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    }


@pytest.fixture(scope="module")
def uploaded(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[int, int]:
    """Upload the gzip object once; returns (uncompressed bytes, lines)."""
    import boto3

    source = corpus.sized_file(S3_MB << 20, mixed_types=True)
    packed = Path(tmp_path_factory.mktemp("s3bench")) / "big.jsonl.gz"
    with source.open("rb") as raw, gzip.open(packed, "wb", compresslevel=1) as out:
        while chunk := raw.read(8 << 20):
            out.write(chunk)
    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    for bucket in ("input", "output"):
        s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(packed), "input", "big.jsonl.gz")
    with source.open("rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(8 << 20), b""))
    return source.stat().st_size, lines


@pytest.mark.benchmark(group="memory: S3 object streamed by the handler's path")
def test_s3_object_streaming_memory(
    benchmark: Any, env: dict[str, str], uploaded: tuple[int, int]
) -> None:
    size, lines = uploaded
    results: list[dict[str, Any]] = []

    def once() -> None:
        out = subprocess.run(
            [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))

    measure(benchmark, once, tool="logsieve", nbytes=size, lines=lines, rounds=1)
    result = results[-1]
    assert result["processed"] == lines
    benchmark.extra_info.update(
        peak_rss_mb=round(result["peak_rss_mb"], 1),
        inner_seconds=round(result["seconds"], 3),
        object_mb=round(size / 1e6, 1),
    )
