"""The boto3 clients the handler, the worker and provisioning share: one per service, from one
session (creating sessions is slow and not thread-safe)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

_SESSION_LOCK = threading.Lock()


_SESSION: Any = None


def _shared_session() -> Any:
    """One boto3 session for the process: it caches service models, making clients cheap."""
    global _SESSION
    if _SESSION is None:
        import boto3

        _SESSION = boto3.session.Session()
    return _SESSION


@dataclass(frozen=True)
class Clients:
    """One boto3 client per service, shared by provisioning, the handler and the worker."""

    s3: Any
    sqs: Any
    sns: Any
    cloudwatch: Any

    @classmethod
    def create(cls, *, endpoint_url: str | None = None, region_name: str | None = None) -> Clients:
        """Clients for `endpoint_url` (a moto server) or, when None, boto3's usual resolution."""
        from botocore.config import Config

        config = Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 3, "mode": "standard"},
        )
        with _SESSION_LOCK:
            session = _shared_session()

            def client(service: str) -> Any:
                return session.client(
                    service, region_name=region_name, endpoint_url=endpoint_url, config=config
                )

            return cls(
                s3=client("s3"),
                sqs=client("sqs"),
                sns=client("sns"),
                cloudwatch=client("cloudwatch"),
            )

    @property
    def region(self) -> str:
        return str(self.sqs.meta.region_name)
