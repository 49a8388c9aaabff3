"""The `logsieve` command: one sub-command per job, each implemented in the module named for it.

Each command module keeps its heavy imports (moto, boto3, starlette...) inside its functions, so
building the parser stays cheap. The conventions every command shares live here, in one place,
so that they cannot drift apart: the exit codes, `-v`/`-q`, help that shows defaults, no
abbreviated options, and one line on stderr (never a traceback) for every failure a user can
cause.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from logsieve.errors import ConfigError, LogsieveError
from logsieve.memory import use_lean_memory

if TYPE_CHECKING:
    from logsieve.storage.identity import FieldNames


class ExitCode(IntEnum):
    """What every `logsieve` command's exit status means (docs/cli.md, "Exit codes")."""

    #: Everything asked for was done (invalid lines are data, not failures).
    OK = 0
    #: Some input (a file, an object, a check) failed; the others were still done.
    FAILED = 1
    #: Usage or configuration: a bad option, a missing setting, an output that cannot be
    #: written. Said in one line; nothing, or nothing more, was done.
    USAGE = 2
    #: Interrupted (Ctrl-C) before the work was done.
    INTERRUPTED = 130


@dataclass(frozen=True)
class Command:
    """A sub-command: the module that implements it, its one-line help, its log defaults."""

    module: str
    help: str
    #: Log level of the `logsieve` loggers without -v/-q. Commands that report every object
    #: themselves show the handler's log lines only when asked (-v).
    quiet_logs: bool = False
    #: Streaming commands get the lean Arrow memory pool (logsieve.memory).
    streaming: bool = False
    #: The command sets up logging itself (`up`: timestamped console lines, JSON on request).
    own_logging: bool = False


# Not the HTTP API in the streaming set: under jemalloc `logsieve serve` answered 2-17% fewer
# requests per second and its first question about a day took longer (benches/scripts/bench_api.py;
# BENCHMARKS.md, decisions).
COMMANDS: dict[str, Command] = {
    "simulate": Command(
        "logsieve.cli.simulate",
        "run the whole pipeline once on a local moto server (the demo)",
        quiet_logs=True,
        streaming=True,
    ),
    "process": Command(
        "logsieve.cli.process",
        "process local files into DIR/clean (Delta table) and DIR/errors (JSON Lines)",
        streaming=True,
    ),
    "serve": Command(
        "logsieve.cli.serve", "serve the HTTP API (/logins_today, /docs) over a clean table"
    ),
    "up": Command(
        "logsieve.cli.up",
        "run the live pipeline on a local moto server, worker and API",
        own_logging=True,
    ),
    "invoke": Command(
        "logsieve.cli.invoke",
        "run the handler once on an event file against the configured endpoint",
        quiet_logs=True,
    ),
    "validate": Command(
        "logsieve.cli.invoke",
        "check the handler's configuration and reach its buckets and topic; process nothing",
        quiet_logs=True,
    ),
    "compact": Command(
        "logsieve.cli.compact", "rewrite the clean table's small files, sorted; vacuum"
    ),
    "errors": Command(
        "logsieve.cli.replay", "summarise the error records: by code, source and day"
    ),
    "replay": Command(
        "logsieve.cli.replay", "run error records through the core again into the table"
    ),
    "redrive": Command(
        "logsieve.cli.redrive", "move the dead-letter queue's messages back to work"
    ),
    "template": Command("logsieve.cli.deploy", "print the CloudFormation template for real AWS"),
    "package": Command("logsieve.cli.deploy", "build the Lambda deployment artifact"),
}

EXIT_CODES_EPILOG = (
    "exit status: 0 ok; 1 some input failed (the rest was done); 2 usage or configuration; "
    "130 interrupted"
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows every option's default (unless its text already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not shows_default(action) or "default" in text.lower():
            return text
        return f"{text} (default: %(default)s)"


def shows_default(action: argparse.Action) -> bool:
    """Whether an option has a default worth printing (not None, False, empty or suppressed)."""
    default = action.default
    if default is None or default is False or default == argparse.SUPPRESS:
        return False
    if isinstance(default, (list, tuple)) and not default:
        return False
    if action.nargs == 0 or isinstance(action, argparse._CountAction):  # flags
        return False
    return bool(action.option_strings) or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)


def add_verbosity_options(parser: argparse.ArgumentParser) -> None:
    """-v/-q, meaning the same for every command (docs/cli.md, "Output")."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="also show log lines on stderr (-v info, -vv debug)",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print nothing but errors (and what --json asks for); the exit status tells the rest",
    )


def verbosity(args: argparse.Namespace) -> int:
    """-1 with -q, 0 by default, the count of -v otherwise."""
    if getattr(args, "quiet", False):
        return -1
    return int(getattr(args, "verbose", 0) or 0)


def log_level(args: argparse.Namespace, default: int = logging.WARNING) -> int:
    """The level -v/-q choose: ERROR (-q; or `default` if higher), `default`, INFO (-v),
    DEBUG (-vv)."""
    level = verbosity(args)
    if level < 0:
        return max(logging.ERROR, default)
    return {0: default, 1: logging.INFO}.get(level, logging.DEBUG)


@contextmanager
def logging_for(args: argparse.Namespace, command: Command) -> Iterator[None]:
    """Log lines of the `logsieve` loggers on stderr, at the level -v/-q choose, while a
    command runs (then as before: `main` also runs inside test processes).

    Commands with their own console output (`up`) set up their own handlers on top.
    """
    default = logging.CRITICAL + 1 if command.quiet_logs else logging.WARNING
    log = logging.getLogger("logsieve")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    previous = log.level
    log.addHandler(handler)
    log.setLevel(log_level(args, default))
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(previous)


def print_capped(lines: Iterable[str], *, limit: int, more: str, file: Any = None) -> int:
    """Print at most `limit` lines, then one line counting the rest (`more` formats the count).

    Many inputs must not mean thousands of lines: --json lists everything. Returns the count.
    """
    count = 0
    for line in lines:
        if count < limit:
            print(line, file=file or sys.stdout)
        count += 1
    if count > limit:
        print(more.format(count=count - limit), file=file or sys.stdout)
    return count


_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """`8388608`, `8M`, `8MiB`, `512k` -> bytes (binary units); argparse type for --chunk-size."""
    match = _SIZE.match(text)
    if not match or int(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a positive size: {text!r} (e.g. 8MiB, 512k, 65536)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def add_field_arguments(parser: argparse.ArgumentParser, *, column_note: bool = False) -> None:
    """--timestamp-field, --user-id-field, --action-field: the input's names for the three
    required fields (`column_note`: say that output columns keep the standard names)."""
    for option, default, meaning in (
        ("--timestamp-field", "timestamp", "the event time"),
        ("--user-id-field", "user_id", "the user id"),
        ("--action-field", "action", "the action"),
    ):
        note = f"; the output column keeps the name {default}" if column_note else ""
        parser.add_argument(
            option,
            default=default,
            metavar="NAME",
            help=f"input member holding {meaning} (default: {default}){note}",
        )


def field_names(args: argparse.Namespace) -> FieldNames:
    """The field names `add_field_arguments` parsed: none empty, all different."""
    from logsieve.storage.identity import FieldNames

    given = {
        "--timestamp-field": args.timestamp_field,
        "--user-id-field": args.user_id_field,
        "--action-field": args.action_field,
    }
    for option, name in given.items():
        if not name:
            raise ConfigError(f"{option} must not be empty")
    if len(set(given.values())) != len(given):
        raise ConfigError("--timestamp-field, --user-id-field and --action-field must differ")
    return FieldNames(args.timestamp_field, args.user_id_field, args.action_field)


def plural(count: int, noun: str) -> str:
    """`1 file`, `2 files`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def print_json(value: Any) -> None:
    """`value` as indented JSON on stdout (what every command's --json prints)."""
    import orjson

    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with `argv`, only the command it names gets its arguments (its module is the
    only one imported: `logsieve process` on an empty file must not pay for the API's imports)."""
    from logsieve import __version__

    wanted = _command_of(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="logsieve",
        description="Validate, normalise and store JSON Lines logs; query them over HTTP.",
        epilog=f"{EXIT_CODES_EPILOG}\nreference: docs/cli.md",
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"logsieve {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, command in COMMANDS.items():
        cmd = sub.add_parser(
            name,
            help=command.help,
            description=command.help,
            epilog=EXIT_CODES_EPILOG,
            formatter_class=HelpFormatter,
            allow_abbrev=False,
        )
        if wanted is not None and name != wanted:
            continue  # never chosen in this run: its arguments are not needed
        module = importlib.import_module(command.module)
        getattr(module, f"add_{name}_arguments")(cmd)
        if "-v" not in cmd._option_string_actions:
            add_verbosity_options(cmd)
        cmd.set_defaults(_run=getattr(module, f"run_{name}"), _parser=cmd)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command argv names (its first word, `--version` and `-h` aside); None when it names
    none, so that help and errors list every command with its arguments."""
    first = next((word for word in argv if not word.startswith("-")), None)
    return first if first in COMMANDS and argv[0] == first else None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run the command, and turn every failure a user can cause into its exit code."""
    name = "command"
    try:
        parser = build_parser(argv)
        args, unknown = parser.parse_known_args(argv)
        name = args.command
        if unknown:  # said by the command's own parser, which knows its options
            args._parser.error(
                f"unrecognized arguments: {' '.join(unknown)} (options are never abbreviated; "
                f"see logsieve {name} --help)"
            )
        command = COMMANDS.get(name, Command("", ""))
        if command.streaming:
            use_lean_memory()
        with nullcontext() if command.own_logging else logging_for(args, command):
            return int(args._run(args) or 0)
    except LogsieveError as exc:
        print(f"logsieve {name}: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        print(f"logsieve {name}: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`logsieve ... | head`): stop quietly, and keep the interpreter's
        # final flush of stdout from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.FAILED
    except OSError as exc:
        # A path the user gave cannot be read or written: say which, in one line. Inputs that
        # fail are reported by the commands themselves (exit 1); what reaches here is a
        # location the command needs before it can do anything.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"logsieve {name}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return ExitCode.USAGE


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
        code = code or ExitCode.FAILED
    os._exit(code)
