"""Build a profile-guided (PGO) wheel of logsieve: the release build, 10-20% faster in the core.

Profile-guided optimisation is how pydantic-core and CPython build their releases: the compiler
first builds an instrumented extension, a training run records which branches the hot path takes
and how often, and the final build lays out and inlines code for that. Our core is a branchy
byte-level parser, which is what PGO helps most.

    python benches/scripts/pgo.py                # wheel in dist/
    python benches/scripts/pgo.py --install      # and install it into this Python environment

Steps (about four minutes; two full release builds): build an instrumented wheel, run
`logsieve.process` and `process_stream` on corpora *other* than the benchmarks' (another seed:
clean, 5% invalid, strings only, shuffled), merge the raw profiles with `llvm-profdata`, build
the final wheel with the profile. The default `pip install .` stays a plain release build, so a
stale or unreadable profile can never break an install.

Needs `llvm-profdata` from the same LLVM as rustc: `rustup component add llvm-tools`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: The helpers the benchmark suites share (corpus, peers, end_to_end) live one level up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Seed of the training corpora: not the benchmarks' (corpus.CorpusSpec.seed), so that the
#: measured bytes are never the bytes the build was trained on.
TRAINING_SEED = 1
TRAINING_LINES = 200_000

_TRAIN = """
import sys
import logsieve
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    for _ in range(2):
        logsieve.process(data)
    with open(path, "rb") as stream:
        for _ in logsieve.process_stream(stream, 1 << 20):
            pass
"""


class PgoError(Exception):
    """A step failed; the message says which and what to do."""


def llvm_profdata() -> Path:
    """`llvm-profdata` of rustc's own LLVM (raw profiles are only readable by the same major)."""
    sysroot = _output(["rustc", "--print", "sysroot"]).strip()
    version = dict(
        line.split(": ", 1) for line in _output(["rustc", "-vV"]).splitlines() if ": " in line
    )
    tool = Path(sysroot) / "lib" / "rustlib" / version["host"] / "bin" / "llvm-profdata"
    if tool.exists():
        return tool
    major = version["LLVM version"].split(".")[0]
    found = shutil.which(f"llvm-profdata-{major}")
    if found:
        return Path(found)
    raise PgoError(
        f"llvm-profdata for LLVM {major} (rustc's) not found: run `rustup component add "
        f"llvm-tools`, or install llvm-profdata-{major}"
    )


def training_corpora() -> list[Path]:
    """Clean, 5% invalid, strings-only and shuffled corpora, generated (and cached) once."""
    sys.path.insert(0, str(ROOT / "benches"))
    from corpus import CorpusSpec, corpus_file

    specs = [
        CorpusSpec(TRAINING_LINES, 0.0, TRAINING_SEED),
        CorpusSpec(TRAINING_LINES, 0.05, TRAINING_SEED),
        CorpusSpec(TRAINING_LINES, 0.0, TRAINING_SEED, mixed_types=False),
        CorpusSpec(TRAINING_LINES, 0.05, TRAINING_SEED, time_ordered=False),
    ]
    return [corpus_file(spec)[0] for spec in specs]


def build_wheel(out: Path, target: Path, rustflags: str) -> Path:
    """One release wheel of this checkout, built with `rustflags` in its own target directory."""
    env = dict(os.environ, RUSTFLAGS=rustflags, CARGO_TARGET_DIR=str(target))
    _run([sys.executable, "-m", "maturin", "build", "--release", "-o", str(out)], env=env)
    wheels = list(out.glob("logsieve-*.whl"))
    if not wheels:
        raise PgoError(f"maturin wrote no wheel into {out}")
    return max(wheels, key=lambda wheel: wheel.stat().st_mtime)  # this build's, not an older one


def record_profile(work: Path, profdata: Path) -> Path:
    """Steps 1-3: instrumented build, training run, merged profile (returned)."""
    raw = work / "profraw"
    shutil.rmtree(raw, ignore_errors=True)
    print("1/4 instrumented build", flush=True)
    instrumented = build_wheel(work / "wheel-gen", work / "target-gen", f"-Cprofile-generate={raw}")
    # Build scripts of dependencies ran instrumented too: their profiles are not ours.
    shutil.rmtree(raw, ignore_errors=True)
    package = work / "pkg-gen"
    _pip_install(instrumented, "--upgrade", "--target", str(package))
    print("2/4 training run", flush=True)
    env = dict(os.environ, PYTHONPATH=str(package))
    _run([sys.executable, "-c", _TRAIN, *map(str, training_corpora())], env=env)
    if not any(raw.glob("*.profraw")):
        raise PgoError(f"the training run wrote no profile into {raw}")
    print("3/4 merging profiles", flush=True)
    merged = work / "logsieve.profdata"
    _run([str(profdata), "merge", "-o", str(merged), str(raw)])
    return merged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the wheel goes")
    parser.add_argument("--install", action="store_true", help="pip install the wheel here")
    parser.add_argument("--work", type=Path, help="keep intermediate files here (default: temp)")
    args = parser.parse_args()
    try:
        profdata = llvm_profdata()
        with tempfile.TemporaryDirectory(prefix="logsieve-pgo-") as temp:
            work = args.work or Path(temp)
            merged = record_profile(work, profdata)
            print("4/4 optimised build", flush=True)
            args.out.mkdir(parents=True, exist_ok=True)
            wheel = build_wheel(args.out, work / "target-use", f"-Cprofile-use={merged}")
        print(f"PGO wheel: {wheel}")
        if args.install:
            _pip_install(wheel, "--force-reinstall")
    except PgoError as error:
        print(f"pgo: {error}", file=sys.stderr)
        return 1
    return 0


def _pip_install(wheel: Path, *options: str) -> None:
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *options, str(wheel)])


def _run(command: list[str], env: dict[str, str] | None = None) -> None:
    try:
        done = subprocess.run(command, env=env, cwd=ROOT)
    except OSError as error:
        raise PgoError(f"`{command[0]}` could not be run: {error}") from None
    if done.returncode != 0:
        raise PgoError(f"`{' '.join(command[:4])} ...` failed (exit {done.returncode})")


def _output(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise PgoError(f"`{' '.join(command)}` failed: {error}") from None


if __name__ == "__main__":
    sys.exit(main())
