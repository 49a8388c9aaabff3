"""Shared test set-up: no test may ever reach real AWS, whatever the developer's shell holds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from logsieve.infra import Clients, Resources


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    monkeypatch.setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")


@pytest.fixture
def aws_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Clients, Resources]]:
    """In-process moto with the pipeline provisioned and the handler's LOGSIEVE_* env set.

    Yields (clients, resources); the work queue retries failed messages after 1 second and the
    test event moto sends when the notification is configured has been consumed.
    """
    from moto import mock_aws

    from logsieve.infra import Clients, ResourceNames, drain_queue, provision

    with mock_aws():
        clients = Clients.create(region_name="us-east-1")
        resources = provision(clients, ResourceNames(visibility_timeout=1))
        drain_queue(clients.sqs, resources.queue_url)
        for name, value in resources.environment().items():
            monkeypatch.setenv(name, value)
        yield clients, resources
