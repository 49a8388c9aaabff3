"""The `logsieve` command: one sub-command per job, each implemented in the module named for it.

Each command module keeps its heavy imports (moto, boto3, starlette...) inside its functions, so
building the parser stays cheap. Every failure a user can cause ends in one line on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from logsieve.errors import LogsieveError
from logsieve.memory import use_lean_arrow_pool

# name -> (module, help). The module defines `add_arguments(parser)` and `run(args) -> int`
# for that name as `add_<name>_arguments` / `run_<name>`.
_COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("logsieve.simulate", "run the whole pipeline once on in-process moto (the demo)"),
    "process": ("logsieve.local", "process local files into partitioned Parquet + error JSONL"),
    "serve": ("logsieve.api", "serve the HTTP API (/logins_today, /docs) over a clean dataset"),
    "up": ("logsieve.live", "run the live pipeline on a local moto server, worker and API"),
    "compact": ("logsieve.compact", "rewrite the clean table's small files, sorted; vacuum"),
    "errors": ("logsieve.replay", "summarise the error records: by code, source and day"),
    "replay": ("logsieve.replay", "run error records through the core again into the table"),
    "redrive": ("logsieve.redrive", "move the dead-letter queue's messages back to work"),
    "template": ("logsieve.deploy", "print the CloudFormation template for real AWS"),
    "package": ("logsieve.deploy", "build the Lambda deployment artifact"),
}
# Commands that stream files through the core get the lean Arrow pool (logsieve.memory). Not the
# HTTP API: under jemalloc `logsieve serve` answered 2-17% fewer requests per second and its
# first question about a day took longer (benches/bench_api.py; BENCHMARKS.md, decisions).
_STREAMING = {"process", "simulate"}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with `argv`, only the command it names gets its arguments (its module is the
    only one imported: `logsieve process` on an empty file must not pay for the API's imports)."""
    wanted = _command_of(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="logsieve",
        description="Validate, normalise and store JSON Lines logs; query them over HTTP.",
    )
    from logsieve import __version__

    parser.add_argument("--version", action="version", version=f"logsieve {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in _COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if wanted is not None and name != wanted:
            continue  # never chosen in this run: its arguments are not needed
        module = importlib.import_module(module_name)
        getattr(module, f"add_{name}_arguments")(cmd)
        cmd.set_defaults(_run=getattr(module, f"run_{name}"))
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command argv names (its first word, `--version` and `-h` aside); None when it names
    none, so that help and errors list every command with its arguments."""
    first = next((word for word in argv if not word.startswith("-")), None)
    return first if first in _COMMANDS and argv[0] == first else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command in _STREAMING:
        use_lean_arrow_pool()
    try:
        return int(args._run(args) or 0)
    except LogsieveError as exc:
        print(f"logsieve {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"logsieve {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`logsieve ... | head`): stop quietly, and keep the interpreter's
        # final flush of stdout from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        # A path the user gave cannot be read or written: say which, in one line.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"logsieve {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


def run() -> None:
    """The `logsieve` command: `main`, then an immediate exit once output is flushed.

    delta-rs and pyarrow together can abort the interpreter while it tears down at exit
    ("terminate called without an active exception", in one run of four after reading a table
    with `to_pyarrow_table`): their thread pools outlive Python. Every command has finished its
    work and closed its files by then, so the command skips that teardown.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = code or 1
    os._exit(code)


if __name__ == "__main__":
    run()
