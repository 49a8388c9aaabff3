"""The `logsieve` command's own promises, the same for every command: exit codes, -v/-q, help
that shows defaults, no abbreviated options, one line on stderr for a user's mistake, and a
summary that stays short however many inputs there are."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logsieve.cli import COMMANDS, ExitCode, build_parser, main
from logsieve.cli.process import MESSAGE_LINES, TABLE_ROWS

LOGSIEVE = [sys.executable, "-m", "logsieve.cli"]


def logsieve(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """The real command in a fresh process."""
    return subprocess.run(
        [*LOGSIEVE, *argv], capture_output=True, text=True, timeout=120, check=False, **kwargs
    )


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


def test_unwritable_output_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    status = main(["simulate", "--out", str(blocker / "demo")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2  # refused up front, before the demo
    assert err == [
        f"logsieve simulate: error: --out {blocker / 'demo'}: cannot create the directory: "
        "Not a directory"
    ]


def test_help_lists_every_command_and_the_exit_codes() -> None:
    done = logsieve("--help")
    assert done.returncode == 0
    for command in COMMANDS:
        assert re.search(rf"^    {command} ", done.stdout, re.MULTILINE), command
    assert "0 ok; 1 some input failed (the rest was done); 2 usage or configuration; 130" in (
        " ".join(done.stdout.split())
    )


def test_unknown_command_is_a_usage_error() -> None:
    proc = logsieve("frobnicate")
    assert proc.returncode == 2
    assert "invalid choice: 'frobnicate'" in proc.stderr


def test_every_default_is_shown_in_help(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option
    checked = 0
    for name, parser in subcommands().items():
        lines = parser.format_help().splitlines()
        for action in options(parser) + [a for a in parser._actions if a.nargs == "?"]:
            default = action.default
            if default in (None, argparse.SUPPRESS) or action.nargs == 0:  # flags: on or off
                continue
            key = action.option_strings[0] if action.option_strings else action.metavar
            start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(key))
            entry = lines[start]
            for line in lines[start + 1 :]:  # the help may continue on the next line
                if not line.startswith("    ") or line.lstrip().startswith("-"):
                    break
                entry += " " + line.strip()
            shown = re.search(r"default:? ([^ ;,)]+)", entry)
            assert shown is not None, f"{name} {key}: no default in {entry!r}"
            said = shown.group(1)
            if isinstance(default, (int, float)):
                assert float(said) == default, (name, key, entry)
            else:
                assert said == str(default), (name, key, entry)
            checked += 1
    assert checked >= 20  # ports, hosts, sizes, fields, formats... not a vacuous loop


def test_help_of_the_real_command_shows_defaults() -> None:
    done = logsieve("up", "--help")
    text = " ".join(done.stdout.split())
    assert done.returncode == 0
    assert "--moto-port PORT port of the S3/SQS/SNS endpoint (0: free) (default: 5000)" in text
    assert "--log-format {text,json}" in text and "(default: text)" in text


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_abbreviated_options_are_refused(
    name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    parser = subcommands()[name]
    longs = [s for a in options(parser) for s in a.option_strings if s.startswith("--")]
    option = next(
        s for s in longs if len(s) > 5 and not any(o != s and o.startswith(s[:5]) for o in longs)
    )
    required = {"process": ["in.jsonl"], "invoke": ["event.json"], "package": ["--out", "dist"]}
    with pytest.raises(SystemExit) as exited:
        main([name, *required.get(name, []), option[:5], "1"])
    assert exited.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"logsieve {name}: error: unrecognized arguments: {option[:5]}" in err
    assert "options are never abbreviated" in err


def test_abbreviation_is_refused_by_the_real_command(tmp_path: Path) -> None:
    log = tmp_path / "in.jsonl"
    log.write_text('{"timestamp": 1, "user_id": 1, "action": "login"}\n')
    done = logsieve("process", str(log), "--o", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "unrecognized arguments: --o" in done.stderr
    assert not (tmp_path / "out").exists()  # nothing was written under a guessed meaning


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_verbose_and_quiet_mean_the_same_everywhere(name: str) -> None:
    parser = subcommands()[name]
    by_flag = {s: a for a in options(parser) for s in a.option_strings}
    reference = subcommands()["process"]
    ref_flags = {s: a for a in options(reference) for s in a.option_strings}
    for flag in ("-v", "--verbose", "-q", "--quiet"):
        assert by_flag[flag].help == ref_flags[flag].help, (name, flag)
        assert type(by_flag[flag]) is type(ref_flags[flag])
    with pytest.raises(SystemExit) as exited:  # both at once is a usage error
        parser.parse_args(["-v", "-q"])
    assert exited.value.code == 2


# --- exit codes, each from a real run of the command --------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["process", "{tmp}/in.jsonl", "--chunk-size", "0"], "not a positive size"),
        (["compact", "{tmp}/nothing-here"], "logsieve compact: error:"),
        (["serve", "--clean", "{tmp}/nothing-here", "--port", "0"], "logsieve serve: error:"),
        (["template", "--out", "{tmp}/no/such/dir/t.json"], "No such file or directory"),
        (["invoke", "{tmp}/no-event.json"], "cannot read the event"),
        (["validate"], "environment variable LOGSIEVE_CLEAN_URI is not set"),
        (["simulate", "--out", "{tmp}"], "holds files `logsieve simulate` did not write"),
        (["up", "--port", "7", "--moto-port", "7"], "they need two ports"),
    ],
)
def test_usage_and_configuration_errors_exit_2_in_one_line(
    argv: list[str], message: str, tmp_path: Path
) -> None:
    (tmp_path / "in.jsonl").write_text('{"timestamp": 1, "user_id": 1, "action": "login"}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSIEVE_")}
    done = logsieve(*(arg.format(tmp=tmp_path) for arg in argv), env=env)
    assert done.returncode == ExitCode.USAGE, done.stderr
    *usage, error = done.stderr.strip().splitlines()
    assert error.startswith(f"logsieve {argv[0]}: error: ") and message in error, done.stderr
    # argparse's own refusals come after the usage, as every argparse program's do.
    assert not usage or (usage[0].startswith("usage: ") and all(u[:1] == " " for u in usage[1:]))


def test_a_failed_input_exits_1_after_the_others(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text('{"timestamp": 1, "user_id": 1, "action": "login"}\n')
    done = logsieve(
        "process", str(tmp_path / "missing.jsonl"), str(good), "-q", "--out", str(tmp_path / "o")
    )
    assert done.returncode == ExitCode.FAILED
    assert done.stdout == ""  # -q: the exit status says it
    assert done.stderr.count("\n") == 1 and "missing.jsonl" in done.stderr
    assert (tmp_path / "o" / "clean" / "_delta_log").is_dir()  # the good input was stored


def _interrupt(
    argv: list[str], ready: Callable[[int], bool], **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run the command, send SIGINT once `ready(pid)` says it is at work, collect the end."""
    proc = subprocess.Popen(
        [*LOGSIEVE, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )
    deadline = time.monotonic() + 60
    while not ready(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _spooling_stdin(pid: int) -> bool:
    """Whether `process -` has opened its temporary spool for stdin (it is reading it)."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(tempfile.gettempdir() in os.readlink(fd) for fd in fds.iterdir())
    except OSError:
        return False


def test_ctrl_c_exits_130(tmp_path: Path) -> None:
    # `process -` waits on a stdin that never ends: interrupted mid-work.
    read, write = os.pipe()
    try:
        argv = ["process", "-", "--out", str(tmp_path / "o")]
        done = _interrupt(argv, _spooling_stdin, stdin=read)
    finally:
        os.close(read)
        os.close(write)
    assert done.returncode == ExitCode.INTERRUPTED
    assert done.stderr.strip() == "logsieve process: interrupted"
    assert not (tmp_path / "o" / "clean").exists()


def test_ctrl_c_stops_the_demo_with_130(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    # A visibility timeout of 30 s keeps the demo busy for a minute (its broken object is
    # retried twice), so the signal surely arrives mid-run: 3 s after the folder was claimed.
    argv = ["simulate", "--out", str(demo), "--visibility-timeout", "30"]
    marker = demo / ".logsieve-demo"
    done = _interrupt(
        argv, lambda pid: marker.exists() and time.time() - marker.stat().st_mtime > 3
    )
    assert done.returncode == ExitCode.INTERRUPTED, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "logsieve simulate: interrupted"
    assert "Traceback" not in done.stderr


# --- many inputs: a short summary ---------------------------------------------------------------


def _many_inputs(root: Path, count: int, bad: dict[int, int]) -> None:
    """`count` small logs; log i has bad[i] invalid lines (else none)."""
    for i in range(count):
        lines = [
            json.dumps({"timestamp": 1755684000 + i * 60 + j, "user_id": i, "action": "login"})
            for j in range(5)
        ]
        lines += ["not json"] * bad.get(i, 0)
        (root / f"app-{i:03d}.jsonl").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("bad_inputs", [5, TABLE_ROWS + 4])
def test_many_inputs_summary_is_totals_plus_the_worst(
    bad_inputs: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    # Every 4th log has invalid lines, more of them the later it comes, but #8 has the most.
    bad = {4 * k: k + 1 for k in range(bad_inputs)}
    bad[8] = 50
    _many_inputs(logs, 60, bad)
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["process", str(logs), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "app-" in line]
    named = [int(re.search(r"app-(\d+)", row).group(1)) for row in rows]  # type: ignore[union-attr]
    worst = sorted(bad, key=lambda i: bad[i], reverse=True)[:TABLE_ROWS]
    assert named == worst  # only inputs with invalid lines, most first, at most TABLE_ROWS
    assert f"{60 - len(worst)} more inputs" in out and "(--json lists all)" in out
    total = next(line for line in out.splitlines() if "total (60 inputs)" in line)
    cells = [c.strip() for c in total.strip("│ ").split("│")]
    invalid = sum(bad.values())
    assert cells[1:4] == [f"{60 * 5 + invalid:,}", f"{60 * 5:,}", str(invalid)]
    assert len(out.splitlines()) < TABLE_ROWS + 15


def test_many_failures_are_counted_not_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = [str(tmp_path / f"gone-{i}.jsonl") for i in range(MESSAGE_LINES + 15)]
    assert main(["process", *missing, "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == MESSAGE_LINES + 1
    assert err[-1] == "logsieve process: error: 15 more inputs failed (--json lists all)"
    assert main(["process", *missing, "--out", str(tmp_path / "o"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert len(report["failed"]) == len(missing)  # --json lists everything


def test_quiet_prints_nothing_on_success(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    _many_inputs(logs, 3, {1: 2})
    done = logsieve("process", str(logs), "-q", "--out", str(tmp_path / "o"))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    quiet_json = logsieve("process", str(logs), "-q", "--json", "--out", str(tmp_path / "o"))
    assert json.loads(quiet_json.stdout)["totals"]["errors"] == 2  # --json still answers


@pytest.mark.parametrize("name", ["errors", "replay", "redrive"])
def test_quiet_prints_nothing_for_errors_replay_and_redrive(
    name: str, tmp_path: Path, aws_stack: Any
) -> None:
    """-q means nothing but errors for the error-record and dead-letter commands too; --json
    still answers."""
    logs = tmp_path / "logs"
    logs.mkdir()
    _many_inputs(logs, 2, {0: 3})
    out = tmp_path / "o"
    assert logsieve("process", str(logs), "-q", "--out", str(out)).returncode == 0
    clients, resources = aws_stack
    clients.sqs.send_message(QueueUrl=resources.dead_letter_queue_url, MessageBody="{}")
    argv = {
        "errors": ["errors", str(out / "errors")],
        "replay": ["replay", str(out / "errors"), "--out", str(out)],
        "redrive": ["redrive"],
    }[name]
    done = logsieve(*argv, "-q")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    answered = logsieve(*argv, "-q", "--json")
    assert answered.returncode == 0 and isinstance(json.loads(answered.stdout), dict)


def test_the_reference_lists_every_command_and_every_json_option() -> None:
    """docs/cli.md: every command in its table, and every command with --json in the
    sentence that lists them."""
    text = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    table = text.split("## Conventions")[0]
    listed = text.split("`--json` prints the command's report as JSON")[1].split("\n\n")[0]
    for name, parser in subcommands().items():
        assert f"[`{name}`]" in table, name
        if "--json" in parser._option_string_actions:
            assert f"`{name}`" in listed, name
