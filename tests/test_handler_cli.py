"""`logsieve invoke` and `logsieve validate` as a user runs them: a fresh process against the
test session's real moto server, checked against what S3 and the clean table then hold."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from logsieve.aws.clients import Clients
from logsieve.sim.infra import Resources
from logsieve.storage.table import open_table

LINES = (
    b'{"timestamp": "2025-08-20T10:00:00Z", "user_id": "u1", "action": "login"}\n'
    b'{"timestamp": "2025-08-21T10:00:00Z", "user_id": 7, "action": "logout"}\n'
    b"\n"
    b"not json\n"
)


def logsieve(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logsieve.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env if env is not None else dict(os.environ),
    )


def s3_event(bucket: str, key: str) -> dict[str, Any]:
    """A direct S3 notification, as S3 sends it to a Lambda (the key URL-encoded)."""
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": key.replace(" ", "+")}},
            }
        ]
    }


def dead_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
def stack(aws_stack: tuple[Clients, Resources]) -> tuple[Clients, Resources]:
    return aws_stack


def test_invoke_runs_the_handler_on_an_event_file(
    stack: tuple[Clients, Resources], tmp_path: Path
) -> None:
    clients, res = stack
    bucket = res.names.input_bucket
    clients.s3.put_object(Bucket=bucket, Key="web/app 1.jsonl", Body=LINES)
    event = tmp_path / "event.json"
    event.write_text(json.dumps(s3_event(bucket, "web/app 1.jsonl")))

    done = logsieve("invoke", str(event), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    response = report["response"]
    assert {k: response[k] for k in ("processed", "valid", "errors", "blank")} == {
        "processed": 3,
        "valid": 2,
        "errors": 1,
        "blank": 1,
    }
    assert report["failed"] == [] and report["endpoint"] == os.environ["AWS_ENDPOINT_URL"]
    # The rows are in the configured clean table on the moto server, under that object's name.
    table = open_table(res.clean_uri, clients.s3)
    assert table is not None
    rows = table.to_pyarrow_table(columns=["user_id", "action", "source"]).to_pylist()
    assert sorted((r["user_id"], r["action"]) for r in rows) == [("7", "logout"), ("u1", "login")]
    assert {r["source"] for r in rows} == {f"s3://{bucket}/web/app 1.jsonl"}
    error_keys = response["objects"][0]["error_keys"]
    body = clients.s3.get_object(Bucket=res.names.error_bucket, Key=error_keys[0])["Body"].read()
    assert [json.loads(line)["raw"] for line in body.splitlines()] == ["not json"]

    # The same event again, in text: this version is stored, so nothing new is written.
    again = logsieve("invoke", str(event))
    assert again.returncode == 0, again.stderr
    assert "3 processed, 2 valid, 1 invalid, 1 blank (this version was already ingested" in (
        again.stdout
    )
    table = open_table(res.clean_uri, clients.s3)
    assert table is not None and table.to_pyarrow_table().num_rows == 2


def test_invoke_reports_a_failed_message_and_exits_1(
    stack: tuple[Clients, Resources], tmp_path: Path
) -> None:
    _, res = stack
    # An SQS batch, as the event source mapping delivers it, naming an object that is not there.
    inner = s3_event(res.names.input_bucket, "gone.jsonl")
    batch = {
        "Records": [
            {
                "eventSource": "aws:sqs",
                "messageId": "m-1",
                "body": json.dumps(inner),
                "attributes": {"ApproximateReceiveCount": "1"},
            }
        ]
    }
    event = tmp_path / "sqs.json"
    event.write_text(json.dumps(batch))
    done = logsieve("invoke", str(event))
    assert done.returncode == 1
    result = done.stdout.splitlines()[-1]
    assert json.loads(result.removeprefix("Lambda result: ")) == {
        "batchItemFailures": [{"itemIdentifier": "m-1"}]
    }
    assert done.stderr.strip().splitlines() == [
        f"logsieve invoke: error: s3://{res.names.input_bucket}/gone.jsonl: NoSuchKey: "
        "The specified key does not exist."
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a JSON event"),
        ('{"hello": "world"}', "not an S3, SQS, SNS or EventBridge notification"),
    ],
)
def test_invoke_refuses_a_bad_event_file_in_one_line(
    stack: tuple[Clients, Resources], tmp_path: Path, content: str, message: str
) -> None:
    event = tmp_path / "event.json"
    event.write_text(content)
    done = logsieve("invoke", str(event))
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("logsieve invoke: error: ") and message in line


def test_validate_passes_on_the_provisioned_stack(stack: tuple[Clients, Resources]) -> None:
    _, res = stack
    done = logsieve("validate", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == [
        "configuration",
        "clean table",
        "error records",
        "alert topic",
        "metrics",
    ]
    assert all(c["ok"] for c in report["checks"])
    assert "no table yet" in report["checks"][1]["detail"]
    text = logsieve("validate")
    assert text.returncode == 0
    assert text.stdout.splitlines()[-1] == "valid: 5 of 5 checks passed; nothing was processed"
    # Nothing was processed or created: the clean bucket is still empty.
    clients, _ = stack
    assert clients.s3.list_objects_v2(Bucket=res.names.clean_bucket).get("KeyCount") == 0


def test_validate_names_what_is_missing_and_exits_1(stack: tuple[Clients, Resources]) -> None:
    _, res = stack
    env = dict(os.environ)
    env["LOGSIEVE_ERROR_URI"] = "s3://no-such-bucket-here/errors"
    env["LOGSIEVE_ALERT_TOPIC_ARN"] = res.alert_topic_arn + "-gone"
    done = logsieve("validate", env=env)
    assert done.returncode == 1
    rows = [re.split(r"\s{2,}", line.strip()) for line in done.stdout.splitlines()[1:-1]]
    assert {name for status, name, _ in rows if status == "FAILED"} == {
        "error records",
        "alert topic",
    }
    assert done.stderr.strip().splitlines() == [
        "logsieve validate: error: error records: s3://no-such-bucket-here/errors: "
        "bucket no-such-bucket-here: does not exist",
        f"logsieve validate: error: alert topic: {res.alert_topic_arn}-gone: NotFound: "
        "Topic does not exist",
    ]


def test_validate_against_an_endpoint_nobody_answers(stack: tuple[Clients, Resources]) -> None:
    done = logsieve("validate", "--endpoint-url", dead_endpoint(), "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert [c["ok"] for c in report["checks"]] == [True, False, False, False, False]
    assert all("Could not connect" in c["detail"] for c in report["checks"][1:])


def test_validate_without_configuration_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSIEVE_")}
    env["LOGSIEVE_CLEAN_URI"] = str(tmp_path / "clean")
    env["LOGSIEVE_ERROR_URI"] = str(tmp_path / "errors")
    env["LOGSIEVE_ALERT_TOPIC_ARN"] = "not-an-arn"
    done = logsieve("validate", "--json", env=env)
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["checks"][0]["name"] == "configuration"
    assert done.stderr.strip() == (
        "logsieve validate: error: LOGSIEVE_ALERT_TOPIC_ARN='not-an-arn': not an SNS topic ARN "
        "(arn:aws:sns:REGION:ACCOUNT:NAME)"
    )
