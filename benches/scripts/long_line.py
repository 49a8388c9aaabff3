"""Peak memory of streaming one very long line, in a fresh process per case.

    python benches/scripts/long_line.py [--mb 300] [--kind valid|invalid|both] [--cli]

Writes a file holding a few short lines around one line of `--mb` MB (a valid record whose
`extra` member is that long, or an invalid line whose `raw` is), streams it through
`logsieve.process_stream` (4 MiB chunks, the default) in a child process that also asks for each
batch's Arrow data and writes its error lines, as `logsieve process` does, and prints the child's
peak RSS (VmHWM and ru_maxrss) as a multiple of the longest line, also above the peak of the
same child on a file without the long line (the interpreter and libraries). `--cli` measures
`logsieve process FILE --out DIR` as a whole instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import os, resource, sys
import logsieve
with open(sys.argv[1], "rb") as source, open(os.devnull, "wb") as sink:
    for batch in logsieve.process_stream(source):
        batch.clean.num_rows, batch.errors.num_rows
        batch.write_error_lines(sys.argv[1], sink)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(hwm // 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""

CLI = r"""
import resource, subprocess, sys
subprocess.run([sys.executable, "-m", "logsieve.cli", "process", sys.argv[1], "--out",
                sys.argv[2], "--no-progress"], check=True, stdout=subprocess.DEVNULL)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
print(peak, peak)
"""


def write_input(path: Path, size: int, kind: str) -> None:
    """Short lines, the long one, short lines: the long line straddles many chunks."""
    short = b'{"timestamp":"2025-08-20T10:00:00Z","user_id":1,"action":"login"}\n'
    with path.open("wb") as out:
        out.write(short * 1000)
        if kind == "valid":
            out.write(b'{"timestamp":"2025-08-20T10:00:00Z","user_id":2,"action":"x","blob":"')
        else:
            out.write(b'{"timestamp":"2025-08-20T10:00:00Z","user_id":2,"blob":"')  # no action
        block = b"a" * (1 << 20)
        for _ in range(size >> 20):
            out.write(block)
        out.write(b'"}\n')
        out.write(short * 1000)


def peak_mb(path: Path, out: Path, cli: bool) -> tuple[int, int]:
    """VmHWM and ru_maxrss (MB) of one child streaming `path`."""
    script, args = (CLI, [str(path), str(out)]) if cli else (CHILD, [str(path)])
    result = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True
    )
    hwm, maxrss = (int(v) for v in result.stdout.split())
    return hwm, maxrss


def measure(size_mb: int, kind: str, cli: bool) -> dict[str, object]:
    """The peak with the long line, and above what the same command takes for a tiny file (the
    interpreter and libraries), both as multiples of the line."""
    with tempfile.TemporaryDirectory(prefix="logsieve-long-line-") as tmp:
        path = Path(tmp) / f"{kind}.jsonl"
        write_input(path, size_mb << 20, kind)
        tiny = Path(tmp) / "tiny.jsonl"
        write_input(tiny, 0, kind)
        hwm, maxrss = peak_mb(path, Path(tmp) / "out", cli)
        _, base = peak_mb(tiny, Path(tmp) / "out-tiny", cli)
    return {
        "kind": kind,
        "line_mb": size_mb,
        "what": "logsieve process (CLI)" if cli else "process_stream",
        "vm_hwm_mb": hwm,
        "ru_maxrss_mb": maxrss,
        "times_line": round(maxrss / size_mb, 2),
        "base_mb": base,
        "times_line_over_base": round((maxrss - base) / size_mb, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=300, help="length of the long line in MB")
    parser.add_argument("--kind", choices=["valid", "invalid", "both"], default="both")
    parser.add_argument("--cli", action="store_true", help="measure `logsieve process` instead")
    args = parser.parse_args()
    for kind in ["valid", "invalid"] if args.kind == "both" else [args.kind]:
        print(json.dumps(measure(args.mb, kind, args.cli)), flush=True)


if __name__ == "__main__":
    main()
