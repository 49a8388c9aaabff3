"""Two builds of logsieve on the same bytes, in alternating subprocesses: old vs new.

Machine drift between minutes is larger than many changes, so each round runs the old build,
then the new one, each in a fresh process (one untimed warm-up call, then the best of `--calls`
calls), and the medians over the rounds are compared. A build is a directory holding the
`logsieve` package with its `_core` extension, for example:

    git worktree add /tmp/old c2b73bd
    (cd /tmp/old && maturin build --release -o dist)
    pip install --no-deps --target /tmp/old_pkg /tmp/old/dist/*.whl
    # likewise /tmp/new_pkg from this checkout, then:
    python benches/scripts/ab.py /tmp/old_pkg /tmp/new_pkg .benchmarks/corpus/lines1000000-...jsonl

With `--idle 3.5` each timed call comes after 3.5 s asleep, past the purge delay of the core's
allocator (`logsieve/__init__.py`), so it faults its output's pages in afresh, as a call made
now and then (a Lambda invocation) does; without it, calls follow each other and reuse them.

With `--ingest` each call is `end_to_end.logsieve_ingest` of the file (`storage.ingest`, what
`logsieve process FILE` runs: streaming, partitioned Parquet, error JSONL) into a fresh temporary
directory, instead of `logsieve.process` of its bytes in memory. With `--command` each call is
the command itself, `python -m logsieve.cli process FILE --out DIR`, in a fresh process (start-up
included; CPU seconds and peak RSS are the command's, from `getrusage` of the children).

Prints per round wall s, CPU s (all threads) and peak RSS (ru_maxrss) of each build, then the
medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

# One child for every kind of call: argv = corpus, calls, idle seconds, "ingest", "command" or
# "process".
_CHILD = f"""
import resource, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
corpus, calls, idle = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
scratch = tempfile.TemporaryDirectory()
who = resource.RUSAGE_SELF
def cpu():
    return time.process_time()
if sys.argv[4] == "ingest":
    from end_to_end import logsieve_ingest
    def run(i):
        return logsieve_ingest(corpus, Path(scratch.name, str(i)))
elif sys.argv[4] == "command":
    import subprocess
    from whole_command import compile_logsieve, logsieve_argv
    compile_logsieve()
    who = resource.RUSAGE_CHILDREN
    def cpu():
        usage = resource.getrusage(who)
        return usage.ru_utime + usage.ru_stime
    def run(i):
        argv = logsieve_argv(corpus, Path(scratch.name, str(i)))
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
else:
    import logsieve
    data = corpus.read_bytes()
    def run(i):
        return logsieve.process(data)
run("warm-up")
best = (float("inf"), float("inf"))
for i in range(calls):
    time.sleep(idle)
    started, used = time.perf_counter(), cpu()
    result = run(i)
    best = min(best, (time.perf_counter() - started, cpu() - used))
    del result
scratch.cleanup()
print(best[0], best[1], resource.getrusage(who).ru_maxrss // 1024)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="directory holding the old build's logsieve package")
    parser.add_argument("new", help="directory holding the new build's logsieve package")
    parser.add_argument("corpus", help="JSON Lines file to process")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3, help="timed calls per process")
    kinds = parser.add_mutually_exclusive_group()
    kinds.add_argument("--ingest", action="store_true", help="time storage.ingest end to end")
    kinds.add_argument(
        "--command",
        action="store_true",
        help="time `logsieve process CORPUS` as a user runs it (a fresh process per call)",
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=0.0,
        help="seconds to sleep before each timed call (past the allocator's 3 s purge delay, "
        "a call finds its memory given back to the OS, as a call now and then does)",
    )
    args = parser.parse_args()
    kind = "ingest" if args.ingest else "command" if args.command else "process"
    results: dict[str, list[tuple[float, float, int]]] = {"old": [], "new": []}
    for _ in range(args.rounds):
        for name in ("old", "new"):
            env = dict(os.environ, PYTHONPATH=getattr(args, name))
            done = subprocess.run(
                [sys.executable, "-c", _CHILD, args.corpus, str(args.calls), str(args.idle), kind],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            wall, cpu, rss = done.stdout.split()
            results[name].append((float(wall), float(cpu), int(rss)))
            print(f"{name}: {float(wall):.3f} s wall, {float(cpu):.3f} s CPU, {rss} MB", flush=True)
    for name, runs in results.items():
        print(
            f"{name} median: {statistics.median(r[0] for r in runs):.3f} s wall, "
            f"{statistics.median(r[1] for r in runs):.3f} s CPU; "
            f"peak RSS {max(r[2] for r in runs)} MB"
        )


if __name__ == "__main__":
    main()
