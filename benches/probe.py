"""Measurements that need a process of their own; prints one JSON object on stdout.

    python benches/probe.py memory TOOL FILE OUTDIR   # peak RSS of TOOL processing FILE
    python benches/probe.py core FILE [--repeat N]    # best time of logsieve.process (set
                                                      # RAYON_NUM_THREADS in the environment)
    python benches/probe.py gil FILE [--repeat N]     # two halves: one after the other vs two
                                                      # Python threads at once

Peak RSS is the process's own high-water mark (VmHWM) after the work (the interpreter and
imports included: that is what the machine has to provide), so every tool pays the same baseline.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import peers

STREAM_CHUNK = 8 << 20


def _logsieve_stream(path: Path, out: Path) -> tuple[int, int]:
    import logsieve

    valid = errors = 0
    with path.open("rb") as source:
        for batch in logsieve.process_stream(source, STREAM_CHUNK):
            valid += batch.stats.valid
            errors += batch.stats.errors
    return valid, errors


def _logsieve_cli(path: Path, out: Path) -> tuple[int, int]:
    """`logsieve process FILE --out OUT`: streaming plus Parquet and error JSONL writing."""
    import contextlib
    import io

    from logsieve.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["process", str(path), "--out", str(out), "--json", "--no-progress"])
    if code != 0:
        raise SystemExit(f"logsieve process exited {code}")
    report = json.loads(buffer.getvalue())
    totals = report.get("totals", report)
    return int(totals.get("valid", -1)), int(totals.get("errors", -1))


def _polars_eager(path: Path, out: Path) -> tuple[int, int]:
    import polars as pl

    frame = pl.read_ndjson(path, schema=dict.fromkeys(peers.FIELDS, pl.String))
    result = peers.polars_transform(frame, rejected=0)
    return result.valid, result.errors


def _polars_streaming(path: Path, out: Path) -> tuple[int, int]:
    """The bounded-memory polars program: scan_ndjson -> expressions -> sink_parquet."""
    import polars as pl

    exprs = peers.polars_expressions()
    et = pl.col("event_time")
    lazy = (
        pl.scan_ndjson(path, schema=dict.fromkeys(peers.FIELDS, pl.String))
        .with_columns(event_time=exprs["event_time"], _ok=exprs["fields_ok"])
        .filter(pl.col("_ok") & et.is_not_null())
        .select(
            timestamp=et.dt.strftime("%Y-%m-%d %H:%M:%S"),
            day_of_week=et.dt.strftime("%A"),
            event_time=et,
            user_id=pl.col("user_id"),
            action=pl.col("action"),
        )
    )
    target = out / "polars.parquet"
    lazy.sink_parquet(target, compression="zstd")
    valid = pl.scan_parquet(target).select(pl.len()).collect().item()
    return valid, -1


def _pyarrow_eager(path: Path, out: Path) -> tuple[int, int]:
    import pyarrow as pa
    import pyarrow.json as pj

    schema = pa.schema([(name, pa.string()) for name in peers.FIELDS])
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    table = pj.read_json(path, parse_options=options)
    result = peers.pyarrow_transform(table, rejected=0)
    return result.valid, result.errors


def _pyarrow_streaming(path: Path, out: Path) -> tuple[int, int]:
    """pyarrow.json.open_json: record batches of one block at a time, transformed one by one."""
    import pyarrow as pa
    import pyarrow.json as pj

    schema = pa.schema([(name, pa.string()) for name in peers.FIELDS])
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    valid = errors = 0
    reader = pj.open_json(
        path, read_options=pj.ReadOptions(block_size=STREAM_CHUNK), parse_options=options
    )
    for batch in reader:
        result = peers.pyarrow_transform(pa.Table.from_batches([batch]), rejected=0)
        valid += result.valid
        errors += result.errors
    return valid, errors


MEMORY_TOOLS: dict[str, Callable[[Path, Path], tuple[int, int]]] = {
    "logsieve process_stream": _logsieve_stream,
    "logsieve process (CLI)": _logsieve_cli,
    "polars read_ndjson": _polars_eager,
    "polars scan_ndjson+sink": _polars_streaming,
    "pyarrow read_json": _pyarrow_eager,
    "pyarrow open_json": _pyarrow_streaming,
}


def _peak_rss_mb() -> float:
    """VmHWM of this process. Not ru_maxrss: Linux carries that across fork+exec, so a child
    of a big parent (pytest holding the corpora) would report the parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: best effort


def memory(tool: str, path: Path, out: Path) -> dict[str, Any]:
    started, cpu_started = time.perf_counter(), time.process_time()
    valid, errors = MEMORY_TOOLS[tool](path, out)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "valid": valid,
        "errors": errors,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def core(path: Path, repeat: int) -> dict[str, Any]:
    import logsieve

    data = path.read_bytes()
    valid = logsieve.process(data).stats.valid
    return {"seconds": _best(lambda: logsieve.process(data), repeat), "valid": valid}


def gil(path: Path, repeat: int) -> dict[str, Any]:
    """Same work twice: sequentially, then from two Python threads. With the GIL released and
    one Rust thread each (RAYON_NUM_THREADS=1), the threads overlap on two cores."""
    import logsieve

    data = path.read_bytes()
    middle = data.index(b"\n", len(data) // 2) + 1
    halves = [data[:middle], data[middle:]]

    def sequential() -> None:
        for half in halves:
            logsieve.process(half)

    def threaded() -> None:
        workers = [threading.Thread(target=logsieve.process, args=(h,)) for h in halves]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    seq = _best(sequential, repeat)
    par = _best(threaded, repeat)
    busy = _spin_rate(lambda: logsieve.process(data))
    idle = _spin_rate(lambda: time.sleep(max(seq, 0.2)))
    return {
        "seconds": par,
        "sequential_seconds": seq,
        "speedup": seq / par,
        "python_progress": busy / idle,
    }


def _spin_rate(fn: Callable[[], object]) -> float:
    """Iterations per second a pure-Python thread makes while `fn` runs in the main thread:
    near zero if `fn` holds the GIL, comparable to an idle main thread if it releases it."""
    count = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal count
        while not stop.is_set():
            count += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    started = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - started
    stop.set()
    spinner.join()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    mem = sub.add_parser("memory")
    mem.add_argument("tool", choices=sorted(MEMORY_TOOLS))
    mem.add_argument("file", type=Path)
    mem.add_argument("out", type=Path)
    for name in ("core", "gil"):
        cmd = sub.add_parser(name)
        cmd.add_argument("file", type=Path)
        cmd.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.what == "memory":
        result = memory(args.tool, args.file, args.out)
    elif args.what == "core":
        result = core(args.file, args.repeat)
    else:
        result = gil(args.file, args.repeat)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
