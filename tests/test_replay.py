"""`logsieve replay`, `logsieve errors`, `logsieve redrive`: on real Delta tables, local
directories and a moto server, including a replay interrupted between its commit and its rewrite
of the error records."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from logsieve.cli import main
from logsieve.errors import OutputError
from logsieve.storage import table
from logsieve.storage.error_files import raw_bytes
from logsieve.storage.identity import FieldNames
from logsieve.storage.ingest import ingest
from logsieve.storage.replay import REPLAY_DIR, ReplayReport, Selection, replay, summarize

ARRIVAL = datetime(2025, 9, 2, 8, 0, tzinfo=timezone.utc)


@dataclass
class Log:
    """A log whose every line has a distinct user id, so each line is found in either output;
    what each line is under the standard field names and under `ts` comes from the input."""

    prefix: str = ""
    lines: list[bytes] = field(default_factory=list)
    #: user id -> (line number, what it is: "valid", "ts" (valid once ts is the timestamp
    #: field), or "bad" (invalid either way))
    kinds: dict[str, tuple[int, str]] = field(default_factory=dict)

    def add(self, kind: str, day: int = 20) -> None:
        number = len(self.lines) + 1
        uid = f"{self.prefix}u{number}"
        stamp = f"2025-08-{day:02d}T{number % 24:02d}:00:00Z"
        if kind == "valid":
            line = {"timestamp": stamp, "user_id": uid, "action": "login"}
        elif kind == "ts":
            line = {"ts": stamp, "user_id": uid, "action": "login", "n": number}
        else:  # an impossible date: fails under either field name
            line = {"ts": "2025-02-30T10:00:00Z", "user_id": uid, "action": "login"}
        self.lines.append(orjson.dumps(line))
        self.kinds[uid] = (number, kind)

    def add_garbage(self) -> None:
        self.lines.append(b"not json at all")

    @property
    def data(self) -> bytes:
        return b"\n".join(self.lines) + b"\n"

    def ids(self, *kinds: str) -> set[str]:
        return {uid for uid, (_, kind) in self.kinds.items() if kind in kinds}


def make_log(seed: int = 0, count: int = 24) -> Log:
    log = Log(prefix=f"s{seed}-")
    for i in range(count):
        log.add(("valid", "ts", "ts", "bad")[(i + seed) % 4], day=18 + (i + seed) % 3)
        if i % 9 == 4:
            log.add_garbage()
    return log


def rows(clean: str, s3: Any = None) -> list[dict[str, Any]]:
    snapshot = table.open_table(clean, s3)
    assert snapshot is not None
    return snapshot.to_pyarrow_table().to_pylist()


def version_of(clean: str, s3: Any = None) -> int:
    snapshot = table.open_table(clean, s3)
    assert snapshot is not None
    return snapshot.version()


def local_records(errors: Path) -> list[dict[str, Any]]:
    return [
        orjson.loads(line)
        for path in sorted(errors.glob("date=*/*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]


def local_error_files(errors: Path) -> dict[str, bytes]:
    return {str(p.relative_to(errors)): p.read_bytes() for p in sorted(errors.glob("date=*/*"))}


def user_of(record: dict[str, Any]) -> str | None:
    try:
        return str(orjson.loads(raw_bytes(record))["user_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def assert_exactly_once(logs: list[Log], table_rows: list[dict], records: list[dict]) -> None:
    """Every line of every log is in exactly one output: a row or an error record."""
    ids = [r["user_id"] for r in table_rows]
    assert len(ids) == len(set(ids)), "a line is stored twice in the table"
    recorded = [u for u in (user_of(r) for r in records) if u is not None]
    assert len(recorded) == len(set(recorded)), "a line has two error records"
    assert not set(ids) & set(recorded), "a line is both a row and an error record"
    expected = set().union(*(log.kinds for log in logs))
    assert set(ids) | set(recorded) == expected
    garbage = sum(1 for log in logs for line in log.lines if line == b"not json at all")
    assert sum(1 for r in records if user_of(r) is None) == garbage


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A directory `logsieve process` wrote one log into (with the standard field names)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.jsonl").write_bytes(make_log().data)
    directory = tmp_path / "out"
    assert main(["process", str(logs), "--out", str(directory), "--json", "--no-progress"]) == 0
    return directory


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- local ------------------------------------------------------------------------------------


def test_replay_moves_the_fixed_lines_into_the_table_with_their_lineage(
    out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = make_log()
    before = rows(str(out / "clean"))
    assert {r["user_id"] for r in before} == log.ids("valid")
    lineage = {(r["source_id"], r["source"], r["source_version"]) for r in before}
    assert len(lineage) == 1

    code, stdout, _ = cli(
        ["replay", str(out / "errors"), "--out", str(out), "--timestamp-field", "ts", "--json"],
        capsys,
    )
    assert code == 0
    report = orjson.loads(stdout)
    after = rows(str(out / "clean"))
    replayed = [r for r in after if r["user_id"] in log.ids("ts")]
    assert {r["user_id"] for r in replayed} == log.ids("ts")
    # Attributed to the original source and version: a new version of it replaces them too.
    assert {(r["source_id"], r["source"], r["source_version"]) for r in replayed} == lineage
    assert report["now_valid"] == len(log.ids("ts"))
    assert report["sources"][0]["valid_lines"] == sorted(log.kinds[u][0] for u in log.ids("ts"))
    # The extra members stay, as an ingest would have stored them.
    assert all(orjson.loads(r["extra"])["n"] == log.kinds[r["user_id"]][0] for r in replayed)
    records = local_records(out / "errors")
    assert_exactly_once([log], after, records)
    # What still fails has one record, with the reason under the new options.
    bad = [r for r in records if user_of(r) in log.ids("bad")]
    assert {r["error"] for r in bad} == {"invalid_timestamp"}
    assert all(r["detail"].startswith('ts "2025-02-30') for r in bad)
    assert report["still_invalid"] == len(bad) + sum(1 for r in records if user_of(r) is None)
    assert not list((out / "errors").glob(f"{REPLAY_DIR}/*"))


def test_a_second_replay_with_the_same_options_changes_nothing(out: Path) -> None:
    fields = FieldNames(timestamp="ts")
    first = replay(str(out / "errors"), str(out / "clean"), fields=fields)
    assert first.now_valid > 0 and first.table_version is not None
    files = local_error_files(out / "errors")
    version = version_of(str(out / "clean"))
    second = replay(str(out / "errors"), str(out / "clean"), fields=fields)
    assert second.now_valid == 0 and second.table_version is None
    assert second.reason_changed == 0 and second.files_rewritten == 0
    assert local_error_files(out / "errors") == files
    assert version_of(str(out / "clean")) == version


def test_selection_by_code_and_date_replays_only_those_records(out: Path) -> None:
    log = make_log()
    errors, clean = str(out / "errors"), str(out / "clean")
    (day,) = {p.name[len("date=") :] for p in (out / "errors").glob("date=*")}
    other = replay(
        errors,
        clean,
        fields=FieldNames(timestamp="ts"),
        selection=Selection(frozenset({"2020-01-01"})),
    )
    assert other.selected == 0 and version_of(clean) == 1
    only_json = replay(
        errors,
        clean,
        fields=FieldNames(timestamp="ts"),
        selection=Selection(codes=frozenset({"invalid_json"})),
    )
    garbage = log.lines.count(b"not json at all")
    assert only_json.selected == only_json.still_invalid == garbage and only_json.now_valid == 0
    chosen = replay(
        errors,
        clean,
        fields=FieldNames(timestamp="ts"),
        selection=Selection(frozenset({day}), frozenset({"missing_field"})),
    )
    assert chosen.selected == len(log.ids("ts", "bad")) and chosen.now_valid == len(log.ids("ts"))
    records = local_records(out / "errors")
    assert {r["error"] for r in records if user_of(r) in log.ids("bad")} == {"invalid_timestamp"}
    assert [r["error"] for r in records if user_of(r) is None] == ["invalid_json"] * garbage
    assert_exactly_once([log], rows(clean), records)


def test_a_new_version_of_the_source_replaces_the_replayed_rows(tmp_path: Path, out: Path) -> None:
    replay(str(out / "errors"), str(out / "clean"), fields=FieldNames(timestamp="ts"))
    grown = make_log()
    grown.add("valid", day=21)
    (tmp_path / "logs" / "app.jsonl").write_bytes(grown.data)
    assert main(["process", str(tmp_path / "logs"), "--out", str(out), "--json"]) == 0
    after = rows(str(out / "clean"))
    # The new version's ingest (standard names) holds the ts lines as error records again.
    assert {r["user_id"] for r in after} == grown.ids("valid")
    assert_exactly_once([grown], after, local_records(out / "errors"))


def test_replay_of_a_group_file_keeps_the_other_sources_lines(tmp_path: Path) -> None:
    logs_dir = tmp_path / "logs"
    logs_dir.mkdir()
    logs = [make_log(seed) for seed in range(3)]
    for seed, log in enumerate(logs):
        (logs_dir / f"app{seed}.jsonl").write_bytes(log.data)
    out = tmp_path / "out"
    assert main(["process", str(logs_dir), "--out", str(out), "--json"]) == 0
    (shared,) = (out / "errors").glob("date=*/group-*.jsonl")
    report = replay(
        str(out / "errors"),
        str(out / "clean"),
        fields=FieldNames(timestamp="ts"),
        selection=Selection(codes=frozenset({"missing_field"})),
    )
    assert report.now_valid == sum(len(log.ids("ts")) for log in logs)
    assert len(report.sources) == 3 and report.files_rewritten == 1
    after = rows(str(out / "clean"))
    by_source = {r["source"]: r["source_id"] for r in after}
    assert len(by_source) == 3  # each replayed row carries its own source's lineage
    for seed, log in enumerate(logs):
        mine = {r["user_id"] for r in after if r["source"].endswith(f"app{seed}.jsonl")}
        assert mine == log.ids("valid", "ts")
    assert_exactly_once(logs, after, local_records(out / "errors"))
    assert shared.exists()  # the garbage and impossible dates of every source stay in it


def test_raw_bytes_round_trip_through_a_replay(tmp_path: Path) -> None:
    """Lines are replayed from their exact bytes: a non-UTF-8 line keeps its raw_base64 record
    byte for byte, and a fixed line's other members reach `extra` exactly as written."""
    logs = tmp_path / "logs"
    logs.mkdir()
    fixed = (
        '{"ts":"2025-08-20T10:00:00+02:00","user_id":7,"action":"login","city":"Zürich","n":1.50}'
    )
    (logs / "app.jsonl").write_bytes(b"\xff\xfe not text\n" + fixed.encode() + b"\n")
    out = tmp_path / "out"
    assert main(["process", str(logs), "--out", str(out), "--json"]) == 0
    (path,) = (out / "errors").glob("date=*/*.jsonl")
    binary = path.read_bytes().splitlines(keepends=True)[0]
    assert b"raw_base64" in binary
    report = replay(str(out / "errors"), str(out / "clean"), fields=FieldNames(timestamp="ts"))
    assert report.now_valid == 1 and report.still_invalid == 1 and report.reason_changed == 0
    assert path.read_bytes() == binary
    (row,) = rows(str(out / "clean"))
    assert row["timestamp"] == "2025-08-20 08:00:00" and row["user_id"] == "7"
    assert row["extra"] == '{"city":"Zürich","n":1.50}'


@contextlib.contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """The directory refuses new entries and removals (chattr +i for root, who ignores modes)."""
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(directory)], capture_output=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot make a directory immutable here: {done.stderr.decode().strip()}")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
    else:
        mode = directory.stat().st_mode
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(mode)


def test_a_replay_interrupted_after_its_commit_is_finished_by_the_next(
    out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = make_log()
    errors, clean = out / "errors", str(out / "clean")
    (day_dir,) = errors.glob("date=*")
    files = local_error_files(errors)
    args = ["replay", str(errors), "--out", str(out), "--timestamp-field", "ts"]
    with unwritable(day_dir):
        code, _, err = cli(args, capsys)
    assert code == 2
    assert err.startswith("logsieve replay: error: cannot rewrite the error records")
    assert len(err.strip().splitlines()) == 1
    # The crash's state: the rows committed, the error files as they were, the intent kept.
    assert version_of(clean) == 2
    assert {r["user_id"] for r in rows(clean)} == log.ids("valid", "ts")
    assert local_error_files(errors) == files
    assert len(list(errors.glob(f"{REPLAY_DIR}/*.json"))) == 1
    assert summarize(str(errors)).pending_replays == 1
    code, stdout, _ = cli(["errors", str(errors)], capsys)
    assert code == 0 and "1 replay(s) not finished" in stdout

    # Run again with other options (a narrower selection, so another replay version): without
    # the intent it would commit the same lines again.
    code, stdout, _ = cli([*args, "--code", "missing_field", "--json"], capsys)
    assert code == 0
    report = orjson.loads(stdout)
    assert report["finished_earlier"] == 1 and report["now_valid"] == 0
    assert version_of(clean) == 2
    assert_exactly_once([log], rows(clean), local_records(errors))
    assert not list(errors.glob(f"{REPLAY_DIR}/*.json"))


def test_concurrent_replays_commit_each_line_once(out: Path) -> None:
    log = make_log()
    errors, clean = str(out / "errors"), str(out / "clean")
    reports: list[ReplayReport] = []
    failures: list[BaseException] = []
    options = [Selection(), Selection(codes=frozenset({"missing_field"}))] * 2

    def run(selection: Selection) -> None:
        try:
            reports.append(
                replay(errors, clean, fields=FieldNames(timestamp="ts"), selection=selection)
            )
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(option,)) for option in options]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert sum(r.now_valid for r in reports) == len(log.ids("ts"))
    assert sum(1 for r in reports if r.table_version is not None) == 1
    assert_exactly_once([log], rows(clean), local_records(out / "errors"))


def test_errors_summarises_by_code_date_and_source(
    out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = make_log()
    code, stdout, _ = cli(["errors", str(out / "errors"), "--json"], capsys)
    assert code == 0
    summary = orjson.loads(stdout)
    garbage = sum(1 for line in log.lines if line == b"not json at all")
    assert summary["by_code"] == {
        "missing_field": len(log.ids("ts", "bad")),
        "invalid_json": garbage,
    }
    assert summary["records"] == len(log.ids("ts", "bad")) + garbage
    (source,) = summary["by_source"]
    assert source.endswith("app.jsonl")
    assert list(summary["by_date"].values()) == [summary["records"]]
    assert summary["samples"][0]["line"] == min(log.kinds[u][0] for u in log.ids("ts", "bad"))
    code, stdout, _ = cli(["errors", str(out / "errors"), "--date", "2020-01-01"], capsys)
    assert code == 0 and "0 error records in 0 files" in stdout
    code, stdout, _ = cli(["errors", str(out / "errors")], capsys)
    assert "missing_field" in stdout and "samples:" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "{tmp}/nowhere", "--out", "{out}"], "{tmp}/nowhere: no such directory"),
        (["errors", "{out}"], "{out} holds no error records: did you mean {out}/errors?"),
        (["errors", "{out}/clean"], "{out}/clean is a Delta table (clean rows), not error records"),
        (["errors", "{tmp}/logs"], "{tmp}/logs is not an error-records location"),
        (
            ["errors", "{out}/errors", "--date", "2025-8-20"],
            "--date '2025-8-20': expected YYYY-MM-DD",
        ),
        (
            ["errors", "{out}/errors", "--date", "2025-02-30"],
            "--date '2025-02-30' is not a real date",
        ),
        (
            ["replay", "{out}/errors", "--out", "{out}", "--code", "typo"],
            "--code 'typo' is not an error code",
        ),
        (["replay", "{out}/errors", "--out", "{tmp}"], "no clean table at {tmp}/clean"),
        (["replay", "s3://", "--out", "{out}"], "'s3://' names no bucket"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    out: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = str(out.parent)
    code, _, err = cli([a.format(tmp=tmp, out=out) for a in args], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    command = args[0]
    assert err.startswith(f"logsieve {command}: error: {message.format(tmp=tmp, out=out)}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["replay", "{out}/errors", "--clean", "{tmp}/nowhere"],
            "--clean {tmp}/nowhere: no clean table at {tmp}/nowhere",
        ),
        (
            ["replay", "{out}/errors", "--out", "{tmp}"],
            "no clean table at {tmp}/clean: --out names the directory `logsieve process` wrote",
        ),
        (["errors", ""], "an error-records location is required"),
        (["replay", "", "--out", "{out}"], "an error-records location is required"),
    ],
)
def test_refusals_name_what_was_given(
    out: Path, args: list[str], message: str, refused: Any
) -> None:
    tmp = str(out.parent)
    line = refused(*(a.format(tmp=tmp, out=out) for a in args))
    assert line.startswith(f"logsieve {args[0]}: error: " + message.format(tmp=tmp, out=out))
    if "--clean" in args:
        assert "--out" not in line


def test_out_and_clean_together_are_a_usage_error(out: Path, run_cli: Any) -> None:
    clean = str(out / "clean")
    before = version_of(clean)
    done = run_cli("replay", str(out / "errors"), "--out", str(out), "--clean", clean)
    assert done.returncode == 2
    assert "argument --clean: not allowed with argument --out/-o" in done.stderr
    assert version_of(clean) == before  # nothing replayed


def test_one_line_now_valid_is_said_in_the_singular(tmp_path: Path, run_cli: Any) -> None:
    (tmp_path / "logs").mkdir()
    for name, kinds in (("one", ["valid", "ts", "ts"]), ("two", ["valid", "ts"])):
        log = Log(prefix=name)
        for kind in kinds:
            log.add(kind)
        (tmp_path / "logs" / f"{name}.jsonl").write_bytes(log.data)
    out = tmp_path / "out"
    assert run_cli("process", str(tmp_path / "logs"), "--out", str(out), "-q").returncode == 0
    done = run_cli("replay", str(out / "errors"), "--out", str(out), "--timestamp-field", "ts")
    assert done.returncode == 0, done.stderr
    assert f"{tmp_path / 'logs' / 'one.jsonl'}: 2 now valid (lines 2-3), 0 still" in done.stdout
    assert f"{tmp_path / 'logs' / 'two.jsonl'}: 1 now valid (line 2), 0 still" in done.stdout


# --- S3 (a moto server) -----------------------------------------------------------------------


@pytest.fixture
def s3(moto_endpoint: str) -> Any:
    import boto3

    client = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint)
    for bucket in ("clean-bucket", "error-bucket"):
        client.create_bucket(Bucket=bucket)
    return client


S3_CLEAN, S3_ERRORS = "s3://clean-bucket/clean", "s3://error-bucket/errors"


def s3_records(client: Any) -> list[dict[str, Any]]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket="error-bucket")
    keys = sorted(o["Key"] for p in pages for o in p.get("Contents", []) if "/date=" in o["Key"])
    return [
        orjson.loads(line)
        for key in keys
        for line in client.get_object(Bucket="error-bucket", Key=key)["Body"].read().splitlines()
    ]


def ingest_s3(client: Any, logs: list[Log]) -> None:
    for number, log in enumerate(logs):
        ingest(
            io.BytesIO(log.data),
            source=f"s3://input/app{number}.jsonl",
            source_version=f"etag-{number}",
            clean_uri=S3_CLEAN,
            error_uri=S3_ERRORS,
            arrival=ARRIVAL,
            s3_client=client,
        )


def test_s3_replay_errors_and_a_second_replay(s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    logs = [make_log(seed) for seed in range(2)]
    ingest_s3(s3, logs)
    code, stdout, _ = cli(["errors", S3_ERRORS, "--json"], capsys)
    assert code == 0
    assert orjson.loads(stdout)["by_source"] == {
        f"s3://input/app{n}.jsonl": len(log.ids("ts", "bad")) + log.lines.count(b"not json at all")
        for n, log in enumerate(logs)
    }
    args = ["replay", S3_ERRORS, "--out", "s3://clean-bucket", "--timestamp-field", "ts", "--json"]
    code, stdout, _ = cli(args, capsys)
    assert code == 0
    assert orjson.loads(stdout)["now_valid"] == sum(len(log.ids("ts")) for log in logs)
    after = rows(S3_CLEAN, s3)
    assert {r["source_id"] for r in after} == {"s3://input/app0.jsonl", "s3://input/app1.jsonl"}
    assert_exactly_once(logs, after, s3_records(s3))
    version, records = version_of(S3_CLEAN, s3), s3_records(s3)
    code, stdout, _ = cli(args, capsys)
    assert code == 0 and orjson.loads(stdout)["now_valid"] == 0
    assert version_of(S3_CLEAN, s3) == version and s3_records(s3) == records
    # A redelivery of a replayed object is still recognised as stored, and keeps the rows.
    again = ingest(
        io.BytesIO(logs[0].data),
        source="s3://input/app0.jsonl",
        source_version="etag-0",
        clean_uri=S3_CLEAN,
        error_uri=S3_ERRORS,
        s3_client=s3,
    )
    assert again.already_ingested and version_of(S3_CLEAN, s3) == version


def test_s3_locations_are_shown_as_s3_uris(s3: Any, run_cli: Any) -> None:
    """`errors` and `replay` name S3 locations and files as s3://bucket/key, not a bare key."""
    ingest_s3(s3, [make_log()])
    summary = run_cli("errors", S3_ERRORS)
    assert summary.returncode == 0, summary.stderr
    assert summary.stdout.splitlines()[0] == f"logsieve errors: {S3_ERRORS} (all dates)"
    assert "    s3://input/app0.jsonl:" in summary.stdout
    answer = orjson.loads(run_cli("errors", S3_ERRORS, "--json").stdout)
    assert answer["location"] == S3_ERRORS
    assert all(s["file"].startswith(f"{S3_ERRORS}/date=") for s in answer["samples"])
    done = run_cli("replay", S3_ERRORS, "--clean", S3_CLEAN, "--timestamp-field", "ts")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"logsieve replay: {S3_ERRORS} -> {S3_CLEAN}"
    again = run_cli("replay", S3_ERRORS, "--clean", S3_CLEAN, "--json")
    assert orjson.loads(again.stdout)["errors"] == S3_ERRORS


def test_s3_concurrent_replays_commit_each_line_once(s3: Any) -> None:
    logs = [make_log(seed) for seed in range(2)]
    ingest_s3(s3, logs)
    failures: list[BaseException] = []
    reports: list[ReplayReport] = []

    def run() -> None:
        try:
            reports.append(
                replay(S3_ERRORS, S3_CLEAN, fields=FieldNames(timestamp="ts"), s3_client=s3)
            )
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert sum(r.now_valid for r in reports) == sum(len(log.ids("ts")) for log in logs)
    assert_exactly_once(logs, rows(S3_CLEAN, s3), s3_records(s3))


def test_s3_a_replay_interrupted_after_its_commit_is_finished_by_the_next(s3: Any) -> None:
    """The error bucket refuses the rewrite (botocore refuses the PutObject of error files): the
    rows are committed, the intent stays; the next replay finishes it, committing nothing again."""
    logs = [make_log(seed) for seed in range(2)]
    ingest_s3(s3, logs)
    records = s3_records(s3)

    def refuse(params: dict[str, Any], **kwargs: Any) -> None:
        if params.get("Bucket") == "error-bucket" and "/date=" in params.get("Key", ""):
            raise RuntimeError("simulated: the error bucket went away")

    s3.meta.events.register("provide-client-params.s3.PutObject", refuse)
    try:
        with pytest.raises(OutputError, match="the rows are committed"):
            replay(S3_ERRORS, S3_CLEAN, fields=FieldNames(timestamp="ts"), s3_client=s3)
    finally:
        s3.meta.events.unregister("provide-client-params.s3.PutObject", refuse)
    version = version_of(S3_CLEAN, s3)
    assert s3_records(s3) == records  # both outputs hold the replayed lines until the next run
    assert {r["user_id"] for r in rows(S3_CLEAN, s3)} == set().union(
        *(log.ids("valid", "ts") for log in logs)
    )
    assert summarize(S3_ERRORS, s3_client=s3).pending_replays == 1
    again = replay(
        S3_ERRORS,
        S3_CLEAN,
        fields=FieldNames(timestamp="ts"),
        selection=Selection(codes=frozenset({"missing_field"})),
        s3_client=s3,
    )
    assert again.finished_earlier == 1 and again.now_valid == 0
    assert version_of(S3_CLEAN, s3) == version
    assert_exactly_once(logs, rows(S3_CLEAN, s3), s3_records(s3))
    assert summarize(S3_ERRORS, s3_client=s3).pending_replays == 0


def test_s3_records_of_a_replaced_version_are_not_replayed(s3: Any) -> None:
    """A version whose run could not remove its predecessor's error file leaves that file behind:
    its lines belong to rows that are gone, so a replay skips them instead of reviving them."""
    old, new = make_log(0), make_log(1)
    ingest_s3(s3, [old])

    def refuse(**kwargs: Any) -> None:
        raise RuntimeError("simulated outage")

    s3.meta.events.register("before-call.s3.DeleteObjects", refuse)
    try:
        ingest(
            io.BytesIO(new.data),
            source="s3://input/app0.jsonl",
            source_version="etag-new",
            clean_uri=S3_CLEAN,
            error_uri=S3_ERRORS,
            arrival=ARRIVAL,
            s3_client=s3,
        )
    finally:
        s3.meta.events.unregister("before-call.s3.DeleteObjects", refuse)
    leftover = len(old.ids("ts", "bad")) + old.lines.count(b"not json at all")
    assert len([r for r in s3_records(s3) if user_of(r) in old.kinds]) == len(old.ids("ts", "bad"))
    report = replay(S3_ERRORS, S3_CLEAN, fields=FieldNames(timestamp="ts"), s3_client=s3)
    assert report.skipped == {"not the stored version of its source": leftover}
    assert report.now_valid == len(new.ids("ts"))
    after = rows(S3_CLEAN, s3)
    assert {r["source_version"] for r in after} == {"etag-new"}
    assert {r["user_id"] for r in after} == new.ids("valid", "ts")


def test_s3_missing_bucket_is_one_line(
    moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(["errors", "s3://no-such-bucket/errors"], capsys)
    assert code == 2
    assert err.strip() == (
        "logsieve errors: error: cannot read s3://no-such-bucket/errors: NoSuchBucket: "
        "The specified bucket does not exist"
    )


# --- redrive ----------------------------------------------------------------------------------


def test_redrive_moves_the_dead_letters_back_to_the_work_queue(
    aws_stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    clients, resources = aws_stack
    sqs = clients.sqs
    bodies = [orjson.dumps({"n": n}).decode() for n in range(13)]
    for body in bodies:
        sqs.send_message(
            QueueUrl=resources.dead_letter_queue_url,
            MessageBody=body,
            MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}},
        )
    code, stdout, _ = cli(["redrive", "--json", "--max", "4"], capsys)
    assert code == 0 and orjson.loads(stdout)["moved"] == 4
    code, stdout, _ = cli(["redrive", "--json"], capsys)
    assert code == 0
    result = orjson.loads(stdout)
    # moto 5.2.5 has no StartMessageMoveTask: the fallback moved the rest.
    assert result["moved"] == 9 and result["method"] == "receive-send-delete"
    assert result["destination"] == resources.queue_url
    moved: list[dict[str, Any]] = []
    while reply := sqs.receive_message(
        QueueUrl=resources.queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages"):
        moved.extend(reply)
        for message in reply:
            sqs.delete_message(QueueUrl=resources.queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert sorted(m["Body"] for m in moved) == sorted(bodies)
    assert {m["MessageAttributes"]["kind"]["StringValue"] for m in moved} == {"test"}
    left = sqs.get_queue_attributes(
        QueueUrl=resources.dead_letter_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]["ApproximateNumberOfMessages"]
    assert left == "0"
    code, stdout, _ = cli(["redrive"], capsys)
    assert code == 0 and stdout.startswith("logsieve redrive: 0 message(s) moved")


def test_redrive_of_an_unknown_queue_is_one_line(
    aws_stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(["redrive", "--dlq", "no-such-queue"], capsys)
    assert code == 2
    assert err.strip() == "logsieve redrive: error: no queue named 'no-such-queue' at this endpoint"
    code, _, err = cli(["redrive", "--method", "task"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("to", ["name", "url"])
def test_redrive_into_the_dead_letter_queue_itself_is_refused(
    aws_stack: Any, run_cli: Any, to: str
) -> None:
    clients, resources = aws_stack
    for n in range(3):
        clients.sqs.send_message(QueueUrl=resources.dead_letter_queue_url, MessageBody=str(n))
    target = "logsieve-work-dlq" if to == "name" else resources.dead_letter_queue_url
    proc = run_cli("redrive", "--dlq", "logsieve-work-dlq", "--to", target, timeout=60)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("logsieve redrive: error: the dead-letter queue and the destination")
    assert proc.stdout == ""
    left = clients.sqs.get_queue_attributes(
        QueueUrl=resources.dead_letter_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]["ApproximateNumberOfMessages"]
    assert left == "3"  # nothing moved, nothing lost


def test_redrive_ends_though_the_messages_fail_again_meanwhile(aws_stack: Any) -> None:
    """Each message the redrive sends fails at once and is dead-lettered again (by SQS's own
    redrive policy, during the redrive): it still moves each message once, then stops."""
    from logsieve.aws.redrive import redrive

    clients, resources = aws_stack
    sqs = clients.sqs
    for n in range(5):
        sqs.send_message(QueueUrl=resources.dead_letter_queue_url, MessageBody=str(n))
    sends = 0

    def fail_again(**_: Any) -> None:
        nonlocal sends
        sends += 1
        if sends > 40:  # without a bound the redrive would go on for ever: let it end
            return
        for _attempt in range(6):  # receive past maxReceiveCount: SQS dead-letters them
            sqs.receive_message(
                QueueUrl=resources.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
            )

    sqs.meta.events.register("after-call.sqs.SendMessageBatch", fail_again)
    try:
        result = redrive(sqs, resources.dead_letter_queue_url, method="receive")
    finally:
        sqs.meta.events.unregister("after-call.sqs.SendMessageBatch", fail_again)
    assert result.moved == 5 and sends == 1
    left = sqs.get_queue_attributes(
        QueueUrl=resources.dead_letter_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]["ApproximateNumberOfMessages"]
    assert left == "5"  # back in the DLQ, visible, for a redrive once the cause is fixed


def test_fifo_redrive_sends_a_new_deduplication_id_and_keeps_the_group(fresh_moto: str) -> None:
    """SQS drops a FIFO send repeating a recent deduplication id but reports it sent: with the
    original id the redriven message would be deleted from the DLQ and reach nothing."""
    import boto3

    from logsieve.aws.redrive import redrive

    sqs = boto3.client("sqs", endpoint_url=fresh_moto, region_name="us-east-1")
    fifo = {"FifoQueue": "true"}
    work = sqs.create_queue(QueueName="work.fifo", Attributes=fifo)["QueueUrl"]
    dlq = sqs.create_queue(QueueName="work-dlq.fifo", Attributes=fifo)["QueueUrl"]
    # The original send is recent (within SQS's 5-minute deduplication window).
    sqs.send_message(
        QueueUrl=work, MessageBody="first", MessageGroupId="g1", MessageDeduplicationId="d1"
    )
    sqs.send_message(
        QueueUrl=dlq, MessageBody="dead", MessageGroupId="g1", MessageDeduplicationId="d1"
    )
    result = redrive(sqs, dlq, work, method="receive")
    assert result.moved == 1
    received = sqs.receive_message(
        QueueUrl=work,
        MaxNumberOfMessages=10,
        MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
    )["Messages"]
    received += sqs.receive_message(
        QueueUrl=work,
        MaxNumberOfMessages=10,
        MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
    ).get("Messages", [])
    by_body = {m["Body"]: m["Attributes"] for m in received}
    assert set(by_body) == {"first", "dead"}  # the redriven message arrived
    assert by_body["dead"]["MessageGroupId"] == "g1"
    assert by_body["dead"]["MessageDeduplicationId"].startswith("d1-redrive-")
    assert len(by_body["dead"]["MessageDeduplicationId"]) <= 128


def test_a_new_version_read_before_a_replay_cannot_commit_over_it(out: Path) -> None:
    """A new version's writer that read the table before a replay committed conflicts (and
    retries on the replayed table) instead of replacing the source's rows while the replayed ones
    stay beside its new ones."""
    from deltalake import CommitProperties, Transaction, write_deltalake
    from deltalake.exceptions import CommitFailedError

    clean = str(out / "clean")
    before = table.open_table(clean)  # what a new version's ingest had read
    assert before is not None
    replay(str(out / "errors"), clean, fields=FieldNames(timestamp="ts"))
    (identity,) = {r["source_id"] for r in rows(clean)}
    new_rows = before.to_pyarrow_table()
    with pytest.raises(CommitFailedError):
        write_deltalake(
            before,
            new_rows,
            mode="overwrite",
            predicate=f"source_id = '{identity}'",
            partition_by=["date"],
            commit_properties=CommitProperties(
                app_transactions=[Transaction(table.app_id(identity), 12345)],
                max_commit_retries=5,
            ),
        )


# --- which table the records belong to ----------------------------------------------------------


def test_records_are_replayed_only_into_the_table_they_were_written_with(
    out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same log processed into two folders: replaying the first folder's records into the
    second table would make rows there of lines whose records are in the second folder too,
    and take them out of the first folder, where no row has them."""
    second = tmp_path / "out2"
    assert (
        main(["process", str(tmp_path / "logs"), "--out", str(second), "--no-progress", "-q"]) == 0
    )
    before = (version_of(str(second / "clean")), local_error_files(out / "errors"))

    code, _, err = cli(
        ["replay", str(out / "errors"), "--out", str(second), "--timestamp-field", "ts"], capsys
    )

    assert code == 2
    (line,) = err.strip().splitlines()
    assert "were written with the table at" in line and str(out / "clean") in line
    assert (version_of(str(second / "clean")), local_error_files(out / "errors")) == before


def test_records_without_a_mark_go_only_into_the_table_beside_them(
    out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Error records of an older logsieve do not say which table they belong to: only the
    table beside them (DIR/clean for DIR/errors) is taken for theirs."""
    from logsieve.storage.ledgers import TABLE_MARK

    (out / "errors" / TABLE_MARK).unlink()
    other = tmp_path / "other"
    assert (
        main(["process", str(tmp_path / "logs"), "--out", str(other), "--no-progress", "-q"]) == 0
    )
    code, _, err = cli(
        ["replay", str(out / "errors"), "--clean", str(other / "clean"), "--timestamp-field", "ts"],
        capsys,
    )
    assert code == 2 and "do not say which table" in err
    before = len(rows(str(out / "clean")))
    code, _, _ = cli(
        ["replay", str(out / "errors"), "--out", str(out), "--timestamp-field", "ts"], capsys
    )
    assert code == 0
    assert len(rows(str(out / "clean"))) == before + len(make_log().ids("ts"))
