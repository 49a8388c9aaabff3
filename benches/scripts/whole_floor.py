"""The least wall time any program doing the whole job could take here, against the polars script.

The whole command must at least start an interpreter with the core, parse and validate every
line, and zstd-compress the columns it stores. This measures those on the clean 1M-line file of
`benches/whole_command.py`, in one run with the polars script, and divides the work by the
machine's cores as if every core were busy from the first millisecond to the last:

    bare floor   = start-up + (core CPU s + zstd CPU s) / cores
    writer floor = start-up + (reading CPU s + core CPU s + encoder CPU s) / cores

The bare floor counts compression alone; the writer floor counts what the command cannot skip
with the encoder it has: reading the file into reused buffers, as `logsieve process` does, and
the table's own encoder (`datafiles.data_file`: pages, dictionaries, statistics and zstd) writing
the clean rows with their lineage columns. Nothing real reaches either floor (Python between the
stages, imports of pyarrow and deltalake, the Delta commit and the error records all cost on
top, and no two stages overlap perfectly); they say which ratios to polars are out of reach on
this machine.

    python benches/scripts/whole_floor.py [--lines 1000000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

#: The benchmark helpers (corpus, whole_command) live one level up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: zstd works on blocks; Parquet pages are about this big.
BLOCK = 1 << 20


def seconds(clock: Callable[[], float], work: Callable[[], object]) -> float:
    start = clock()
    work()
    return clock() - start


def best_cpu(work: Callable[[], object], rounds: int) -> float:
    """Lowest CPU seconds of the process (all threads) over `rounds` calls, after one untimed."""
    work()
    return min(seconds(time.process_time, work) for _ in range(rounds))


def start_up(rounds: int) -> float:
    """Best wall seconds of a fresh interpreter importing logsieve (and so loading the core)."""
    argv = [sys.executable, "-c", "import logsieve"]
    return min(
        seconds(time.perf_counter, lambda: subprocess.run(argv, check=True)) for _ in range(rounds)
    )


def compress_columns(rows: pa.RecordBatch) -> int:
    """zstd level 1 over every buffer of every column, a page-sized block at a time."""
    import pyarrow as pa

    codec = pa.Codec("zstd", 1)
    out = 0
    for column in rows.columns:
        for buffer in column.buffers():
            if buffer is None:
                continue
            for offset in range(0, buffer.size, BLOCK):
                block = buffer.slice(offset, min(BLOCK, buffer.size - offset))
                out += codec.compress(block).size
    return out


def read_file(path: Path) -> int:
    """The file read into one reused buffer a chunk at a time, as `logsieve process` reads."""
    from logsieve import DEFAULT_CHUNK_SIZE

    buffer = bytearray(DEFAULT_CHUNK_SIZE)
    total = 0
    with path.open("rb", buffering=0) as raw:
        while n := raw.readinto(buffer):
            total += n
    return total


def with_lineage(clean: pa.RecordBatch) -> pa.RecordBatch:
    """The clean rows in the data files' schema: constant lineage columns appended."""
    import pyarrow as pa

    from logsieve.storage import table

    schema = table.stored_schema()
    lineage = [
        pa.repeat(pa.scalar(f"{name}-of-the-source", pa.string()), clean.num_rows)
        for name in schema.names[clean.num_columns :]
    ]
    return pa.RecordBatch.from_arrays([*clean.columns, *lineage], schema=schema)


def encode(rows: pa.RecordBatch, directory: Path) -> int:
    """`rows` written by the table's encoder, in row groups of the table's size."""
    from logsieve.storage import datafiles

    path = directory / "rows.parquet"
    file = datafiles.data_file(path, rows.schema)
    step = datafiles.ROW_GROUP_ROWS
    for start in range(0, rows.num_rows, step):
        file.write([rows.slice(start, step)], step)
    file.close()
    return path.stat().st_size


def polars_wall(path: Path, rounds: int) -> float:
    """Best wall seconds of the polars script, each round its own process (`whole_command`)."""
    import whole_command

    launcher = whole_command.Launcher()
    try:
        with tempfile.TemporaryDirectory(prefix="logsieve-floor-") as scratch:
            runs = [
                launcher.run(whole_command.peer_argv("polars", path, Path(scratch) / str(n)))
                for n in range(rounds)
            ]
    finally:
        launcher.close()
    for run in runs:
        if run.status != 0:
            raise SystemExit(f"the polars script failed: {run.stderr}")
    return min(run.wall for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")
    args = parser.parse_args()

    import logsieve
    import whole_command

    path = whole_command.corpora(args.lines)["clean"][0]
    data = path.read_bytes()
    clean = logsieve.process(data).clean
    rows = with_lineage(clean)
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="logsieve-floor-") as scratch:
        numbers = {
            "file_mb": len(data) / 1e6,
            "cores": cores,
            "start_s": start_up(args.rounds),
            "read_cpu_s": best_cpu(lambda: read_file(path), args.rounds),
            "core_cpu_s": best_cpu(lambda: logsieve.process(data), args.rounds),
            "zstd_cpu_s": best_cpu(lambda: compress_columns(clean), args.rounds),
            "encoder_cpu_s": best_cpu(lambda: encode(rows, Path(scratch)), args.rounds),
            "polars_wall_s": polars_wall(path, args.rounds),
        }
    bare = numbers["start_s"] + (numbers["core_cpu_s"] + numbers["zstd_cpu_s"]) / cores
    work = numbers["read_cpu_s"] + numbers["core_cpu_s"] + numbers["encoder_cpu_s"]
    writer = numbers["start_s"] + work / cores
    polars = numbers["polars_wall_s"]
    numbers |= {
        "floor_wall_s": bare,
        "polars_over_floor": polars / bare,
        "writer_floor_wall_s": writer,
        "polars_over_writer_floor": polars / writer,
    }
    if args.json:
        print(json.dumps(numbers))
        return
    print(f"file {numbers['file_mb']:.0f} MB, {cores} cores, best of {args.rounds}")
    print(f"  start-up (python -c 'import logsieve')  {numbers['start_s']:.3f} s wall")
    print(f"  reading the file in 4 MiB chunks        {numbers['read_cpu_s']:.3f} s CPU")
    print(f"  the core on the file                    {numbers['core_cpu_s']:.3f} s CPU")
    print(f"  zstd level 1 of its six columns         {numbers['zstd_cpu_s']:.3f} s CPU")
    print(f"  the table's encoder, nine columns       {numbers['encoder_cpu_s']:.3f} s CPU")
    print(f"  the polars script                       {polars:.3f} s wall")
    print(
        f"  bare floor: start-up + (core + zstd) / {cores}            {bare:.3f} s wall, "
        f"polars {polars / bare:.2f}x"
    )
    print(
        f"  writer floor: start-up + (read + core + encoder) / {cores}  {writer:.3f} s wall, "
        f"polars {polars / writer:.2f}x"
    )


if __name__ == "__main__":
    main()
