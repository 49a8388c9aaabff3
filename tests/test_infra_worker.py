"""Provisioning and the SQS worker, on the session's moto server and on one of their own."""

from __future__ import annotations

import gzip
import json
import threading
from typing import Any

import pytest

from logsieve.aws.clients import Clients
from logsieve.aws.notifications import ALERT_OBJECT_FAILED
from logsieve.aws.pipeline import Pipeline
from logsieve.aws.worker import Worker
from logsieve.sim.infra import (
    ResourceNames,
    list_keys,
    prepare_local_environment,
    provision,
    queue_depth,
    read_alerts,
    read_dead_letters,
)
from logsieve.sim.samples import join_lines, mobile_lines, utc_today, web_lines
from logsieve.storage.table import open_table

TODAY = utc_today()


def _worker(clients: Clients, res: Any, **kwargs: Any) -> Worker:
    pipeline = Pipeline.from_clients(res.handler_config(), clients)
    return Worker(clients.sqs, res.queue_url, pipeline, queue_arn=res.queue_arn, **kwargs)


def _truncated_gzip() -> bytes:
    whole = gzip.compress(join_lines(mobile_lines(TODAY)))
    return whole[: len(whole) // 2]


def test_provision_wires_everything_together(aws_stack: Any) -> None:
    clients, res = aws_stack
    names = res.names
    buckets = {b["Name"] for b in clients.s3.list_buckets()["Buckets"]}
    assert {names.input_bucket, names.clean_bucket, names.error_bucket} <= buckets

    attributes = clients.sqs.get_queue_attributes(QueueUrl=res.queue_url, AttributeNames=["All"])[
        "Attributes"
    ]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == res.dead_letter_queue_arn
    assert int(redrive["maxReceiveCount"]) == names.max_receive_count == 3
    assert attributes["VisibilityTimeout"] == str(names.visibility_timeout)

    subscriptions = clients.sns.list_subscriptions_by_topic(TopicArn=res.alert_topic_arn)[
        "Subscriptions"
    ]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("sqs", res.alert_queue_arn)]

    notification = clients.s3.get_bucket_notification_configuration(Bucket=names.input_bucket)
    (queue_config,) = notification["QueueConfigurations"]
    assert queue_config["QueueArn"] == res.queue_arn
    assert queue_config["Events"] == ["s3:ObjectCreated:*"]

    again = provision(clients, names)
    assert (again.queue_url, again.dead_letter_queue_arn, again.alert_topic_arn) == (
        res.queue_url,
        res.dead_letter_queue_arn,
        res.alert_topic_arn,
    )
    env = res.environment()
    assert env["LOGSIEVE_CLEAN_URI"] == f"s3://{names.clean_bucket}/{names.clean_prefix}"
    assert res.handler_config().alert_topic_arn == res.alert_topic_arn


def test_worker_drains_retries_and_dead_letters(aws_stack: Any) -> None:
    clients, res = aws_stack
    bucket = res.names.input_bucket
    good = {"w/one.jsonl": web_lines(TODAY), "w/two.jsonl.gz": mobile_lines(TODAY)}
    clients.s3.put_object(Bucket=bucket, Key="w/one.jsonl", Body=join_lines(good["w/one.jsonl"]))
    clients.s3.put_object(
        Bucket=bucket, Key="w/two.jsonl.gz", Body=gzip.compress(join_lines(good["w/two.jsonl.gz"]))
    )
    clients.s3.put_object(Bucket=bucket, Key="w/broken.jsonl.gz", Body=_truncated_gzip())

    worker = _worker(clients, res)
    outcomes = worker.drain_until_idle(timeout=60)

    attempts: dict[str, list[int]] = {}
    for outcome in outcomes:
        for delivery in outcome.deliveries:
            for obj in delivery.objects:
                attempts.setdefault(obj.ref.key, []).append(delivery.delivery.receive_count)
    # Successes are deleted after one receive; the broken object is tried maxReceiveCount times.
    assert attempts == {"w/one.jsonl": [1], "w/two.jsonl.gz": [1], "w/broken.jsonl.gz": [1, 2, 3]}
    assert queue_depth(clients.sqs, res.queue_url) == 0

    (letter,) = read_dead_letters(clients, res)
    record = json.loads(letter["body"])["Records"][0]
    assert record["s3"]["object"]["key"] == "w%2Fbroken.jsonl.gz"
    (alert,) = read_alerts(clients, res)
    assert alert["attributes"]["alert_type"] == ALERT_OBJECT_FAILED
    assert "w/broken.jsonl.gz" in alert["message"]

    clean = list_keys(clients.s3, res.names.clean_bucket, f"{res.names.clean_prefix}/date=")
    assert clean and not any("broken" in key for key in clean)


def test_run_forever_processes_until_stopped(aws_stack: Any) -> None:
    clients, res = aws_stack
    arrived = threading.Event()
    worker = _worker(clients, res, on_outcome=lambda outcome: arrived.set())
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        clients.s3.put_object(
            Bucket=res.names.input_bucket, Key="live.jsonl", Body=join_lines(web_lines(TODAY))
        )
        assert arrived.wait(timeout=30)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    (outcome,) = worker.outcomes
    assert outcome.failed_message_ids == []
    assert [o.ref.key for o in outcome.objects] == ["live.jsonl"]


def test_worker_refuses_a_tight_poll_loop(aws_stack: Any) -> None:
    clients, res = aws_stack
    with pytest.raises(ValueError, match="tight loop"):
        _worker(clients, res, wait_seconds=0)


def test_prepare_local_environment_keeps_what_is_set() -> None:
    env = {"AWS_ACCESS_KEY_ID": "mine", "AWS_REGION": "eu-west-1"}
    assert prepare_local_environment(env) == "eu-west-1"
    assert env["AWS_ACCESS_KEY_ID"] == "mine"
    assert env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert env["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required"
    assert prepare_local_environment({}) == "us-east-1"


def test_against_a_moto_server_on_loopback(moto_endpoint: str) -> None:
    """What `logsieve up` does: the same provision + worker, talking HTTP to a moto server."""
    clients = Clients.create(endpoint_url=moto_endpoint, region_name="us-east-1")
    res = provision(
        clients,
        ResourceNames(
            input_bucket="srv-in",
            clean_bucket="srv-clean",
            error_bucket="srv-err",
            queue="srv-q",
            dead_letter_queue="srv-dlq",
            alert_topic="srv-alerts",
            alert_queue="srv-inbox",
            visibility_timeout=1,
        ),
    )
    lines = web_lines(TODAY)
    clients.s3.put_object(Bucket="srv-in", Key="over http/x.jsonl", Body=join_lines(lines))
    clients.s3.put_object(Bucket="srv-in", Key="over http/broken.jsonl.gz", Body=_truncated_gzip())

    outcomes = _worker(clients, res).drain_until_idle(timeout=60)

    results = {o.ref.key: o for out in outcomes for o in out.objects}
    assert results["over http/x.jsonl"].ok
    result = results["over http/x.jsonl"].result
    assert result is not None and result.valid == sum(line.expect == "valid" for line in lines)
    stored = open_table(res.clean_uri, clients.s3)  # the Delta table, read over HTTP
    assert stored is not None and stored.to_pyarrow_table().num_rows == result.valid
    assert not results["over http/broken.jsonl.gz"].ok
    assert len(read_dead_letters(clients, res)) == 1
    assert [a["attributes"]["alert_type"] for a in read_alerts(clients, res)] == [
        ALERT_OBJECT_FAILED
    ]
