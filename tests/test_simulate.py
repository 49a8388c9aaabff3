"""`logsieve simulate` end to end: the report, the metrics, the alerts, the DLQ, the local copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from logsieve.cli import main
from logsieve.sim.samples import sample_objects


def _expected_from_samples(report: dict[str, Any]) -> dict[str, Any]:
    """What the samples the run uploaded (for the run's own "today") must produce."""
    bucket = report["resources"]["input_bucket"]
    today = date.fromisoformat(report["today"])
    samples = sample_objects(today)
    ok = [s for s in samples if not s.always_fails]
    return {
        "ok": {f"s3://{bucket}/{s.key}": s.expected() for s in ok},
        "failing": [f"s3://{bucket}/{s.key}" for s in samples if s.always_fails],
        "rows": sum(s.expected()["valid"] for s in ok),
        "logins_today": sum(len(s.logins_on(today)) for s in ok),
        "processed": sum(s.expected()["processed"] for s in ok),
        "invalid": sum(s.expected()["errors"] for s in ok),
        "high_error_rate": [
            f"s3://{bucket}/{s.key}"
            for s in ok
            if s.expected()["processed"]
            and s.expected()["errors"] / s.expected()["processed"] > 0.1
        ],
    }


def simulate_command(*argv: str) -> subprocess.CompletedProcess[str]:
    """`logsieve simulate` in a fresh process, as a user runs it.

    Not in this process: moto's server keeps its state in moto's process-wide backends, which
    other tests' moto servers share, and the demo must start from an empty S3.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    return subprocess.run(
        [sys.executable, "-m", "logsieve.cli", "simulate", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def copied_table(out: Path) -> DeltaTable:
    assert DeltaTable.is_deltatable(str(out)), f"no Delta table at {out}"
    return DeltaTable(str(out))


@pytest.fixture(scope="module")
def json_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    demo = tmp_path_factory.mktemp("simulate") / "demo"
    done = simulate_command("--json", "--out", str(demo))
    assert done.returncode == 0, done.stderr + done.stdout[-2000:]
    report = json.loads(done.stdout)
    return report, demo / "clean"


def test_every_object_ends_as_the_samples_say(json_run: tuple[dict[str, Any], Path]) -> None:
    report, _ = json_run
    expected = _expected_from_samples(report)
    assert report["unexpected"] == []
    results = {entry["object"]: entry for entry in report["objects"]}
    for uri, counts in expected["ok"].items():
        result = results[uri]["result"]
        assert {k: result[k] for k in counts} == counts, uri
    (failing,) = expected["failing"]
    assert results[failing]["result"] is None
    assert [a["receive"] for a in results[failing]["attempts"]] == [1, 2, 3]
    assert [d["objects"] for d in report["dead_letters"]] == [[failing]]
    assert report["dead_letters"][0]["receives"] == report["resources"]["max_receive_count"]


def test_metrics_and_alerts(json_run: tuple[dict[str, Any], Path]) -> None:
    report, _ = json_run
    bucket = report["resources"]["input_bucket"]
    expected = _expected_from_samples(report)
    series = [(m["name"], sorted(m["dimensions"].items())) for m in report["metrics"]["values"]]
    assert len(series) == len({repr(s) for s in series})  # each metric series once
    totals = {
        m["name"]: m["sum"]
        for m in report["metrics"]["values"]
        if m["dimensions"] == {"Bucket": bucket}
    }
    assert totals["RecordsProcessed"] == expected["processed"]
    assert totals["RecordsValid"] == expected["rows"]
    assert totals["RecordsInvalid"] == expected["invalid"]
    assert totals["ObjectsFailed"] == len(expected["failing"])

    kinds = sorted(
        (a["attributes"]["alert_type"], a["attributes"]["object"]) for a in report["alerts"]
    )
    wanted = [("high_error_rate", uri) for uri in expected["high_error_rate"]]
    wanted += [("object_failed", uri) for uri in expected["failing"]]
    assert kinds == sorted(wanted)


def test_clean_dataset_copied_for_the_api(json_run: tuple[dict[str, Any], Path]) -> None:
    report, out = json_run
    expected = _expected_from_samples(report)
    copy = copied_table(out)
    files = sorted(str(Path(f).relative_to(out)) for f in copy.file_uris())
    assert files == sorted(report["clean_copy"]["files"])
    assert files and all(f.startswith("date=") for f in files)
    rows = copy.to_pyarrow_table()
    assert rows.num_rows == expected["rows"] == report["clean_copy"]["rows"]
    today = report["today"]
    logins = sum(
        action == "login" and day == today
        for action, day in zip(rows["action"].to_pylist(), rows["date"].to_pylist())
    )
    assert logins == report["clean_copy"]["logins_today"] == expected["logins_today"]
    # Each object's rows, per date, are what its Lambda result said it committed.
    held = Counter(zip(rows["source"].to_pylist(), rows["date"].to_pylist()))
    reported = {
        (entry["object"], day): count
        for entry in report["objects"]
        for day, count in entry.get("rows_by_date", {}).items()
    }
    assert dict(held) == reported
    # In S3 the clean data is a Delta table too: data files under date=, and its log.
    written = report["keys_written"]["clean"]
    assert any("/_delta_log/" in k for k in written)
    assert any("/date=" in k and k.endswith(".parquet") for k in written)


def test_text_report_and_rerun_without_duplicates(json_run: tuple[dict[str, Any], Path]) -> None:
    report, out = json_run
    before = copied_table(out)
    sort = [("source", "ascending"), ("timestamp", "ascending"), ("user_id", "ascending")]
    rows_before = before.to_pyarrow_table().sort_by(sort)

    done = simulate_command("--out", str(out.parent))
    assert done.returncode == 0, done.stderr
    text = done.stdout

    expected = _expected_from_samples(report)
    for uri, counts in expected["ok"].items():
        core = {name: counts[name] for name in ("processed", "valid", "errors")}
        line = f"Lambda result: {core}"
        assert f"  {uri}\n    {line}" in text
    assert "CloudWatch metrics" in text and "RecordsInvalid" in text
    assert "SNS alerts received (2)" in text
    assert f"Dead-letter queue (1 message)\n  {expected['failing'][0]} (received 3 times)" in text
    # The second run replaced the first copy in one commit: the same rows, once.
    after = copied_table(out)
    assert after.version() == before.version() + 1
    rows_after = after.to_pyarrow_table().sort_by(sort)
    assert rows_after.num_rows == expected["rows"]
    assert rows_after.equals(rows_before)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--visibility-timeout", "-1"], "SQS accepts 0 to 43200 seconds"),
        (["--visibility-timeout", "43201"], "SQS accepts 0 to 43200 seconds"),
        (["--bulk-records", "-5"], "--bulk-records must not be negative"),
        (["--out", "{file}"], "cannot create the directory"),
        (["--out", "{file}/below"], "cannot create the directory"),
    ],
)
def test_bad_option_is_a_one_line_error_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a directory")
    argv = [arg.format(file=in_the_way) for arg in args]
    assert main(["simulate", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # refused before the demo ran: no report
    assert err.startswith("logsieve simulate: error: ") and err.count("\n") == 1
    assert message in err
    assert in_the_way.read_text() == "not a directory"


def test_error_records_copied_as_process_lays_them_out(
    json_run: tuple[dict[str, Any], Path],
) -> None:
    report, clean = json_run
    demo = clean.parent
    expected = _expected_from_samples(report)
    copy = report["errors_copy"]
    assert Path(copy["directory"]) == (demo / "errors").absolute()
    files = sorted(str(p.relative_to(demo / "errors")) for p in (demo / "errors").rglob("*.jsonl"))
    assert files == copy["files"] and files
    assert all(f.startswith(f"date={report['today']}/") for f in files)
    records = [
        json.loads(line)
        for f in files
        for line in (demo / "errors" / f).read_text(encoding="utf-8").splitlines()
    ]
    assert len(records) == expected["invalid"]  # every invalid line of every object, once
    assert {r["source"] for r in records} == {
        uri for uri, counts in expected["ok"].items() if counts["errors"]
    }
    assert (demo / ".logsieve-demo").is_file()
    assert sorted(p.name for p in demo.iterdir()) == [".logsieve-demo", "clean", "errors"]


def test_a_users_data_folder_is_never_used_for_the_demo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    log = tmp_path / "app.jsonl"
    log.write_text('{"timestamp": "2025-08-20T10:00:00Z", "user_id": 1, "action": "login"}\n')
    assert main(["process", str(log), "--out", str(data), "-q"]) == 0
    before = sorted(str(p.relative_to(data)) for p in data.rglob("*"))

    assert main(["simulate", "--out", str(data)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"logsieve simulate: error: --out {data}: the directory holds files `logsieve simulate` "
        "did not write; the demo replaces DIR/clean and DIR/errors, so it only uses a new or "
        "empty directory, or an earlier demo's (default: logsieve-demo)\n"
    )
    assert sorted(str(p.relative_to(data)) for p in data.rglob("*")) == before


def test_the_demo_folder_is_its_own_by_default() -> None:
    from logsieve.cli import build_parser

    args = build_parser().parse_args(["simulate"])
    assert args.out == "logsieve-demo"
    process = build_parser().parse_args(["process", "x.jsonl"])
    assert process.out != args.out  # the demo never lands in `process`'s default folder


def test_quiet_demo_prints_nothing(tmp_path: Path) -> None:
    done = simulate_command("-q", "--out", str(tmp_path / "demo"))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert copied_table(tmp_path / "demo" / "clean").to_pyarrow_table().num_rows > 0
