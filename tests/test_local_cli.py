"""`logsieve process`: local files, directories, globs and stdin into the partitioned layout."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import zstandard
from deltalake import DeltaTable

from logsieve.cli import main
from logsieve.storage.error_files import raw_bytes
from logsieve.storage.identity import source_id

VALID = (
    '{{"timestamp": "2025-08-{day:02d}T{hour:02d}:15:00Z", "user_id": {uid}, "action": "{act}"}}'
)
INVALID = [
    b"not json",
    b'{"timestamp": "2025-08-20T10:00:00Z", "action": "login"}',
    b'{"timestamp": "yesterday", "user_id": 1, "action": "login"}',
    b"\xff\xfe\x00 binary",
]


def make_lines(seed: int, valid: int = 30) -> list[bytes]:
    """Valid lines over several days, every few lines an invalid one, a blank now and then."""
    lines = []
    for i in range(valid):
        act = ("login", "logout", "purchase")[(i + seed) % 3]
        lines.append(
            VALID.format(day=18 + (i + seed) % 4, hour=i % 24, uid=seed * 100 + i, act=act).encode()
        )
        if i % 7 == seed % 7:
            lines.append(INVALID[(i + seed) % len(INVALID)])
        if i % 11 == 5:
            lines.append(b"")
    return lines


def expected_counts(lines: list[bytes]) -> dict[str, int]:
    blank = sum(1 for line in lines if not line.strip())
    invalid = sum(1 for line in lines if line in INVALID)
    return {
        "processed": len(lines) - blank,
        "valid": len(lines) - blank - invalid,
        "errors": invalid,
        "blank": blank,
    }


def write(path: Path, lines: list[bytes], compress: str | None = None) -> Path:
    data = b"".join(line + b"\n" for line in lines)
    if compress == "gzip":
        data = gzip.compress(data)
    elif compress == "zstd":
        data = zstandard.ZstdCompressor().compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def clean_rows(out: Path) -> list[dict]:
    """The rows of the Delta table DIR/clean (its current snapshot), none if there is no table."""
    if not DeltaTable.is_deltatable(str(out / "clean")):
        return []
    return DeltaTable(str(out / "clean")).to_pyarrow_table().to_pylist()


def error_files(out: Path) -> list[Path]:
    """The error-record files (not the per-source ledgers under `_logsieve/`)."""
    return sorted(
        p for p in (out / "errors").rglob("*.jsonl") if "_logsieve" not in p.relative_to(out).parts
    )


def error_records(out: Path) -> list[dict]:
    return [orjson.loads(line) for p in error_files(out) for line in p.read_bytes().splitlines()]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    code = main(["process", *argv, "--json"])
    captured = capsys.readouterr()
    return code, orjson.loads(captured.out), captured.err


@pytest.fixture
def logs(tmp_path: Path) -> dict[str, list[bytes]]:
    files = {
        "logs/a.jsonl": (make_lines(1), None),
        "logs/b.log.gz": (make_lines(2), "gzip"),
        "logs/nested/c.ndjson.zst": (make_lines(3), "zstd"),
        "logs/nested/d.json": (make_lines(4, valid=3), None),
    }
    for name, (lines, compress) in files.items():
        write(tmp_path / name, lines, compress)
    (tmp_path / "logs" / "README.txt").write_text("not a log")
    return {str((tmp_path / name).resolve()): lines for name, (lines, _) in files.items()}


def test_process_directory_accounts_for_every_line(tmp_path: Path, logs, capsys) -> None:
    out = tmp_path / "out"
    code, report, err = run_json(capsys, str(tmp_path / "logs"), "--out", str(out))
    assert code == 0, err
    assert err == ""
    assert report["failed"] == []
    assert sorted(item["source"] for item in report["inputs"]) == sorted(logs)
    for item in report["inputs"]:
        counts = expected_counts(logs[item["source"]])
        assert {k: item[k] for k in counts} == counts, item["source"]
    totals = report["totals"]
    assert totals["inputs"] == len(logs)
    assert totals["valid"] == sum(expected_counts(lines)["valid"] for lines in logs.values())
    assert totals["errors"] == sum(expected_counts(lines)["errors"] for lines in logs.values())

    rows = clean_rows(out)
    assert len(rows) == totals["valid"]
    errors = error_records(out)
    assert len(errors) == totals["errors"]
    for record in errors:  # each error points back at exactly its input line
        assert raw_bytes(record) == logs[record["source"]][record["line"] - 1]
    valid_lines = [
        line for lines in logs.values() for line in lines if line.strip() and line not in INVALID
    ]
    expected_users = sorted(orjson.loads(line)["user_id"] for line in valid_lines)
    assert sorted(int(row["user_id"]) for row in rows) == expected_users
    # Lineage: every row names the file it came from and that file's identity, which is made
    # from its content (not its path) and is what the report's source_id abbreviates.
    reported = {item["source"]: item["source_id"] for item in report["inputs"]}
    identities = set()
    for path, lines in logs.items():
        mine = [row for row in rows if row["source"] == path]
        assert len(mine) == expected_counts(lines)["valid"]
        (identity,) = {row["source_id"] for row in mine}
        assert identity.startswith("local:") and Path(path).name not in identity
        assert reported[path] == source_id(identity)
        identities.add(identity)
    assert len(identities) == len(logs)


def test_rerunning_does_not_duplicate_output(tmp_path: Path, logs, capsys) -> None:
    out = tmp_path / "out"
    argv = [str(tmp_path / "logs"), "--out", str(out)]
    _, first, _ = run_json(capsys, *argv)
    files = sorted(p for p in out.rglob("*") if p.is_file() and "_logsieve" not in p.parts)
    for _ in range(2):
        code, again, _ = run_json(capsys, *argv)
        assert code == 0
        assert again["totals"]["valid"] == first["totals"]["valid"]
    assert sorted(p for p in out.rglob("*") if p.is_file() and "_logsieve" not in p.parts) == files
    assert len(clean_rows(out)) == first["totals"]["valid"]
    assert len(error_records(out)) == first["totals"]["errors"]


def test_an_earlier_runs_output_inside_the_input_is_skipped_with_a_note(
    tmp_path: Path, logs, capsys
) -> None:
    earlier = tmp_path / "logs" / "last-week"
    _, first, _ = run_json(capsys, str(tmp_path / "logs"), "--out", str(earlier))
    assert error_records(earlier)  # its error files are .jsonl: they would read as logs

    code, second, err = run_json(capsys, str(tmp_path / "logs"), "--out", str(tmp_path / "now"))

    assert code == 0
    assert sorted(item["source"] for item in second["inputs"]) == sorted(logs)
    for name in ("inputs", "processed", "valid", "errors", "blank"):
        assert second["totals"][name] == first["totals"][name]
    for part in ("clean", "errors"):
        assert f"note: skipped {earlier / part}: a logsieve output directory" in err
    # Named on its own, an output directory is refused with the reason, not read.
    code, third, _ = run_json(capsys, str(earlier / "errors"), "--out", str(tmp_path / "x"))
    assert code == 1
    assert "is a logsieve output directory" in third["failed"][0]["error"]


def test_out_as_a_file_url(tmp_path: Path, logs, capsys) -> None:
    out = tmp_path / "as url"
    code, report, _ = run_json(capsys, str(tmp_path / "logs"), "--out", out.as_uri())
    assert code == 0 and len(clean_rows(out)) == report["totals"]["valid"] > 0
    # A file: URL naming another host is refused, not read as a local path.
    assert main(["process", str(tmp_path / "logs"), "--out", "file://elsewhere/x"]) == 2
    assert "is not a local file URL" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists()


def test_output_directory_inside_the_input_is_not_read_back(tmp_path: Path, logs, capsys) -> None:
    out = tmp_path / "logs" / "out"
    _, first, _ = run_json(capsys, str(tmp_path / "logs"), "--out", str(out))
    _, second, _ = run_json(capsys, str(tmp_path / "logs"), "--out", str(out))
    assert len(second["inputs"]) == len(first["inputs"]) == len(logs)


def test_missing_and_truncated_inputs_fail_loudly_but_good_ones_are_processed(
    tmp_path: Path, capsys
) -> None:
    good = write(tmp_path / "good.jsonl", make_lines(5))
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress(b"".join(line + b"\n" for line in make_lines(6)))[:-25])
    out = tmp_path / "out"
    code, report, err = run_json(
        capsys, str(good), str(tmp_path / "missing.jsonl"), str(broken), "--out", str(out)
    )
    assert code == 1
    assert [item["source"] for item in report["inputs"]] == [str(good.resolve())]
    assert [f["input"] for f in report["failed"]] == [str(tmp_path / "missing.jsonl"), str(broken)]
    lines = err.strip().splitlines()
    assert lines == [
        f"logsieve process: error: {tmp_path / 'missing.jsonl'}: no such file or directory",
        f"logsieve process: error: {broken}: gzip stream is truncated (ended before its end "
        "marker)",
    ]
    # nothing published for the truncated source
    broken_id = source_id(str(broken.resolve()))
    assert not [p for p in out.rglob("*") if broken_id in p.name]
    assert len(clean_rows(out)) == expected_counts(make_lines(5))["valid"]


def test_unreadable_file_is_reported(tmp_path: Path, capsys) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can read any file")
    path = write(tmp_path / "secret.jsonl", make_lines(1))
    path.chmod(0)
    code = main(["process", str(path), "--out", str(tmp_path / "out")])
    assert code == 1
    assert "cannot open" in capsys.readouterr().err


def test_table_summary_on_a_non_terminal(tmp_path: Path, logs, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["process", "logs/a.jsonl", "logs/nested", "-o", "o"])
    out = capsys.readouterr().out
    assert code == 0
    counts = expected_counts(logs[str((tmp_path / "logs" / "a.jsonl").resolve())])
    row = next(line for line in out.splitlines() if "a.jsonl" in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[1:5] == [str(counts[k]) for k in ("processed", "valid", "errors", "blank")]
    assert "total (3 inputs)" in out
    assert "MB/s" in out
    assert "\x1b[" not in out  # no colour codes when not on a terminal


def test_custom_field_names_and_chunk_size(tmp_path: Path, capsys) -> None:
    lines = [
        b'{"ts": 1755684000, "who": "alice", "what": "login"}',
        b'{"ts": "2025-08-21T00:00:00Z", "who": 7, "what": "logout", "timestamp": "kept"}',
        b'{"timestamp": "2025-08-21T00:00:00Z", "user_id": 7, "action": "logout"}',
    ]
    path = write(tmp_path / "custom.jsonl", lines)
    out = tmp_path / "out"
    fields = ["--timestamp-field", "ts", "--user-id-field", "who", "--action-field", "what"]
    code, report, _ = run_json(capsys, str(path), "--out", str(out), *fields, "--chunk-size", "64")
    assert code == 0
    assert (report["totals"]["valid"], report["totals"]["errors"]) == (2, 1)
    rows = sorted(clean_rows(out), key=lambda r: r["timestamp"])
    assert [(r["user_id"], r["action"]) for r in rows] == [("alice", "login"), ("7", "logout")]
    assert rows[0]["timestamp"] == "2025-08-20 10:00:00"
    assert orjson.loads(rows[1]["extra"]) == {"timestamp": "kept"}
    assert error_records(out)[0]["error"] == "missing_field"


@pytest.mark.parametrize("bad", ["0", "lots", "-5", "8 parsecs"])
def test_bad_chunk_size_is_a_usage_error(tmp_path: Path, bad: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["process", str(tmp_path), "--chunk-size", bad])
    assert exit_info.value.code == 2
    assert "not a positive size" in capsys.readouterr().err


def test_same_field_twice_is_a_config_error(tmp_path: Path, capsys) -> None:
    path = write(tmp_path / "a.jsonl", make_lines(1))
    code = main(
        ["process", str(path), "--user-id-field", "timestamp", "--out", str(tmp_path / "o")]
    )
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "logsieve process: error: --timestamp-field, --user-id-field and --action-field must differ"
    ]


def test_stdin_in_process(tmp_path: Path, capsys, monkeypatch) -> None:
    lines = make_lines(8)
    data = gzip.compress(b"".join(line + b"\n" for line in lines))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, report, _ = run_json(
        capsys, "-", "--out", str(tmp_path / "out"), "--stdin-name", "piped.log"
    )
    assert code == 0
    (item,) = report["inputs"]
    assert item["source"] == "piped.log"
    assert {k: item[k] for k in ("processed", "valid", "errors", "blank")} == expected_counts(lines)
    assert {r["source"] for r in error_records(tmp_path / "out")} == {"piped.log"}


def cli_subprocess(*argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "logsieve.cli", "process", *argv],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_real_subprocess_with_stdin_is_idempotent_per_content(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first_lines, second_lines = make_lines(1), make_lines(2)
    first = b"".join(line + b"\n" for line in first_lines)
    second = b"".join(line + b"\n" for line in second_lines)

    runs = [
        cli_subprocess("-", "--out", str(out), "--json", stdin=data)
        for data in (first, first, second)
    ]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stderr == b""  # no progress bar when stderr is not a terminal
    reports = [orjson.loads(proc.stdout) for proc in runs]
    sources = [r["inputs"][0]["source"] for r in reports]
    assert sources[0] == sources[1] != sources[2]
    assert sources[0].startswith("stdin-")
    valid = expected_counts(first_lines)["valid"] + expected_counts(second_lines)["valid"]
    assert len(clean_rows(out)) == valid  # same content twice: replaced, not duplicated


def test_real_subprocess_failure_is_one_line_and_exit_1(tmp_path: Path) -> None:
    proc = cli_subprocess(str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert proc.stderr.decode().splitlines() == [
        f"logsieve process: error: {tmp_path / 'nope.jsonl'}: no such file or directory"
    ]
    assert b"Traceback" not in proc.stderr


def test_special_file_is_reported_not_read(tmp_path: Path, capsys) -> None:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    good = write(tmp_path / "good.jsonl", make_lines(3))
    code, report, err = run_json(capsys, str(fifo), str(good), "--out", str(tmp_path / "out"))
    assert code == 1
    assert [item["source"] for item in report["inputs"]] == [str(good.resolve())]
    assert err.strip() == f"logsieve process: error: {fifo}: not a regular file"


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    import pty

    path = write(tmp_path / "a.jsonl", make_lines(1, valid=2000))
    main_fd, child_fd = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "logsieve.cli", "process", str(path), "-o", str(tmp_path / "o")],
            stderr=child_fd,
            stdout=subprocess.PIPE,
            timeout=120,
            check=False,
        )
    finally:
        os.close(child_fd)
    terminal = b""
    while True:
        try:
            data = os.read(main_fd, 65536)
        except OSError:
            break
        if not data:
            break
        terminal += data
    os.close(main_fd)
    assert proc.returncode == 0
    assert b"processing" in terminal  # the bar was drawn on the terminal (stderr) ...
    assert b"processing" not in proc.stdout  # ... and never mixed into the piped summary
    assert b"a.jsonl" in proc.stdout


# --- many inputs, copies, growth, reruns -------------------------------------------------------


def table_version(out: Path) -> int:
    return DeltaTable(str(out / "clean")).version()


def live_data_files(out: Path) -> list[str]:
    """The data files of the table's current snapshot (not the removed ones still on disk)."""
    return DeltaTable(str(out / "clean")).file_uris()


def non_blank(lines: list[bytes]) -> int:
    return sum(1 for line in lines if line.strip())


@pytest.fixture
def many_logs(tmp_path: Path) -> dict[str, list[bytes]]:
    """200 small files (about 20 lines each, some invalid, some blank), each its own first line."""
    files = {}
    for seed in range(1, 201):
        lines = make_lines(seed, valid=17)
        path = write(tmp_path / "many" / f"app-{seed:03d}.jsonl", lines)
        files[str(path.resolve())] = lines
    return files


def test_many_small_files_make_few_files_and_account_for_every_line(
    tmp_path: Path, many_logs, capsys
) -> None:
    out = tmp_path / "out"
    code, report, err = run_json(capsys, str(tmp_path / "many"), "--out", str(out))

    assert code == 0, err
    assert report["totals"]["inputs"] == len(many_logs) == 200
    assert len(live_data_files(out)) < 10  # committed in groups, not a file per input and date
    assert 0 < len(error_files(out)) < 10
    rows, errors = clean_rows(out), error_records(out)
    assert len(rows) + len(errors) == sum(non_blank(lines) for lines in many_logs.values())
    for path, lines in many_logs.items():
        assert sum(row["source"] == path for row in rows) == expected_counts(lines)["valid"]
    for record in errors:  # each error record is exactly its input line, even in a shared file
        assert raw_bytes(record) == many_logs[record["source"]][record["line"] - 1]


def test_renamed_or_copied_input_replaces_its_rows(tmp_path: Path, many_logs, capsys) -> None:
    out = tmp_path / "out"
    assert run_json(capsys, str(tmp_path / "many"), "--out", str(out))[0] == 0
    before = len(clean_rows(out))
    original = tmp_path / "many" / "app-007.jsonl"
    valid = expected_counts(many_logs[str(original.resolve())])["valid"]

    renamed = original.rename(tmp_path / "rotated.jsonl.1")  # same content, size and mtime
    code, report, _ = run_json(capsys, str(renamed), "--out", str(out))
    assert code == 0
    assert report["inputs"][0]["already_ingested"] is True
    assert len(clean_rows(out)) == before

    (tmp_path / "elsewhere").mkdir()
    copy = shutil.copy(renamed, tmp_path / "elsewhere" / "copy.log")  # a new mtime: a new version
    code, report, _ = run_json(capsys, str(copy), "--out", str(out))
    assert code == 0
    assert "already_ingested" not in report["inputs"][0]
    rows = clean_rows(out)
    assert len(rows) == before
    assert sum(row["source"] == str(Path(copy).resolve()) for row in rows) == valid
    assert not any(row["source"] == str(original.resolve()) for row in rows)


def test_a_file_that_grew_replaces_its_earlier_rows(tmp_path: Path, many_logs, capsys) -> None:
    out = tmp_path / "out"
    assert run_json(capsys, str(tmp_path / "many"), "--out", str(out))[0] == 0
    path = tmp_path / "many" / "app-042.jsonl"
    name = str(path.resolve())
    appended = [INVALID[0], VALID.format(day=22, hour=3, uid=1, act="login").encode()]
    with path.open("ab") as file:
        file.write(b"".join(line + b"\n" for line in appended))
    grown = many_logs[name] = many_logs[name] + appended

    code, report, err = run_json(capsys, str(path), "--out", str(out))

    assert code == 0, err
    (item,) = report["inputs"]
    assert {k: item[k] for k in ("processed", "valid", "errors")} == {
        k: expected_counts(grown)[k] for k in ("processed", "valid", "errors")
    }
    rows, errors = clean_rows(out), error_records(out)
    assert sum(row["source"] == name for row in rows) == expected_counts(grown)["valid"]
    mine = sorted(r["line"] for r in errors if r["source"] == name)
    assert mine == [i for i, line in enumerate(grown, 1) if line in INVALID]
    assert len(rows) + len(errors) == sum(non_blank(lines) for lines in many_logs.values())


def test_a_copy_named_with_its_original_is_stored_once_with_a_note(tmp_path: Path, capsys) -> None:
    lines = make_lines(9)
    a = write(tmp_path / "a.jsonl", lines)
    b = Path(shutil.copy(a, tmp_path / "b.jsonl"))
    out = tmp_path / "out"

    code, report, err = run_json(capsys, str(a), str(b), "--out", str(out))

    assert code == 0
    assert [item["source"] for item in report["inputs"]] == [str(a.resolve())]
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and str(b) in notes[0] and "same content" in notes[0]
    assert len(clean_rows(out)) == expected_counts(lines)["valid"]
    assert len(error_records(out)) == expected_counts(lines)["errors"]


def test_a_second_run_on_the_same_inputs_changes_nothing(tmp_path: Path, logs, capsys) -> None:
    out = tmp_path / "out"
    argv = [str(tmp_path / "logs"), "--out", str(out)]
    code, first, _ = run_json(capsys, *argv)
    assert code == 0
    version, files = table_version(out), sorted(live_data_files(out))

    code, second, err = run_json(capsys, *argv)

    assert (code, err) == (0, "")
    assert table_version(out) == version
    assert sorted(live_data_files(out)) == files
    assert sorted(item["source"] for item in second["inputs"]) == sorted(logs)
    assert all(item["already_ingested"] is True for item in second["inputs"])
    for name in ("processed", "valid", "errors", "blank"):
        assert second["totals"][name] == first["totals"][name]
    assert len(clean_rows(out)) == first["totals"]["valid"]


def test_a_file_name_that_is_not_utf8_is_processed(tmp_path: Path) -> None:
    """The name is kept with its bytes escaped, in the rows' lineage and the error records."""
    logs = tmp_path / "logs"
    logs.mkdir()
    name = os.fsencode(logs) + b"/bad\xff name.jsonl"
    lines = make_lines(7)
    with open(name, "wb") as file:
        file.write(b"".join(line + b"\n" for line in lines))
    out = tmp_path / "out"

    result = cli_subprocess(str(logs), "--out", str(out), "--json")

    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    expected = expected_counts(lines)
    rows, errors = clean_rows(out), error_records(out)
    assert len(rows) == expected["valid"] and len(errors) == expected["errors"]
    shown = os.fsdecode(name).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    assert {row["source"] for row in rows} == {r["source"] for r in errors} == {shown}
    assert "\\xff" in shown


def test_names_that_print_alike_keep_each_others_error_records(tmp_path: Path) -> None:
    """`bad\\xff.jsonl` spelled out and a name holding the byte 0xff both print as
    `bad\\xff.jsonl`; a new version of one must not take the other's error lines along."""
    logs = tmp_path / "logs"
    logs.mkdir()
    byte_name = os.fsencode(logs) + b"/bad\xff.jsonl"
    text_name = logs / "bad\\xff.jsonl"
    with open(byte_name, "wb") as file:
        file.write(b"".join(line + b"\n" for line in make_lines(7)))
    text_lines = lines_from(b"not json at all", 3, 5)
    text_name.write_bytes(b"".join(line + b"\n" for line in text_lines))
    out = tmp_path / "out"
    assert cli_subprocess(str(logs), "--out", str(out)).returncode == 0
    before = len(error_records(out))
    with open(byte_name, "ab") as file:  # a new version of the byte-named file
        file.write(b"still not json\n")

    result = cli_subprocess(str(logs), "--out", str(out))

    assert result.returncode == 0, result.stderr
    errors = error_records(out)
    assert len(errors) == before + 1
    text_errors = [r for r in errors if r.get("raw") == "not json at all"]
    assert len(text_errors) == 1  # the spelled-out name's invalid line is still there


def test_an_output_that_cannot_be_written_is_reported_once(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    for number in range(13):
        write(logs / f"f{number}.jsonl", make_lines(number))
    out = tmp_path / "out"
    out.mkdir()
    (out / "errors").write_text("a file where the error records' directory must go")

    result = cli_subprocess(str(logs), "--out", str(out))

    assert result.returncode == 2
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith("logsieve process: error: cannot create output directory")
    assert not (out / "clean").exists() or not clean_rows(out)


def lines_from(first: bytes, seed: int, count: int) -> list[bytes]:
    """A log that starts with `first` and goes on with its own valid lines."""
    rest = [
        b'{"timestamp":"2025-08-%02dT10:%02d:00Z","user_id":"s%d","action":"login"}'
        % (1 + n % 28, n % 60, seed)
        for n in range(count)
    ]
    return [first, *rest]


FIRST = b'{"timestamp":"2025-08-01T00:00:00Z","user_id":"boot","action":"start"}'


def test_files_sharing_a_first_line_keep_their_identities_across_runs(
    tmp_path: Path, capsys
) -> None:
    """The stored file keeps its identity when a bigger one with the same first line appears."""
    small, big = tmp_path / "in" / "y.log", tmp_path / "in" / "x.log"
    write(small, lines_from(FIRST, 1, 5))
    out = tmp_path / "out"
    code, first_run, _ = run_json(capsys, str(small), "--out", str(out))
    assert code == 0 and first_run["totals"]["valid"] == 6
    write(big, lines_from(FIRST, 2, 50))

    code, second_run, _ = run_json(capsys, str(small), str(big), "--out", str(out))

    assert code == 0
    by_input = {Path(i["input"]).name: i for i in second_run["inputs"]}
    assert by_input["y.log"].get("already_ingested") is True
    rows = clean_rows(out)
    assert sum(r["source"].endswith("y.log") for r in rows) == 6
    assert sum(r["source"].endswith("x.log") for r in rows) == 51


def test_a_partial_plain_copy_of_a_complete_gzip_is_skipped(tmp_path: Path, capsys) -> None:
    whole = lines_from(FIRST, 3, 400)
    write(tmp_path / "in" / "app.log", whole[:200])  # bigger on disk than the compressed whole
    write(tmp_path / "in" / "app.log.gz", whole, compress="gzip")
    assert (tmp_path / "in" / "app.log").stat().st_size > (
        tmp_path / "in" / "app.log.gz"
    ).stat().st_size

    code, _, err = run_json(capsys, str(tmp_path / "in"), "--out", str(tmp_path / "out"))

    assert code == 0
    assert "app.log: skipped: same content as" in err and "app.log.gz" in err
    assert len(clean_rows(tmp_path / "out")) == len(whole)


def test_logs_that_agree_in_their_first_16_kib_are_all_stored(tmp_path: Path, capsys) -> None:
    common = lines_from(FIRST, 4, 400)  # well over 16 KiB
    for number in range(3):
        write(tmp_path / "in" / f"host{number}.log", [*common, *lines_from(FIRST, 10 + number, 3)])

    code, report, _ = run_json(capsys, str(tmp_path / "in"), "--out", str(tmp_path / "out"))

    assert code == 0 and len(report["inputs"]) == 3
    assert len(clean_rows(tmp_path / "out")) == 3 * (len(common) + 4)
