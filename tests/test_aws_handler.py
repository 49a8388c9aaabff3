"""The Lambda-style handler on real moto: every event shape, retries, failures, metrics, alerts."""

from __future__ import annotations

import gzip
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pytest

from logsieve import aws
from logsieve.aws.config import HandlerConfig
from logsieve.aws.events import ObjectRef, objects_in
from logsieve.aws.pipeline import HandlerOutcome, ObjectOutcome, Pipeline
from logsieve.errors import ConfigError, EventError
from logsieve.sim.infra import drain_queue, list_keys, read_alerts, read_metrics
from logsieve.sim.samples import (
    SampleLine,
    every_error_lines,
    join_lines,
    mobile_lines,
    utc_today,
    web_lines,
)
from logsieve.storage.table import open_table, table_schema

TODAY = utc_today()
#: What the keys of the per-source ledgers (not error records) contain.
LEDGER_MARK = "_logsieve/sources/"


# --- helpers -----------------------------------------------------------------------------------


def upload(clients: Any, res: Any, key: str, body: bytes) -> list[dict[str, Any]]:
    """Put an object; return the SQS messages moto's S3 notification produced for it."""
    clients.s3.put_object(Bucket=res.names.input_bucket, Key=key, Body=body)
    return drain_queue(clients.sqs, res.queue_url)


def sqs_event(messages: list[dict[str, Any]], receive_count: int = 1) -> dict[str, Any]:
    """What Lambda's SQS event source mapping hands the function."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": str(receive_count)},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:logsieve-work",
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def clean_table(clients: Any, res: Any) -> pa.Table:
    """The clean Delta table's rows, read through delta-rs from the moto server."""
    stored = open_table(res.clean_uri, clients.s3)
    if stored is None:
        return table_schema().empty_table()
    return stored.to_pyarrow_table()


def error_records(clients: Any, res: Any) -> list[dict[str, Any]]:
    """Every error record under the error prefix (the `_logsieve/` ledgers are not records)."""
    records = []
    prefix = f"{res.names.error_prefix}/"
    for key in list_keys(clients.s3, res.names.error_bucket, prefix):
        if key[len(prefix) :].startswith("_logsieve/"):
            continue
        body = clients.s3.get_object(Bucket=res.names.error_bucket, Key=key)["Body"].read()
        records.extend(json.loads(line) for line in body.splitlines())
    return records


def expected_counts(lines: list[SampleLine]) -> dict[str, int]:
    valid = sum(line.expect == "valid" for line in lines)
    errors = sum(line.expect not in ("valid", "blank") for line in lines)
    return {"processed": valid + errors, "valid": valid, "errors": errors}


def valid_users(lines: list[SampleLine]) -> list[str]:
    return sorted(line.user_id or "" for line in lines if line.expect == "valid")


# --- event shapes ------------------------------------------------------------------------------


def test_direct_s3_event_returns_the_summary(aws_stack: Any) -> None:
    clients, res = aws_stack
    lines = web_lines(TODAY)
    (message,) = upload(clients, res, "web/app.jsonl", join_lines(lines))

    response = aws.handler(json.loads(message["Body"]), None)

    counts = expected_counts(lines)
    assert {k: response[k] for k in counts} == counts
    assert response["failed"] == []
    (obj,) = response["objects"]
    assert obj["object"] == f"s3://{res.names.input_bucket}/web/app.jsonl"
    assert sorted(clean_table(clients, res)["user_id"].to_pylist()) == valid_users(lines)


@pytest.mark.parametrize(
    "key",
    ["logs/with space.jsonl", "logs/a+b=c&d.jsonl", "logs/ünïcödé ✓ 日本.jsonl", "logs/100%.jsonl"],
)
def test_url_encoded_keys_are_decoded(aws_stack: Any, key: str) -> None:
    clients, res = aws_stack
    lines = mobile_lines(TODAY)
    (message,) = upload(clients, res, key, join_lines(lines))
    encoded = json.loads(message["Body"])["Records"][0]["s3"]["object"]["key"]
    assert encoded != key  # moto URL-encodes like S3 does

    response = aws.handler(json.loads(message["Body"]), None)

    assert response["failed"] == []
    assert response["objects"][0]["object"] == f"s3://{res.names.input_bucket}/{key}"
    assert response["valid"] == expected_counts(lines)["valid"]


def test_sqs_batch_success_returns_no_failures(aws_stack: Any) -> None:
    clients, res = aws_stack
    messages = upload(clients, res, "a.jsonl", join_lines(web_lines(TODAY)))
    messages += upload(clients, res, "b.jsonl.gz", gzip.compress(join_lines(mobile_lines(TODAY))))

    assert aws.handler(sqs_event(messages), None) == {"batchItemFailures": []}
    expected = valid_users(web_lines(TODAY) + mobile_lines(TODAY))
    assert sorted(clean_table(clients, res)["user_id"].to_pylist()) == expected


def _subscribe_topic_to_queue(clients: Any, bucket: str) -> str:
    """S3 -> SNS topic -> SQS queue, the fan-out set-up; returns the queue URL."""
    topic = clients.sns.create_topic(Name="s3-fanout")["TopicArn"]
    url = clients.sqs.create_queue(QueueName="fanout")["QueueUrl"]
    arn = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    clients.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    clients.s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    drain_queue(clients.sqs, url)  # the s3:TestEvent
    return url


def test_sqs_sns_s3_nesting_and_sns_event(aws_stack: Any) -> None:
    clients, res = aws_stack
    url = _subscribe_topic_to_queue(clients, res.names.input_bucket)
    lines = web_lines(TODAY)
    clients.s3.put_object(
        Bucket=res.names.input_bucket, Key="via sns/x.jsonl", Body=join_lines(lines)
    )
    (message,) = drain_queue(clients.sqs, url)
    envelope = json.loads(message["Body"])
    assert envelope["Type"] == "Notification"

    # SQS message whose body is the SNS envelope around the S3 notification.
    assert aws.handler(sqs_event([message]), None) == {"batchItemFailures": []}
    # The same notification delivered by SNS straight to the function.
    sns_event = {
        "Records": [
            {
                "EventSource": "aws:sns",
                "Sns": {"Type": "Notification", "Message": envelope["Message"]},
            }
        ]
    }
    response = aws.handler(sns_event, None)
    assert response["objects"][0]["object"] == f"s3://{res.names.input_bucket}/via sns/x.jsonl"
    assert {k: response[k] for k in ("processed", "valid", "errors")} == expected_counts(lines)
    # Processed twice, stored once.
    assert sorted(clean_table(clients, res)["user_id"].to_pylist()) == valid_users(lines)


def test_eventbridge_object_created(aws_stack: Any) -> None:
    import boto3

    clients, res = aws_stack
    events = boto3.client("events", region_name="us-east-1")
    url = clients.sqs.create_queue(QueueName="eventbridge")["QueueUrl"]
    arn = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="s3-created", EventPattern=json.dumps({"source": ["aws.s3"]}))
    events.put_targets(Rule="s3-created", Targets=[{"Id": "queue", "Arn": arn}])
    clients.s3.put_bucket_notification_configuration(
        Bucket=res.names.input_bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    lines = mobile_lines(TODAY)
    key = "eb/with space+plus ü.jsonl"
    clients.s3.put_object(Bucket=res.names.input_bucket, Key=key, Body=join_lines(lines))
    messages = drain_queue(clients.sqs, url)
    kinds = [json.loads(m["Body"])["detail-type"] for m in messages]
    assert "Object Created" in kinds  # moto also sends "Object Tags Added", which is skipped
    event = json.loads(messages[kinds.index("Object Created")]["Body"])

    response = aws.handler(event, None)
    assert response["objects"][0]["object"] == f"s3://{res.names.input_bucket}/{key}"
    assert response["valid"] == expected_counts(lines)["valid"]
    # And the same events arriving through SQS.
    assert aws.handler(sqs_event(messages), None) == {"batchItemFailures": []}


def test_test_event_and_removals_are_skipped(aws_stack: Any) -> None:
    clients, res = aws_stack
    clients.s3.put_bucket_notification_configuration(
        Bucket=res.names.input_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": res.queue_arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
            ]
        },
    )
    (test_event,) = drain_queue(clients.sqs, res.queue_url)
    assert json.loads(test_event["Body"])["Event"] == "s3:TestEvent"
    upload(clients, res, "gone.jsonl", b"")
    clients.s3.delete_object(Bucket=res.names.input_bucket, Key="gone.jsonl")
    (removed,) = drain_queue(clients.sqs, res.queue_url)
    assert json.loads(removed["Body"])["Records"][0]["eventName"].startswith("ObjectRemoved")

    assert aws.handler(sqs_event([test_event, removed]), None) == {"batchItemFailures": []}
    response = aws.handler(json.loads(test_event["Body"]), None)
    assert (response["processed"], response["objects"], response["failed"]) == (0, [], [])


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"s3": {"bucket": {"name": "b"}, "object": {"key": "a+b%2Bc.jsonl"}}}, ["a b+c.jsonl"]),
        (
            {
                "eventName": "s3:ObjectCreated:Put",
                "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}},
            },
            ["k"],
        ),
        (
            {
                "eventName": "ObjectRemoved:Delete",
                "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}},
            },
            [],
        ),
    ],
)
def test_hand_written_s3_records(record: dict[str, Any], expected: list[str]) -> None:
    assert [ref.key for ref in objects_in({"Records": [record]})] == expected


@pytest.mark.parametrize(
    "payload",
    [
        {"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": 5}}}]},
        {"Records": [{"s3": {"bucket": {"name": None}, "object": {"key": "k"}}}]},
        {"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": ""}}}]},
        {"Records": [{"s3": {"bucket": "b", "object": {"key": "k"}}}]},
        {
            "source": "aws.s3",
            "detail-type": "Object Created",
            "detail": {"bucket": {"name": ["b"]}, "object": {"key": "k"}},
        },
    ],
)
def test_malformed_object_fields_are_event_errors(payload: dict[str, Any]) -> None:
    with pytest.raises(EventError, match="without bucket name or object key"):
        list(objects_in(payload))


def test_malformed_sqs_records_fail_only_themselves(aws_stack: Any) -> None:
    clients, res = aws_stack
    (good,) = upload(clients, res, "fine.jsonl", join_lines(web_lines(TODAY)))
    event = sqs_event([good])
    record = event["Records"][0]
    event["Records"] += [
        {**record, "messageId": "dict-body", "body": {"Records": []}},
        {**record, "messageId": "odd-attributes", "attributes": "zzz"},
        {**record, "messageId": "too-deep", "body": "[" * 100_000 + "]" * 100_000},
    ]

    response = aws.handler(event, None)

    # The dict body cannot be read; odd attributes only cost the receive count (taken as 1).
    assert response == {
        "batchItemFailures": [{"itemIdentifier": "dict-body"}, {"itemIdentifier": "too-deep"}]
    }
    assert sorted(clean_table(clients, res)["user_id"].to_pylist()) == valid_users(web_lines(TODAY))


def test_unknown_event_shape_is_an_error(aws_stack: Any) -> None:
    with pytest.raises(EventError, match="not an S3, SQS, SNS or EventBridge"):
        aws.handler({"hello": "world"}, None)


# --- idempotence -------------------------------------------------------------------------------


def test_multipart_upload_two_events_no_duplicates(aws_stack: Any) -> None:
    clients, res = aws_stack
    lines = web_lines(TODAY) + mobile_lines(TODAY)
    data = join_lines(lines)
    bucket, key = res.names.input_bucket, "multi/part upload.jsonl"
    upload_id = clients.s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    part = clients.s3.upload_part(
        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=data
    )
    clients.s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    messages = drain_queue(clients.sqs, res.queue_url)
    assert len(messages) == 2  # moto announces the object twice

    assert aws.handler(sqs_event(messages), None) == {"batchItemFailures": []}
    # Both records in one direct event: counted once.
    records = [json.loads(m["Body"])["Records"][0] for m in messages]
    response = aws.handler({"Records": records}, None)
    assert len(response["objects"]) == 1
    assert response["valid"] == len(valid_users(lines))
    for message in messages:  # and once more each, as separate deliveries
        assert aws.handler(sqs_event([message]), None) == {"batchItemFailures": []}

    assert sorted(clean_table(clients, res)["user_id"].to_pylist()) == valid_users(lines)


@pytest.mark.parametrize("deliveries", [2, 3])
def test_retried_event_never_duplicates(aws_stack: Any, deliveries: int) -> None:
    clients, res = aws_stack
    lines = every_error_lines(TODAY)
    (message,) = upload(clients, res, "retry/me.jsonl", join_lines(lines))
    for attempt in range(1, deliveries + 1):
        assert aws.handler(sqs_event([message], receive_count=attempt), None) == {
            "batchItemFailures": []
        }
        aws.handler(json.loads(message["Body"]), None)

    counts = expected_counts(lines)
    assert clean_table(clients, res).num_rows == counts["valid"]
    errors = error_records(clients, res)
    assert len(errors) == counts["errors"]
    assert sorted(e["line"] for e in errors) == [
        i for i, line in enumerate(lines, 1) if line.expect not in ("valid", "blank")
    ]


def test_repeated_notification_sends_metrics_and_alerts_once(aws_stack: Any) -> None:
    clients, res = aws_stack
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    lines = every_error_lines(TODAY)  # an error rate high enough to alert
    (message,) = upload(clients, res, "dup/app.jsonl", join_lines(lines))
    counts = expected_counts(lines)

    assert aws.handler(sqs_event([message]), None) == {"batchItemFailures": []}
    assert aws.handler(sqs_event([message], receive_count=2), None) == {"batchItemFailures": []}
    again = aws.handler(json.loads(message["Body"]), None)

    # The repeat reports what the first delivery stored, and says so.
    assert {k: again[k] for k in counts} == counts
    assert again["objects"][0]["already_ingested"] is True
    assert [a["attributes"]["alert_type"] for a in read_alerts(clients, res)] == ["high_error_rate"]

    def processed() -> float:
        metrics = read_metrics(clients.cloudwatch, "LogSieve", since=started)
        (total,) = [
            m["sum"]
            for m in metrics
            if m["name"] == "RecordsProcessed"
            and m["dimensions"] == {"Bucket": res.names.input_bucket}
        ]
        return float(total)

    assert processed() == counts["processed"]

    # New content under the same key is a new version: ingested, counted and stored again.
    newer = web_lines(TODAY)
    (message,) = upload(clients, res, "dup/app.jsonl", join_lines(newer))
    response = aws.handler(json.loads(message["Body"]), None)
    assert "already_ingested" not in response["objects"][0]
    assert processed() == counts["processed"] + expected_counts(newer)["processed"]
    assert sorted(clean_table(clients, res)["user_id"].to_pylist()) == valid_users(newer)


#: Where the older version's run is when the newer version arrives and is ingested whole:
#: publishing its error records, or writing its ledger (the last step before its commit).
RACE_POINTS = {"error records": "/date=", "ledger": f"/{LEDGER_MARK}"}


def race_newer_version(
    clients: Any, res: Any, key: str, old: list[SampleLine], new: list[SampleLine], during: str
) -> tuple[HandlerOutcome, list[HandlerOutcome], str]:
    """Ingest `old` under `key`; while its run writes the S3 key containing `during`, upload
    `new` under the same key and let another worker ingest it from start to finish.

    Returns the old run's outcome, the other worker's outcomes and the new version's ETag.
    """
    from logsieve.aws.clients import Clients

    (old_message,) = upload(clients, res, key, join_lines(old))
    config = HandlerConfig.from_env()
    other_worker = Pipeline.from_clients(config, Clients.create(region_name="us-east-1"))
    replaced: list[HandlerOutcome] = []

    def newer_version_meanwhile(params: dict[str, Any], **kwargs: Any) -> None:
        if replaced or during not in params.get("Key", ""):
            return
        (new_message,) = upload(clients, res, key, join_lines(new))
        # Another thread: this one is inside delta-rs's writer, which is streaming our rows.
        with ThreadPoolExecutor(1) as pool:
            replaced.append(pool.submit(other_worker.handle, sqs_event([new_message])).result())

    clients.s3.meta.events.register("provide-client-params.s3.PutObject", newer_version_meanwhile)
    try:
        outcome = Pipeline.from_clients(config, clients).handle(sqs_event([old_message]))
    finally:
        clients.s3.meta.events.unregister(
            "provide-client-params.s3.PutObject", newer_version_meanwhile
        )
    etag = clients.s3.head_object(Bucket=res.names.input_bucket, Key=key)["ETag"].strip('"')
    return outcome, replaced, etag


@pytest.mark.parametrize("during", RACE_POINTS.values(), ids=RACE_POINTS.keys())
def test_object_replaced_while_ingested_ends_with_its_latest_version(
    aws_stack: Any, during: str
) -> None:
    """S3 announces both versions; the older version's run finishing last must not win."""
    clients, res = aws_stack
    old, new = every_error_lines(TODAY), mobile_lines(TODAY)

    outcome, replaced, etag = race_newer_version(clients, res, "race/app.jsonl", old, new, during)

    assert [o.failed_message_ids for o in replaced] == [[]]
    assert outcome.failed_message_ids == []
    rows = clean_table(clients, res)
    assert sorted(rows["user_id"].to_pylist()) == valid_users(new)
    assert set(rows["source_version"].to_pylist()) == {etag}


@pytest.mark.parametrize(
    ("during", "new_lines"),
    [(RACE_POINTS["ledger"], mobile_lines), (RACE_POINTS["error records"], web_lines)],
    ids=["ledger, new version without errors", "error records, new version with errors"],
)
def test_object_replaced_while_ingested_keeps_only_the_latest_error_records(
    aws_stack: Any, during: str, new_lines: Any
) -> None:
    clients, res = aws_stack
    old, new = every_error_lines(TODAY), new_lines(TODAY)

    outcome, _, _ = race_newer_version(clients, res, "race/errors.jsonl", old, new, during)

    assert outcome.failed_message_ids == []
    stored = sorted((r["line"], r.get("raw")) for r in error_records(clients, res))
    expected = [
        (number, line.raw.decode())
        for number, line in enumerate(new, 1)
        if line.expect not in ("valid", "blank")
    ]
    assert stored == expected  # the old version's errors are gone, the new one's all there


def test_last_receive_in_a_batch_is_final_even_after_an_earlier_one(aws_stack: Any) -> None:
    clients, res = aws_stack
    (message,) = upload(clients, res, "gone/twice.jsonl", b"{}\n")
    clients.s3.delete_object(Bucket=res.names.input_bucket, Key="gone/twice.jsonl")
    first, last = sqs_event([message], receive_count=1), sqs_event([message], receive_count=3)
    last["Records"][0]["messageId"] = "the-same-notification-again"

    response = aws.handler({"Records": first["Records"] + last["Records"]}, None)

    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {
        message["MessageId"],
        "the-same-notification-again",
    }
    assert [a["attributes"]["alert_type"] for a in read_alerts(clients, res)] == ["object_failed"]


# --- concurrency and versions -----------------------------------------------------------------


def process_at_once(refs: list[ObjectRef]) -> list[ObjectOutcome]:
    """Each ref processed by its own worker (own clients, own thread), all released together."""
    from logsieve.aws.clients import Clients

    config = HandlerConfig.from_env()
    workers = [Pipeline.from_clients(config, Clients.create(region_name="us-east-1")) for _ in refs]
    start = threading.Barrier(len(refs))

    def run(worker: Pipeline, ref: ObjectRef) -> ObjectOutcome:
        start.wait(timeout=30)
        return worker.process_object(ref)

    with ThreadPoolExecutor(len(refs)) as pool:
        return list(pool.map(run, workers, refs))


def metric_total(clients: Any, res: Any, name: str, since: datetime) -> float:
    """The sum of a metric over the input bucket (not its per-error-code breakdown)."""
    metrics = read_metrics(clients.cloudwatch, "LogSieve", since=since)
    return sum(
        m["sum"]
        for m in metrics
        if m["name"] == name and m["dimensions"] == {"Bucket": res.names.input_bucket}
    )


@pytest.mark.parametrize("deliveries", [2, 4])
def test_simultaneous_deliveries_of_one_version_store_it_once(
    aws_stack: Any, deliveries: int
) -> None:
    clients, res = aws_stack
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    lines = every_error_lines(TODAY)
    key = "twice/at once.jsonl"
    upload(clients, res, key, join_lines(lines))
    ref = ObjectRef(res.names.input_bucket, key)

    outcomes = process_at_once([ref] * deliveries)

    assert [o.error for o in outcomes] == [None] * deliveries
    assert sum(not o.already_ingested for o in outcomes) == 1
    counts = expected_counts(lines)
    rows = clean_table(clients, res)
    assert sorted(rows["user_id"].to_pylist()) == valid_users(lines)
    assert set(rows["source_id"].to_pylist()) == {ref.uri}
    assert len(error_records(clients, res)) == counts["errors"]
    assert metric_total(clients, res, "RecordsProcessed", started) == counts["processed"]
    assert [a["attributes"]["alert_type"] for a in read_alerts(clients, res)] == ["high_error_rate"]


def test_many_objects_at_once_each_stored_once(aws_stack: Any) -> None:
    clients, res = aws_stack
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    kinds = [web_lines, mobile_lines, every_error_lines]
    objects = {f"many/{n:02d}.jsonl": kinds[n % len(kinds)](TODAY) for n in range(12)}
    for key, lines in objects.items():
        upload(clients, res, key, join_lines(lines))
    refs = [ObjectRef(res.names.input_bucket, key) for key in objects]

    outcomes = process_at_once(refs)

    assert [o.error for o in outcomes] == [None] * len(refs)
    assert not any(o.already_ingested for o in outcomes)
    rows = clean_table(clients, res)
    by_source: dict[str, list[str]] = {}
    for source, user in zip(rows["source"].to_pylist(), rows["user_id"].to_pylist()):
        by_source.setdefault(source, []).append(user)
    expected = {ref.uri: valid_users(objects[ref.key]) for ref in refs}
    assert {source: sorted(users) for source, users in by_source.items()} == expected
    all_lines = [line for lines in objects.values() for line in lines]
    counts = expected_counts(all_lines)
    assert len(error_records(clients, res)) == counts["errors"]
    assert metric_total(clients, res, "RecordsProcessed", started) == counts["processed"]
    assert metric_total(clients, res, "RecordsValid", started) == counts["valid"]


def test_newer_version_replaces_the_older_ones_rows_and_errors(aws_stack: Any) -> None:
    clients, res = aws_stack
    key = "versions/app.jsonl"
    old, new = every_error_lines(TODAY), web_lines(TODAY)
    (first,) = upload(clients, res, key, join_lines(old))
    assert aws.handler(sqs_event([first]), None) == {"batchItemFailures": []}
    old_etag = clients.s3.head_object(Bucket=res.names.input_bucket, Key=key)["ETag"].strip('"')
    assert set(clean_table(clients, res)["source_version"].to_pylist()) == {old_etag}

    (second,) = upload(clients, res, key, join_lines(new))
    assert aws.handler(sqs_event([second]), None) == {"batchItemFailures": []}

    new_etag = clients.s3.head_object(Bucket=res.names.input_bucket, Key=key)["ETag"].strip('"')
    assert new_etag != old_etag
    rows = clean_table(clients, res)
    assert sorted(rows["user_id"].to_pylist()) == valid_users(new)
    assert set(rows["source_version"].to_pylist()) == {new_etag}
    assert set(rows["source_id"].to_pylist()) == {f"s3://{res.names.input_bucket}/{key}"}
    errors = error_records(clients, res)
    assert sorted(e["line"] for e in errors) == [
        i for i, line in enumerate(new, 1) if line.expect not in ("valid", "blank")
    ]


# --- failures ----------------------------------------------------------------------------------


def test_partial_batch_failure_names_only_failed_messages(aws_stack: Any) -> None:
    clients, res = aws_stack
    good = upload(clients, res, "ok.jsonl", join_lines(web_lines(TODAY)))
    whole = gzip.compress(join_lines(mobile_lines(TODAY)))
    corrupt = upload(clients, res, "cut.jsonl.gz", whole[: len(whole) // 2])
    missing = upload(clients, res, "deleted.jsonl", b"x\n")
    clients.s3.delete_object(Bucket=res.names.input_bucket, Key="deleted.jsonl")
    also_good = upload(clients, res, "ok2.jsonl.gz", whole)

    response = aws.handler(sqs_event(good + corrupt + missing + also_good), None)

    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    assert failed == {corrupt[0]["MessageId"], missing[0]["MessageId"]}
    # Not the last receive yet: no alert, no ObjectsFailed.
    assert read_alerts(clients, res) == []
    # The corrupt object published nothing: only the two good objects' rows exist.
    expected = valid_users(web_lines(TODAY) + mobile_lines(TODAY))
    assert sorted(clean_table(clients, res)["user_id"].to_pylist()) == expected


def test_transient_s3_error_is_retried_without_duplicates(aws_stack: Any) -> None:
    """A throttled GetObject fails only its message; the retry then stores the rows once."""
    from botocore.exceptions import ClientError

    clients, res = aws_stack
    lines = web_lines(TODAY)
    first = upload(clients, res, "flaky.jsonl", join_lines(lines))
    second = upload(clients, res, "steady.jsonl", join_lines(mobile_lines(TODAY)))

    def throttle(params: dict[str, Any], **kwargs: Any) -> None:
        if params.get("Key") == "flaky.jsonl":
            error = {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}
            raise ClientError(error, "GetObject")

    pipeline = Pipeline.from_clients(HandlerConfig.from_env(), clients)
    clients.s3.meta.events.register("provide-client-params.s3.GetObject", throttle)
    try:
        outcome = pipeline.handle(sqs_event(first + second))
    finally:
        clients.s3.meta.events.unregister("provide-client-params.s3.GetObject", throttle)

    assert outcome.response() == {"batchItemFailures": [{"itemIdentifier": first[0]["MessageId"]}]}
    (failed,) = [o for o in outcome.objects if not o.ok]
    assert failed.error == "SlowDown: Please reduce your request rate."
    assert read_alerts(clients, res) == []

    retry = pipeline.handle(sqs_event(first, receive_count=2))
    assert retry.response() == {"batchItemFailures": []}
    expected = valid_users(lines + mobile_lines(TODAY))
    assert sorted(clean_table(clients, res)["user_id"].to_pylist()) == expected


def test_last_receive_alerts_and_counts_failure(aws_stack: Any) -> None:
    clients, res = aws_stack
    started = datetime.now(timezone.utc)
    whole = gzip.compress(join_lines(mobile_lines(TODAY)))
    (message,) = upload(clients, res, "bad/truncated.jsonl.gz", whole[:-12])

    for receive in (1, 2):
        response = aws.handler(sqs_event([message], receive_count=receive), None)
        assert response == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
        assert read_alerts(clients, res) == []
    response = aws.handler(sqs_event([message], receive_count=3), None)
    assert response == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}

    (alert,) = read_alerts(clients, res)
    uri = f"s3://{res.names.input_bucket}/bad/truncated.jsonl.gz"
    assert alert["attributes"] == {"alert_type": "object_failed", "object": uri}
    assert uri in alert["message"]
    assert "truncated" in alert["message"]
    assert "3 of 3" in alert["message"]
    failed = [
        m
        for m in read_metrics(clients.cloudwatch, "LogSieve", since=started)
        if m["name"] == "ObjectsFailed"
    ]
    assert [m["sum"] for m in failed] == [1.0]


def test_missing_object_in_direct_event_fails_loudly(aws_stack: Any) -> None:
    clients, res = aws_stack
    (message,) = upload(clients, res, "vanished.jsonl", b"{}\n")
    clients.s3.delete_object(Bucket=res.names.input_bucket, Key="vanished.jsonl")

    response = aws.handler(json.loads(message["Body"]), None)

    (failure,) = response["failed"]
    assert failure["object"] == f"s3://{res.names.input_bucket}/vanished.jsonl"
    assert "NoSuchKey" in failure["error"]
    assert [a["attributes"]["alert_type"] for a in read_alerts(clients, res)] == ["object_failed"]


def test_missing_output_bucket_is_blamed_on_the_output_not_the_object(
    aws_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients, res = aws_stack
    monkeypatch.setenv("LOGSIEVE_CLEAN_URI", "s3://no-such-clean-bucket/clean")
    (message,) = upload(clients, res, "fine/app.jsonl", join_lines(web_lines(TODAY)))

    direct = aws.handler(json.loads(message["Body"]), None)
    (failure,) = direct["failed"]
    assert failure["error"].startswith(
        "OutputError: cannot open the clean table at s3://no-such-clean-bucket/clean: NoSuchBucket"
    )
    assert "\n" not in failure["error"]  # one line from delta-rs's multi-line error chain
    via_sqs = aws.handler(sqs_event([message], receive_count=3), None)
    assert via_sqs == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}

    direct_alert, sqs_alert = (a["message"] for a in read_alerts(clients, res))
    for text in (direct_alert, sqs_alert):
        assert "The object itself may be fine" in text
        assert "s3://no-such-clean-bucket/clean" in text
        assert "upload it again" not in text
    assert "direct invocation" in direct_alert and "dead-letter" not in direct_alert
    assert "3 of 3" in sqs_alert and "dead-letter" in sqs_alert


def test_unreadable_sqs_body_fails_and_alerts_on_last_receive(aws_stack: Any) -> None:
    clients, res = aws_stack
    clients.sqs.send_message(QueueUrl=res.queue_url, MessageBody="this is not an S3 notification")
    (message,) = drain_queue(clients.sqs, res.queue_url)

    first = aws.handler(sqs_event([message], receive_count=1), None)
    assert first == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    assert read_alerts(clients, res) == []
    aws.handler(sqs_event([message], receive_count=3), None)
    (alert,) = read_alerts(clients, res)
    assert "unreadable message body" in alert["message"]


# --- content: errors, gzip, empty, metrics, alerts --------------------------------------------


def test_high_error_rate_alert_content(aws_stack: Any) -> None:
    clients, res = aws_stack
    lines = every_error_lines(TODAY)
    (message,) = upload(clients, res, "batch/every error.jsonl", join_lines(lines))

    aws.handler(json.loads(message["Body"]), None)

    counts = expected_counts(lines)
    (alert,) = read_alerts(clients, res)
    uri = f"s3://{res.names.input_bucket}/batch/every error.jsonl"
    assert alert["attributes"] == {"alert_type": "high_error_rate", "object": uri}
    assert alert["subject"].isascii() and len(alert["subject"]) < 100
    text = alert["message"]
    assert f"object: {uri}" in text
    assert (
        f"processed {counts['processed']}, valid {counts['valid']}, invalid {counts['errors']}"
        in text
    )
    assert f"{counts['errors'] / counts['processed']:.1%}" in text
    first_error = next(
        i for i, line in enumerate(lines, 1) if line.expect not in ("valid", "blank")
    )
    assert f"line {first_error}: {lines[first_error - 1].expect}:" in text


def test_error_rate_at_threshold_does_not_alert(
    aws_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients, res = aws_stack
    lines = web_lines(TODAY)
    counts = expected_counts(lines)
    monkeypatch.setenv("LOGSIEVE_ERROR_RATE_ALERT", str(counts["errors"] / counts["processed"]))
    (message,) = upload(clients, res, "web.jsonl", join_lines(lines))
    aws.handler(json.loads(message["Body"]), None)
    assert read_alerts(clients, res) == []


def test_metrics_read_back(aws_stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clients, res = aws_stack
    monkeypatch.setenv("LOGSIEVE_METRICS_NAMESPACE", "LogSieveTest")
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    objects = {"m/web.jsonl": web_lines(TODAY), "m/errors.jsonl": every_error_lines(TODAY)}
    messages = []
    for key, lines in objects.items():
        messages += upload(clients, res, key, join_lines(lines))
    assert aws.handler(sqs_event(messages), None) == {"batchItemFailures": []}

    metrics = read_metrics(clients.cloudwatch, "LogSieveTest", since=started)
    totals = {
        m["name"]: m["sum"]
        for m in metrics
        if m["dimensions"] == {"Bucket": res.names.input_bucket}
    }
    all_lines = [line for lines in objects.values() for line in lines]
    counts = expected_counts(all_lines)
    assert totals["RecordsProcessed"] == counts["processed"]
    assert totals["RecordsValid"] == counts["valid"]
    assert totals["RecordsInvalid"] == counts["errors"]
    assert totals["ObjectsFailed"] == 0
    assert totals["ProcessingTime"] > 0
    sizes = sum(len(join_lines(lines)) for lines in objects.values())
    assert totals["BytesProcessed"] == sizes
    by_code = {
        m["dimensions"]["ErrorCode"]: m["sum"]
        for m in metrics
        if m["name"] == "RecordsInvalid" and "ErrorCode" in m["dimensions"]
    }
    expected_codes: dict[str, float] = {}
    for line in all_lines:
        if line.expect not in ("valid", "blank"):
            expected_codes[line.expect] = expected_codes.get(line.expect, 0) + 1
    assert by_code == expected_codes


def test_gzip_and_empty_objects(aws_stack: Any) -> None:
    clients, res = aws_stack
    lines = mobile_lines(TODAY)
    messages = upload(clients, res, "z/events.jsonl.gz", gzip.compress(join_lines(lines)))
    messages += upload(clients, res, "z/empty.jsonl", b"")
    messages += upload(clients, res, "z/empty.jsonl.gz", gzip.compress(b""))

    outcome = Pipeline.from_clients(HandlerConfig.from_env(), clients).handle(sqs_event(messages))

    assert outcome.failed_message_ids == []
    results = {o.ref.key: o.result for o in outcome.objects}
    assert results["z/events.jsonl.gz"] is not None
    assert results["z/events.jsonl.gz"].valid == expected_counts(lines)["valid"]
    for key in ("z/empty.jsonl", "z/empty.jsonl.gz"):
        result = results[key]
        assert result is not None
        assert (result.processed, result.valid, result.errors, result.rows_by_date) == (0, 0, 0, {})
    assert sorted(clean_table(clients, res)["user_id"].to_pylist()) == valid_users(lines)


def test_compressed_object_without_a_suffix_is_recognised(aws_stack: Any) -> None:
    clients, res = aws_stack
    lines = mobile_lines(TODAY)
    (message,) = upload(clients, res, "renamed/app.jsonl", gzip.compress(join_lines(lines)))

    response = aws.handler(json.loads(message["Body"]), None)

    assert {k: response[k] for k in ("processed", "valid", "errors")} == expected_counts(lines)
    assert sorted(clean_table(clients, res)["user_id"].to_pylist()) == valid_users(lines)


def test_object_that_is_not_text_becomes_error_records(aws_stack: Any) -> None:
    clients, res = aws_stack
    garbage = bytes(range(256)) * 4  # binary, includes "\n" bytes: several "lines"
    (message,) = upload(clients, res, "binary.bin", garbage)

    response = aws.handler(json.loads(message["Body"]), None)

    assert response["valid"] == 0 and response["errors"] > 0
    records = error_records(clients, res)
    assert len(records) == response["errors"]
    assert all(r["error"] == "invalid_json" for r in records)
    assert any("raw_base64" in r for r in records)
    assert [a["attributes"]["alert_type"] for a in read_alerts(clients, res)] == ["high_error_rate"]


# --- configuration and logs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["LOGSIEVE_CLEAN_URI", "LOGSIEVE_ERROR_URI", "LOGSIEVE_ALERT_TOPIC_ARN"]
)
def test_missing_configuration_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    env = {
        "LOGSIEVE_CLEAN_URI": "s3://clean/clean",
        "LOGSIEVE_ERROR_URI": "s3://errors/errors",
        "LOGSIEVE_ALERT_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:alerts",
    }
    del env[name]
    with pytest.raises(ConfigError, match=name):
        HandlerConfig.from_env(env)
    for key in env:
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match=name):  # the handler fails before touching the event
        aws.handler({"Records": []}, None)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOGSIEVE_CLEAN_URI", "http://example/clean"),
        ("LOGSIEVE_ERROR_URI", "s3:///no-bucket"),
        ("LOGSIEVE_ALERT_TOPIC_ARN", "alerts"),
        ("LOGSIEVE_ERROR_RATE_ALERT", "ten percent"),
        ("LOGSIEVE_ERROR_RATE_ALERT", "1.5"),
        ("LOGSIEVE_METRICS_NAMESPACE", "AWS/Lambda"),
        ("LOGSIEVE_MAX_RECEIVE_COUNT", "0"),
        ("LOGSIEVE_MAX_RECEIVE_COUNT", "three"),
    ],
)
def test_malformed_configuration_names_the_variable(name: str, value: str) -> None:
    env = {
        "LOGSIEVE_CLEAN_URI": "s3://clean/clean",
        "LOGSIEVE_ERROR_URI": "s3://errors/errors",
        "LOGSIEVE_ALERT_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:alerts",
        name: value,
    }
    with pytest.raises(ConfigError, match=name):
        HandlerConfig.from_env(env)


def test_configuration_defaults() -> None:
    config = HandlerConfig.from_env(
        {
            "LOGSIEVE_CLEAN_URI": "s3://clean/clean",
            "LOGSIEVE_ERROR_URI": "/tmp/errors",
            "LOGSIEVE_ALERT_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:alerts",
        }
    )
    assert (config.error_rate_alert, config.metrics_namespace, config.max_receive_count) == (
        0.1,
        "LogSieve",
        3,
    )


def test_logs_are_one_line_json(aws_stack: Any, caplog: pytest.LogCaptureFixture) -> None:
    clients, res = aws_stack
    caplog.set_level(logging.INFO, logger="logsieve")
    (message,) = upload(clients, res, "log me.jsonl", join_lines(every_error_lines(TODAY)))
    aws.handler(sqs_event([message]), None)

    records = [r for r in caplog.records if r.name.startswith("logsieve.aws")]
    events = [json.loads(r.getMessage()) for r in records]
    assert all("\n" not in r.getMessage() for r in records)
    names = [e["event"] for e in events]
    assert "object_processed" in names and "alert_published" in names
    processed = next(e for e in events if e["event"] == "object_processed")
    assert processed["object"] == f"s3://{res.names.input_bucket}/log me.jsonl"
    assert processed["errors"] == expected_counts(every_error_lines(TODAY))["errors"]


def test_a_failed_check_after_the_commit_keeps_the_result_and_its_metrics(aws_stack: Any) -> None:
    """The HEAD that looks for a newer version runs after the commit: its failure must not fail
    the object (a retry would find the version stored and its metrics would never go out)."""
    clients, res = aws_stack
    since = datetime.now(timezone.utc) - timedelta(minutes=1)
    lines = web_lines(TODAY)
    (message,) = upload(clients, res, "checked/app.jsonl", join_lines(lines))

    def refuse(**kwargs: Any) -> None:
        raise RuntimeError("simulated: the endpoint went away")

    clients.s3.meta.events.register("before-call.s3.HeadObject", refuse)
    try:
        outcome = Pipeline.from_clients(HandlerConfig.from_env(), clients).handle(
            sqs_event([message])
        )
    finally:
        clients.s3.meta.events.unregister("before-call.s3.HeadObject", refuse)

    assert outcome.failed_message_ids == []
    assert sorted(clean_table(clients, res)["user_id"].to_pylist()) == valid_users(lines)
    processed = sum(1 for line in lines if line.expect != "blank")
    assert metric_total(clients, res, "RecordsProcessed", since) == processed
