"""The HTTP API over the clean Delta table: /logins_today, /readyz, /healthz, /openapi.json, /docs
(the dashboard at / and its endpoints are in `logsieve.api.dashboard`).

Every answer is counted from one committed snapshot of the table: the data files live at one
version, as the Delta log says (the directory also holds files that overwrites and compaction
have removed). One `DeltaTable` is kept and moved forward with `update_incremental()` at most
once per `refresh_interval` (1 s), which reads only the new commits' log entries. A question
reads only the files of the one or two `date` partitions its day touches, skips files whose
statistics rule it out, and keeps each file's login times by path: data files never change once
written, so after a commit only the files it added are read, and the ones it removed drop out.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

from logsieve import settings
from logsieve.api.dataset import DEFAULT_REFRESH_INTERVAL, CleanTable
from logsieve.api.openapi import DOCS_ASSETS, docs_page, openapi_document
from logsieve.api.queries import _UTC, parse_logins_query
from logsieve.api.responses import error_response, json_response
from logsieve.errors import ConfigError, QueryParameterError, SourceError

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from logsieve.api.dashboard import QueueProbe
    from logsieve.api.error_records import ErrorRecords


def create_app(
    clean_uri: str | None = None,
    *,
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
    errors_uri: str | None = None,
    queues: QueueProbe | None = None,
) -> Starlette:
    """The Starlette app over the table at `clean_uri` (default: $LOGSIEVE_CLEAN_URI).

    A local path without a Delta table is refused here (ConfigError), so a wrong `--clean`
    fails at start-up; an `s3://` location without one is served (the pipeline creates it).
    The error records are read from `errors_uri` (default: $LOGSIEVE_ERROR_URI, else a local
    table's sibling `errors/`); `queues`, when given, adds /queues for the dashboard.
    """
    import anyio.to_thread
    import pyarrow.parquet  # noqa: F401  (imported now, not on the first request)
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import HTMLResponse
    from starlette.routing import Route
    from starlette.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    from logsieve.api.activity import ActivityIndex
    from logsieve.api.dashboard import routes as dashboard_routes

    table = CleanTable(resolve_clean_uri(clean_uri), refresh_interval=refresh_interval)
    errors = open_error_records(errors_uri, table.uri, refresh_interval)
    activity = ActivityIndex(table)

    async def logins_today(request: Request) -> Response:
        try:
            window = parse_logins_query(request.query_params.multi_items(), datetime.now(_UTC))
        except QueryParameterError as exc:
            return error_response(400, str(exc), parameter=exc.parameter, accepted=exc.accepted)
        try:
            answer = table.cached_answer(window)
            if answer is None:
                answer = await anyio.to_thread.run_sync(table.answer, window)
        except SourceError as exc:
            return error_response(503, str(exc))
        body: dict[str, Any] = {
            "logins_today": answer.count,
            "date": window.day.isoformat(),
            "tz": window.tz,
        }
        if answer.version is not None:
            body["version"] = answer.version
        if answer.note:
            body["note"] = answer.note
        return json_response(body)

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        readiness = await anyio.to_thread.run_sync(table.readiness)
        if not readiness.ready:
            return error_response(503, readiness.reason or "not ready", status="not ready")
        return json_response({"status": "ready", "version": readiness.version})

    async def openapi(request: Request) -> Response:
        return json_response(openapi_document())

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_page(request.scope.get("root_path", "")))

    assets = StaticFiles(directory=os.fspath(swagger_ui_path))

    async def docs_asset(request: Request) -> Response:
        # Only what /docs uses: the package also ships Swagger's demo page (the petstore).
        name = request.path_params["name"]
        if name not in DOCS_ASSETS:
            raise HTTPException(404)
        return await assets.get_response(name, request.scope)  # ETags, 304s, HEAD

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        return error_response(500, f"internal error: {type(exc).__name__}")

    routes = [
        Route("/logins_today", logins_today, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route("/docs/assets/{name}", docs_asset, methods=["GET", "HEAD"]),
        *dashboard_routes(table, activity, errors, queues),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.table = table
    app.state.errors = errors
    app.state.activity = activity
    return app


def open_error_records(
    errors_uri: str | None, clean_uri: str, refresh_interval: float
) -> ErrorRecords | None:
    """The error records: the location given, else $LOGSIEVE_ERROR_URI, else a local table's
    sibling `errors/`; None when none is known (then /errors/summary says how to name one)."""
    from logsieve.api.error_records import ErrorRecords, default_error_uri

    uri = errors_uri or settings.value(settings.ERROR_URI)
    if uri:
        return ErrorRecords(uri, refresh_interval=refresh_interval)
    default = default_error_uri(clean_uri)
    if default is None:
        return None
    return ErrorRecords(default, refresh_interval=refresh_interval, required=False)


def resolve_clean_uri(clean_uri: str | None) -> str:
    """The clean table's location: the argument, else $LOGSIEVE_CLEAN_URI, else an error."""
    uri = clean_uri or settings.value(settings.CLEAN_URI)
    if not uri:
        raise ConfigError(f"no clean table given: pass --clean URI or set {settings.CLEAN_URI}")
    return uri
