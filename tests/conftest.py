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


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's threaded server on a free port of 127.0.0.1, for the whole session; its URL.

    A server, not in-process moto: delta-rs (the clean table's writer and reader) makes its own
    HTTP requests, which only a real endpoint answers.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto_endpoint(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The session's moto server, emptied, and AWS_ENDPOINT_URL pointing at it."""
    import urllib.request

    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    return moto_server


@pytest.fixture
def aws_stack(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Clients, Resources]]:
    """The moto server with the pipeline provisioned and the handler's LOGSIEVE_* env set.

    Yields (clients, resources); the work queue retries failed messages after 1 second and the
    test event moto sends when the notification is configured has been consumed.
    """
    from logsieve.infra import Clients, ResourceNames, drain_queue, provision

    clients = Clients.create(endpoint_url=moto_endpoint, region_name="us-east-1")
    resources = provision(clients, ResourceNames(visibility_timeout=1))
    drain_queue(clients.sqs, resources.queue_url)
    for name, value in resources.environment().items():
        monkeypatch.setenv(name, value)
    yield clients, resources
