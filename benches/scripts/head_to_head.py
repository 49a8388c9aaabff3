"""logsieve vs polars on the same bytes, rounds interleaved so that load drift hits both alike.

pytest-benchmark runs all rounds of one tool before the next; on a shared machine the load can
change in between. This quick check alternates the two tools round by round instead and prints
the best wall and CPU time of each and their ratios.

    python benches/scripts/head_to_head.py [--lines 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

#: The helpers the benchmark suites share (corpus, peers, end_to_end) live one level up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import corpus
import peers


def _logsieve(data: bytes) -> None:
    import logsieve

    batch = logsieve.process(data)
    batch.clean  # noqa: B018 -- export both batches, as a caller would
    batch.errors  # noqa: B018


def _best(fns: dict[str, Callable[[bytes], object]], data: bytes, rounds: int) -> dict:
    best = {name: [float("inf"), float("inf")] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn(data)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for share in (0.0, 0.05):
        path, _ = corpus.corpus_file(corpus.CorpusSpec(lines=args.lines, invalid_share=share))
        data = path.read_bytes()
        _, failed = peers.run_peer("polars", data)
        polars = peers.polars_fallback if failed else peers.polars_read
        best = _best({"logsieve": _logsieve, "polars": polars}, data, args.rounds)
        (lw, lc), (pw, pc) = best["logsieve"], best["polars"]
        print(
            f"{args.lines:,} lines, {share:.0%} invalid, {len(data) / 1e6:.0f} MB: "
            f"logsieve {lw:.3f} s ({len(data) / 1e6 / lw:.0f} MB/s, CPU {lc:.2f} s), "
            f"polars{' (fallback)' if failed else ''} {pw:.3f} s (CPU {pc:.2f} s): "
            f"{pw / lw:.2f}x wall, {pc / lc:.2f}x CPU"
        )


if __name__ == "__main__":
    main()
