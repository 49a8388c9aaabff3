"""Whole commands as a user runs them: `logsieve process FILE --out DIR` against a polars script
and the seed's plain-Python program, each its own process, on the same file.

Reported per run: wall seconds, CPU seconds (user + system of the child and everything it waited
for) and peak RSS, all from `os.wait4` of the child. The children are spawned by a small launcher
process (`serve`), not by the caller: Linux carries the spawning process's high-water mark into
an exec'd child's `ru_maxrss`, and a pytest holding a corpus would inflate every number; the
launcher's own ~10 MB is below anything measured.

    python benches/whole_command.py compare [--lines N] [--rounds R]   # interleaved rounds, table
    python benches/whole_command.py polars FILE OUT [--fallback]      # the polars script alone
    python benches/whole_command.py seed FILE OUT                     # the seed's program alone

`compare` runs the tools round by round in turn (logsieve, polars, seed, logsieve on the 5%
invalid file, ...), so load drift on a shared machine hits all of them alike, and prints best-of
wall with its spread, CPU seconds, peak RSS and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
#: The seed's only timestamp form (`CorpusSpec.seed_timestamps`).
SEED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class Run:
    """One child process, measured by wait4."""

    wall: float
    cpu: float
    peak_rss_mb: float
    status: int
    stderr: str = ""


# --- the launcher ---------------------------------------------------------------------------


def _spawn(argv: list[str], env: dict[str, str]) -> Run:
    """Run argv to completion (stdout discarded, stderr kept) and measure it with wait4."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        err.seek(0)
        text = err.read().decode(errors="replace")[-4000:]
    return Run(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,
        status=child.returncode,
        stderr=text,
    )


def serve() -> None:
    """Read one JSON request ({argv, env}) a line from stdin, answer one JSON Run a line."""
    for line in sys.stdin:
        request = json.loads(line)
        run = _spawn(request["argv"], request["env"])
        sys.stdout.write(json.dumps(asdict(run)) + "\n")
        sys.stdout.flush()


def compile_logsieve() -> None:
    """Byte-compile logsieve's modules, as an installed copy's are: PYTHONDONTWRITEBYTECODE in a
    development shell would otherwise make every measured child compile the sources edited
    since the last compile."""
    import compileall

    import logsieve

    compileall.compile_dir(Path(logsieve.__file__).parent, quiet=1)


class Launcher:
    """A `serve` process kept for a session: requests over a pipe cost well under a millisecond.
    logsieve is byte-compiled first (`compile_logsieve`)."""

    def __init__(self) -> None:
        compile_logsieve()
        self.process = subprocess.Popen(
            [sys.executable, "-S", __file__, "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, argv: list[str], env: dict[str, str] | None = None) -> Run:
        stdin: IO[str] = self.process.stdin  # type: ignore[assignment]
        stdout: IO[str] = self.process.stdout  # type: ignore[assignment]
        stdin.write(json.dumps({"argv": argv, "env": {**os.environ, **(env or {})}}) + "\n")
        stdin.flush()
        run = Run(**json.loads(stdout.readline()))
        if run.status != 0:
            raise RuntimeError(f"{argv[:3]} exited {run.status}: {run.stderr}")
        return run

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait()


# --- the commands compared -------------------------------------------------------------------


def logsieve_argv(path: Path, out: Path) -> list[str]:
    """The console script a user runs (it honours PYTHONPATH), else `python -m logsieve.cli`."""
    script = Path(sys.executable).parent / "logsieve"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "logsieve.cli"]
    return [*head, "process", str(path), "--out", str(out)]


def peer_argv(tool: str, path: Path, out: Path, *, fallback: bool = False) -> list[str]:
    argv = [sys.executable, __file__, tool, str(path), str(out)]
    return [*argv, "--fallback"] if fallback else argv


def polars_job(path: Path, out: Path, *, fallback: bool = False) -> tuple[int, int]:
    """The polars script: read_ndjson (three fields as text), parse the timestamp, filter the
    three fields, strftime `timestamp` and `day_of_week`, Parquet partitioned by date (zstd),
    rejected rows as NDJSON. `fallback`: read_ndjson aborts on a malformed line, so lines are
    pre-filtered with orjson first (what a user must do on dirty data; the failed attempt is not
    timed, which favours polars)."""
    import io

    import orjson
    import polars as pl

    fields = ("timestamp", "user_id", "action")
    schema = dict.fromkeys(fields, pl.String)
    rejected: list[bytes] = []
    if fallback:
        good: list[bytes] = []
        numbers: list[int] = []
        for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                obj = None
            if type(obj) is dict:
                good.append(line)
                numbers.append(number)
            else:
                record = {"line": number, "error": "invalid_json", "raw": line.decode("latin-1")}
                rejected.append(orjson.dumps(record))
        frame = pl.read_ndjson(io.BytesIO(b"\n".join(good)), schema=schema)
        frame = frame.with_columns(line=pl.Series(numbers, dtype=pl.Int64))
    else:
        frame = pl.read_ndjson(path, schema=schema).with_row_index("line", offset=1)
    instant = pl.col("timestamp").str.strptime(pl.Datetime("us", "UTC"), SEED_FORMAT, strict=False)
    frame = frame.with_columns(event_time=instant)
    ok = (
        pl.col("event_time").is_not_null()
        & (pl.col("user_id").str.len_bytes() > 0)
        & (pl.col("action").str.len_bytes() > 0)
    ).fill_null(False)
    et = pl.col("event_time")
    clean = frame.filter(ok).select(
        timestamp=et.dt.strftime("%Y-%m-%d %H:%M:%S"),
        day_of_week=et.dt.strftime("%A"),
        event_time=et,
        user_id=pl.col("user_id"),
        action=pl.col("action"),
        date=et.dt.strftime("%Y-%m-%d"),
    )
    clean.write_parquet(out / "clean", partition_by="date", compression="zstd")
    bad = frame.filter(~ok).select("line", "timestamp", "user_id", "action")
    (out / "errors").mkdir(parents=True, exist_ok=True)
    with (out / "errors" / "polars.jsonl").open("wb") as errors:
        errors.write(b"".join(record + b"\n" for record in rejected))
        bad.write_ndjson(errors)
    return clean.height, bad.height + len(rejected)


def seed_job(path: Path, out: Path) -> tuple[int, int]:
    """The seed's program (benches/end_to_end.py): json.loads per line, datetime, pyarrow."""
    sys.path.insert(0, str(HERE))
    from end_to_end import seed_e2e

    return seed_e2e(path, out)


# --- interleaved comparison ------------------------------------------------------------------

#: (label, tool, corpus); tools alternate in this order every round.
PLAN = (
    ("logsieve", "logsieve", "clean"),
    ("polars", "polars", "clean"),
    ("logsieve 5% invalid", "logsieve", "dirty"),
    ("polars 5% invalid (fallback)", "polars", "dirty"),
    ("seed", "seed", "clean"),
)


def corpora(lines: int) -> dict[str, tuple[Path, Any]]:
    """The clean and the 5% invalid file, seed-format timestamps, string user ids."""
    sys.path.insert(0, str(HERE))
    import corpus

    def spec(share: float) -> Any:
        return corpus.CorpusSpec(
            lines=lines, invalid_share=share, mixed_types=False, seed_timestamps=True
        )

    return {"clean": corpus.corpus_file(spec(0.0)), "dirty": corpus.corpus_file(spec(0.05))}


def argv_for(tool: str, path: Path, out: Path, corpus_name: str) -> list[str]:
    if tool == "logsieve":
        return logsieve_argv(path, out)
    return peer_argv(tool, path, out, fallback=tool == "polars" and corpus_name == "dirty")


def compare(lines: int, rounds: int, seed_rounds: int, scratch: Path) -> dict[str, list[Run]]:
    files = corpora(lines)
    launcher = Launcher()
    runs: dict[str, list[Run]] = {label: [] for label, _, _ in PLAN}
    try:
        for number in range(rounds):
            for label, tool, name in PLAN:
                if tool == "seed" and number >= seed_rounds:
                    continue
                out = scratch / f"{number}-{label.replace(' ', '_')}"
                run = launcher.run(argv_for(tool, files[name][0], out, name))
                runs[label].append(run)
                shutil.rmtree(out, ignore_errors=True)
                print(f"  round {number + 1} {label}: {run.wall:.3f} s", file=sys.stderr)
    finally:
        launcher.close()
    return runs


def render(runs: dict[str, list[Run]], sizes: dict[str, int]) -> str:
    best = {label: min(r.wall for r in rs) for label, rs in runs.items() if rs}
    base = best["logsieve"]
    head = "| command | best wall s (spread) | MB/s | CPU s | peak RSS MB | x logsieve |"
    rows = [head, "|---|---|---|---|---|---|"]
    for label, _, name in PLAN:
        rs = runs[label]
        if not rs:
            continue
        walls = sorted(r.wall for r in rs)
        spread = f"{walls[0]:.2f}-{walls[-1]:.2f}" if len(walls) > 1 else "1 round"
        rows.append(
            f"| {label} | {walls[0]:.3f} ({spread}) | {sizes[name] / 1e6 / walls[0]:.0f} | "
            f"{min(r.cpu for r in rs):.2f} | {max(r.peak_rss_mb for r in rs):.0f} | "
            f"{walls[0] / base:.2f}x |"
        )
    dirty = "logsieve 5% invalid"
    if dirty in best:
        rate = (sizes["dirty"] / best[dirty]) / (sizes["clean"] / base)
        rows.append(f"\n5% invalid throughput (bytes/s) vs clean: {rate:.0%}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve")
    for tool in ("polars", "seed"):
        job = sub.add_parser(tool)
        job.add_argument("file", type=Path)
        job.add_argument("out", type=Path)
        job.add_argument("--fallback", action="store_true")
    cmp = sub.add_parser("compare")
    cmp.add_argument("--lines", type=int, default=1_000_000)
    cmp.add_argument("--rounds", type=int, default=3)
    cmp.add_argument("--seed-rounds", type=int, default=1)
    args = parser.parse_args()
    if args.command == "serve":
        serve()
    elif args.command == "polars":
        polars_job(args.file, args.out, fallback=args.fallback)
    elif args.command == "seed":
        seed_job(args.file, args.out)
    else:
        with tempfile.TemporaryDirectory(prefix="logsieve-whole-") as scratch:
            runs = compare(args.lines, args.rounds, args.seed_rounds, Path(scratch))
        sizes = {name: path.stat().st_size for name, (path, _) in corpora(args.lines).items()}
        print(render(runs, sizes))


if __name__ == "__main__":
    main()
