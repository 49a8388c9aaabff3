"""Shared test set-up: no test may ever reach real AWS, whatever the developer's shell holds.

Also the fixtures several test files share: the moto server, and the real `logsieve` command in
a subprocess with the check of its promise for a user's mistake (exit 2, one line, no traceback).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import pytest

if TYPE_CHECKING:
    from logsieve.aws.clients import Clients
    from logsieve.sim.infra import Resources


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
    from logsieve.aws.clients import Clients
    from logsieve.sim.infra import ResourceNames, drain_queue, provision

    clients = Clients.create(endpoint_url=moto_endpoint, region_name="us-east-1")
    resources = provision(clients, ResourceNames(visibility_timeout=1))
    drain_queue(clients.sqs, resources.queue_url)
    for name, value in resources.environment().items():
        monkeypatch.setenv(name, value)
    yield clients, resources


class RunCli(Protocol):
    def __call__(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        without: Sequence[str] = (),
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]: ...


class Refused(Protocol):
    def __call__(
        self, *args: str, env: Mapping[str, str] | None = None, without: Sequence[str] = ()
    ) -> str: ...


def _run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    without: Sequence[str] = (),
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`logsieve ARGS` in a subprocess. `without` names modules it cannot import, as on an
    install without the extra that brings them (a None in sys.modules makes the import fail)."""
    if without:
        blocked = ", ".join(f"{name!r}: None" for name in without)
        program = (
            f"import sys; sys.modules.update({{{blocked}}}); "
            "from logsieve.cli import main; sys.exit(main(sys.argv[1:]))"
        )
        command = [sys.executable, "-c", program, *args]
    else:
        command = [sys.executable, "-m", "logsieve.cli", *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=None if env is None else dict(env),
        timeout=timeout,
        check=False,
    )


def _refused(*args: str, env: Mapping[str, str] | None = None, without: Sequence[str] = ()) -> str:
    proc = _run_cli(*args, env=env, without=without)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture
def run_cli() -> RunCli:
    """The real `logsieve` command in a subprocess: its exit status and exactly what it prints."""
    return _run_cli


@pytest.fixture
def refused() -> Refused:
    """Runs `logsieve ARGS`, which must refuse: exit 2, one line on stderr; returns that line."""
    return _refused


@pytest.fixture
def fresh_moto(moto_endpoint: str) -> Iterator[str]:
    """The session's moto server (on 127.0.0.1, reset), reset again afterwards: it runs in this
    process, whose moto state every in-process moto and moto server of the session shares."""
    import urllib.request

    yield moto_endpoint
    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
