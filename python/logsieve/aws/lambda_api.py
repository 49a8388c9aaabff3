"""AWS Lambda entry point for the HTTP API: the same Starlette app, behind API Gateway.

API Gateway (HTTP API, payload format 2.0) invokes `handler`; mangum turns the event into an ASGI
request for `logsieve.api.app.create_app` and the response back into what API Gateway expects. The
app is built on the first request, not at import, and then kept for the warm container's lifetime,
so its `DeltaTable` (moved forward by incremental log reads) and per-file login cache carry over
between invocations. Configuration is the same as `logsieve serve`: LOGSIEVE_CLEAN_URI names the
clean Delta table (`s3://bucket/prefix`).
"""

from __future__ import annotations

from typing import Any

_ADAPTER: Any = None


def adapter() -> Any:
    """The mangum adapter around the app, created once per container."""
    global _ADAPTER
    if _ADAPTER is None:
        from mangum import Mangum

        from logsieve.api.app import create_app

        # The app keeps no resources that need start-up or shutdown, so no lifespan events.
        _ADAPTER = Mangum(create_app(), lifespan="off")
    return _ADAPTER


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point (`logsieve.aws.lambda_api.handler` in the template)."""
    return adapter()(event, context)


def reset() -> None:
    """Forget the app, so the next request reads the configuration again (tests, reloads)."""
    global _ADAPTER
    _ADAPTER = None


__all__ = ["adapter", "handler", "reset"]
