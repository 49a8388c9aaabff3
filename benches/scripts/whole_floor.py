"""The least wall time any program doing the whole job could take here, against the polars script.

The whole command must at least start an interpreter with the core, parse and validate every
line, and zstd-compress the columns it stores. This measures those three on the clean 1M-line
file of `benches/whole_command.py`, in one run with the polars script, and divides the work by
the machine's cores as if every core were busy from the first millisecond to the last:

    floor = start-up + (core CPU s + zstd CPU s) / cores

Nothing real reaches the floor (reading the file, the Parquet pages, statistics, the Delta
commit and the error records all cost on top); it says which ratios to polars are out of reach
on this machine whatever the implementation.

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
    cores = len(os.sched_getaffinity(0))
    numbers = {
        "file_mb": len(data) / 1e6,
        "cores": cores,
        "start_s": start_up(args.rounds),
        "core_cpu_s": best_cpu(lambda: logsieve.process(data), args.rounds),
        "zstd_cpu_s": best_cpu(lambda: compress_columns(clean), args.rounds),
        "polars_wall_s": polars_wall(path, args.rounds),
    }
    floor = numbers["start_s"] + (numbers["core_cpu_s"] + numbers["zstd_cpu_s"]) / cores
    numbers["floor_wall_s"] = floor
    numbers["polars_over_floor"] = numbers["polars_wall_s"] / floor
    if args.json:
        print(json.dumps(numbers))
        return
    print(f"file {numbers['file_mb']:.0f} MB, {cores} cores, best of {args.rounds}")
    print(f"  start-up (python -c 'import logsieve')  {numbers['start_s']:.3f} s wall")
    print(f"  the core on the file                    {numbers['core_cpu_s']:.3f} s CPU")
    print(f"  zstd level 1 of its six columns         {numbers['zstd_cpu_s']:.3f} s CPU")
    print(f"  floor: start-up + work / {cores} cores       {floor:.3f} s wall")
    print(f"  the polars script                       {numbers['polars_wall_s']:.3f} s wall")
    print(f"  polars / floor                          {numbers['polars_over_floor']:.2f}x")


if __name__ == "__main__":
    main()
