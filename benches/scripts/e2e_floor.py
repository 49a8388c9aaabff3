"""How fast end to end could be without the Parquet writer: the floor under `storage.ingest`.

Times three things on one JSON Lines file, alternating within one process (best of `--rounds`):

- `stream`: `logsieve.process_stream` over the file, batches dropped (reading and the core);
- `ingest, no Parquet`: `storage.ingest` with the row groups' encoding and compression skipped
  (the writer thread gets nothing to do; splitting by date, error JSONL and publishing remain);
- `ingest`: `storage.ingest` as `logsieve process FILE` runs it.

The middle one is a diagnostic, not a mode of logsieve: it patches `storage.datafiles._write`
(what the writer thread runs for each row group) in this process only, so its files hold no
rows. The difference between the last two is what zstd
Parquet costs; the middle one bounds what any faster writer could reach.

    python benches/scripts/e2e_floor.py .benchmarks/corpus/lines1000000-...jsonl --rounds 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import logsieve
from logsieve.storage import datafiles

#: The helpers the benchmark suites share (corpus, peers, end_to_end) live one level up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from end_to_end import logsieve_ingest


def _stream(path: Path, out: Path) -> None:
    with path.open("rb") as source:
        for _ in logsieve.process_stream(source):
            pass


def _ingest_without_parquet(path: Path, out: Path) -> None:
    write = datafiles._write
    datafiles._write = lambda writer, rows: None
    try:
        logsieve_ingest(path, out)
    finally:
        datafiles._write = write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="JSON Lines file")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    runs: dict[str, Callable[[Path, Path], object]] = {
        "stream": _stream,
        "ingest, no Parquet": _ingest_without_parquet,
        "ingest": logsieve_ingest,
    }
    best = {name: (float("inf"), float("inf")) for name in runs}
    with tempfile.TemporaryDirectory(prefix="logsieve-floor-") as scratch:
        for round_ in range(args.rounds + 1):  # round 0 warms up, untimed
            for kind, (name, run) in enumerate(runs.items()):
                out = Path(scratch) / f"{round_}-{kind}"
                wall, cpu = time.perf_counter(), time.process_time()
                run(args.corpus, out)
                took = (time.perf_counter() - wall, time.process_time() - cpu)
                if round_:
                    best[name] = min(best[name], took)
    for name, (wall, cpu) in best.items():
        print(f"{name:20s} {wall:.3f} s wall, {cpu:.3f} s CPU (best of {args.rounds})")


if __name__ == "__main__":
    main()
