"""Many small inputs: `logsieve process DIR` on 2,000 files of 50 lines against one file.

A real-time pipeline receives many small objects; what a user sees is the whole command. Both
runs get the same bytes (the 5% invalid corpus's first 100,000 lines, once as one file and once
split into 2,000 files of 50 lines), each as a subprocess with startup included, into a fresh
output directory. Reported: seconds, the ratio (target: within 5x), and how many data files and
error files each run leaves (target: a handful, not one per input).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

import corpus
from harness import ROUNDS

FILES = int(os.environ.get("LOGSIEVE_BENCH_SMALL_FILES", "2000"))
LINES_PER_FILE = 50

_scratch = tempfile.TemporaryDirectory(prefix="logsieve-bench-small-")
_rounds = itertools.count()


SPEC = corpus.CorpusSpec(lines=FILES * LINES_PER_FILE, invalid_share=0.05)


@pytest.fixture(scope="module")
def inputs() -> dict[str, Path]:
    """The same lines as one file and as FILES small files."""
    path, _ = corpus.corpus_file(SPEC)
    lines = path.read_bytes().splitlines(keepends=True)
    root = Path(_scratch.name)
    one, many = root / "one", root / "many"
    one.mkdir()
    many.mkdir()
    (one / "all.jsonl").write_bytes(b"".join(lines))
    for number in range(FILES):
        part = lines[number * LINES_PER_FILE : (number + 1) * LINES_PER_FILE]
        (many / f"part{number:05d}.jsonl").write_bytes(b"".join(part))
    return {"one file": one, f"{FILES} files": many}


def _process(source: Path) -> Path:
    out = Path(_scratch.name) / f"out{next(_rounds)}"
    subprocess.run(
        [sys.executable, "-m", "logsieve.cli", "process", str(source), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.mark.benchmark(group="whole command: many small files")
@pytest.mark.parametrize("shape", ["one file", "many files"])
def test_many_small_files(benchmark: Any, inputs: dict[str, Path], shape: str) -> None:
    from deltalake import DeltaTable

    source = inputs["one file"] if shape == "one file" else inputs[f"{FILES} files"]
    out = benchmark.pedantic(_process, args=(source,), rounds=ROUNDS, iterations=1)
    table = DeltaTable(str(out / "clean"))
    rows = table.to_pyarrow_table(columns=["source"]).num_rows
    benchmark.extra_info.update(
        tool=f"logsieve process ({shape})",
        inputs=1 if shape == "one file" else FILES,
        rows=rows,
        data_files=len(table.file_uris()),
        error_files=len(list((out / "errors").glob("date=*/*.jsonl"))),
        commits=table.version(),
    )
    assert rows == corpus.corpus_file(SPEC)[1].valid  # every valid line, once
