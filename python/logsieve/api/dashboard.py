"""The dashboard at `GET /` and the questions it asks: /actions, /activity, /errors/summary,
/sources and, under `logsieve up`, /queues.

The page (`static/dashboard.html`) is one HTML file with its own CSS, JavaScript and SVG charts:
it loads nothing from the network and draws everything from these endpoints, asking again
every few seconds. The endpoints follow /logins_today's rules: one table snapshot per answer
(its `version` is in the answer), a 400 naming a bad parameter, a 503 for storage that cannot
be read.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from logsieve.api.dataset import _S3_TIMEOUT, CleanTable, _BoundedCache, _first_line
from logsieve.api.queries import ACCEPTED_PARAMETERS, day_of, parse_date, query_parameters
from logsieve.api.responses import error_response, json_response
from logsieve.errors import QueryParameterError, SourceError
from logsieve.locations import filesystem

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from logsieve.api.activity import ActivityIndex, DayActivity
    from logsieve.api.error_records import ErrorRecords

_UTC = timezone.utc
#: Commits looked at, newest first, to find the latest ingests (compactions are skipped).
_LOG_LOOKBACK = 200
_APP_ID_PREFIX = "logsieve:"
#: The commitInfo key a replay's commit carries (storage/replay.py): its rows are error records
#: run through the core again, not a new ingest of the sources it names.
_REPLAY_KEY = "logsieve.storage.replay"

DAY_PARAMETERS = {"date": ACCEPTED_PARAMETERS["date"], "tz": ACCEPTED_PARAMETERS["tz"]}
ACTIVITY_PARAMETERS = {
    **DAY_PARAMETERS,
    "action": "an action name, matched exactly, e.g. login (default: every action)",
}
ERROR_PARAMETERS = {
    "date": (
        "a calendar date as YYYY-MM-DD: the UTC day the invalid lines arrived "
        "(default: today in UTC)"
    ),
}
SOURCES_PARAMETERS = {"limit": "a whole number of ingest commits, 1 to 100 (default: 10)"}


# ----------------------------------------------------------------------------------------------
# Latest ingests, from the Delta log


@dataclass(frozen=True)
class Ingest:
    """One commit that ingested sources: when, which, how many rows it added, on which dates."""

    version: int
    committed_at: datetime | None
    operation: str
    source_ids: tuple[str, ...]
    names: tuple[str, ...]  #: the names of sources whose data files hold only them
    rows: int
    dates: tuple[str, ...]
    #: A `logsieve replay` commit: rows added to sources already stored, not a new ingest.
    replay: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "committed_at": _iso_utc(self.committed_at) if self.committed_at else None,
            "operation": self.operation,
            "replay": self.replay,
            "sources": list(self.names),
            "source_count": len(self.source_ids),
            "source_ids": list(self.source_ids),
            "rows": self.rows,
            "dates": list(self.dates),
        }


@dataclass(frozen=True)
class IngestHistory:
    """The newest ingests of one table version (None: no table yet), newest first."""

    version: int | None
    ingests: list[Ingest]


@dataclass(frozen=True)
class _Commit:
    """A commit file as read: its ingest, or None for another operation (a compaction)."""

    ingest: Ingest | None


class IngestLog:
    """The table's latest ingest commits, read from the commit files of its Delta log.

    Each commit names its sources in application transactions (`logsieve:<source_id>`), as
    the writer records them; compactions carry none and are skipped. Commit files never change,
    so each is read once.
    """

    def __init__(self, table: CleanTable) -> None:
        self.table = table
        self._fs, self._root = filesystem(table.uri, timeout_seconds=_S3_TIMEOUT)
        self._commits: _BoundedCache[int, _Commit] = _BoundedCache(_LOG_LOOKBACK * 2)

    def latest(self, limit: int) -> IngestHistory:
        """The snapshot's `limit` newest ingests."""
        version = self.table.snapshot().version
        if version is None:
            return IngestHistory(None, [])
        found: list[Ingest] = []
        for number in range(version, max(-1, version - _LOG_LOOKBACK), -1):
            commit = self._commits.get(number)
            if commit is None:
                commit = _Commit(self._read_commit(number))
                self._commits.put(number, commit)
            if commit.ingest is not None:
                found.append(commit.ingest)
                if len(found) == limit:
                    break
        return IngestHistory(version, found)

    def _read_commit(self, number: int) -> Ingest | None:
        """The commit's ingest, or None for another operation or a commit file gone (the log
        keeps about 30 days after a checkpoint)."""
        import orjson

        path = f"{self._root}/_delta_log/{number:020d}.json"
        try:
            with self._fs.open_input_stream(path) as stream:
                data = stream.read()
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise SourceError(
                f"cannot read the Delta table at {self.table.uri}: {_first_line(exc)}"
            ) from exc
        info: dict[str, Any] = {}
        ids: list[str] = []
        names: set[str] = set()
        rows = 0
        dates: set[str] = set()
        for line in data.splitlines():
            try:
                action = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if "commitInfo" in action:
                info = action["commitInfo"] or {}
            elif "txn" in action:
                app = str((action["txn"] or {}).get("appId", ""))
                if app.startswith(_APP_ID_PREFIX):
                    ids.append(app[len(_APP_ID_PREFIX) :])
            elif "add" in action:
                add = action["add"] or {}
                dates.update(str(v) for v in (add.get("partitionValues") or {}).values() if v)
                stats = _stats(add.get("stats"))
                rows += int(stats.get("numRecords") or 0)
                low = (stats.get("minValues") or {}).get("source")
                high = (stats.get("maxValues") or {}).get("source")
                if isinstance(low, str) and low == high:
                    names.add(low)
        if not ids:
            return None
        millis = info.get("timestamp")
        committed = datetime.fromtimestamp(millis / 1000, _UTC) if isinstance(millis, int) else None
        return Ingest(
            number,
            committed,
            str(info.get("operation") or ""),
            tuple(sorted(ids)),
            tuple(sorted(names)),
            rows,
            tuple(sorted(dates)),
            replay=_REPLAY_KEY in info,
        )


def _stats(text: Any) -> dict[str, Any]:
    import orjson

    if not isinstance(text, str):
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


# ----------------------------------------------------------------------------------------------
# Queue depths, when the server runs beside a queue (`logsieve up`)


@dataclass(frozen=True)
class QueueDepth:
    """One SQS queue's messages: waiting, being processed, delayed."""

    name: str
    url: str
    visible: int
    in_flight: int
    delayed: int


class QueueProbe:
    """Asks SQS how many messages each named queue holds (the work queue, its dead letters)."""

    _ATTRIBUTES: ClassVar[dict[str, str]] = {
        "visible": "ApproximateNumberOfMessages",
        "in_flight": "ApproximateNumberOfMessagesNotVisible",
        "delayed": "ApproximateNumberOfMessagesDelayed",
    }

    def __init__(self, sqs: Any, queues: dict[str, str]) -> None:
        self.sqs = sqs
        self.queues = dict(queues)
        self._lock = threading.Lock()  # one boto3 client, asked from worker threads

    def depths(self) -> list[QueueDepth]:
        out = []
        for name, url in self.queues.items():
            try:
                with self._lock:
                    reply = self.sqs.get_queue_attributes(
                        QueueUrl=url, AttributeNames=list(self._ATTRIBUTES.values())
                    )
            except Exception as exc:  # botocore's errors: unreachable endpoint, no such queue
                raise SourceError(f"cannot read queue {name} at {url}: {_first_line(exc)}") from exc
            attributes = reply.get("Attributes", {})
            counts = {k: int(attributes.get(v, 0)) for k, v in self._ATTRIBUTES.items()}
            out.append(QueueDepth(name, url, **counts))
        return out


# ----------------------------------------------------------------------------------------------
# The routes


@functools.cache
def dashboard_html() -> str:
    """The page, a data file of the package."""
    from importlib.resources import files

    return (files("logsieve.api") / "static" / "dashboard.html").read_text(encoding="utf-8")


def routes(
    table: CleanTable,
    activity: ActivityIndex,
    errors: ErrorRecords | None,
    queues: QueueProbe | None,
) -> list[Route]:
    """The dashboard's routes over the app's table (and error records and queues, if known)."""
    import anyio.to_thread
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    log = IngestLog(table)

    async def run(work: Callable[[], Any]) -> Any:
        return await anyio.to_thread.run_sync(work)

    async def page(request: Request) -> Response:
        return HTMLResponse(dashboard_html(), headers={"Cache-Control": "no-cache"})

    async def actions(request: Request) -> Response:
        try:
            window = day_of(_params(request, DAY_PARAMETERS), datetime.now(_UTC))
            day = await run(lambda: activity.day(window))
        except QueryParameterError as exc:
            return _bad_parameter(exc)
        except SourceError as exc:
            return error_response(503, str(exc))
        totals = day.totals()
        body = {"date": window.day.isoformat(), "tz": window.tz, "actions": totals}
        body["total"] = sum(totals.values())
        return json_response(_versioned(body, day))

    async def hourly(request: Request) -> Response:
        try:
            given = _params(request, ACTIVITY_PARAMETERS)
            action = given.get("action")
            if action is not None and not action:
                raise QueryParameterError(
                    "action", "action is empty", ACTIVITY_PARAMETERS["action"]
                )
            window = day_of(given, datetime.now(_UTC))
            day = await run(lambda: activity.day(window))
        except QueryParameterError as exc:
            return _bad_parameter(exc)
        except SourceError as exc:
            return error_response(503, str(exc))
        counts = day.per_hour(action)
        hours = [
            {"start": hour.start.isoformat(), "utc_start": _iso_utc(hour.utc_start), "count": n}
            for hour, n in zip(day.hours, counts)
        ]
        body: dict[str, Any] = {"date": window.day.isoformat(), "tz": window.tz, "action": action}
        body.update({"hours": hours, "total": sum(counts)})
        return json_response(_versioned(body, day))

    async def error_summary(request: Request) -> Response:
        try:
            given = _params(request, ERROR_PARAMETERS)
            day = (
                parse_date(given["date"], ERROR_PARAMETERS["date"])
                if "date" in given
                else datetime.now(_UTC).date()
            )
        except QueryParameterError as exc:
            return _bad_parameter(exc)
        if errors is None:
            return error_response(
                404,
                "this server knows no error records: start it with --errors URI "
                "(or LOGSIEVE_ERROR_URI)",
            )
        try:
            summary = await run(lambda: errors.summary(day))
        except SourceError as exc:
            return error_response(503, str(exc))
        body: dict[str, Any] = {
            "date": day.isoformat(),
            "total": summary.total,
            "by_code": summary.by_code,
            "samples": summary.samples,
            "by_hour": list(summary.by_hour),
            "unplaced": summary.unplaced,
            "files": summary.files,
        }
        if summary.unreadable:
            body["unreadable"] = summary.unreadable
        if summary.note:
            body["note"] = summary.note
        return json_response(body)

    async def sources(request: Request) -> Response:
        try:
            given = _params(request, SOURCES_PARAMETERS)
            limit = _limit(given.get("limit", "10"))
            history = await run(lambda: log.latest(limit))
        except QueryParameterError as exc:
            return _bad_parameter(exc)
        except SourceError as exc:
            return error_response(503, str(exc))
        body: dict[str, Any] = {"ingests": [one.to_json() for one in history.ingests]}
        if history.version is not None:
            body["version"] = history.version
        return json_response(body)

    async def queue_depths(request: Request) -> Response:
        assert queues is not None
        try:
            _params(request, {})
            depths = await run(queues.depths)
        except QueryParameterError as exc:
            return _bad_parameter(exc)
        except SourceError as exc:
            return error_response(503, str(exc))
        return json_response({"queues": [d.__dict__ for d in depths]})

    found = [
        Route("/", page, methods=["GET"]),
        Route("/actions", actions, methods=["GET"]),
        Route("/activity", hourly, methods=["GET"]),
        Route("/errors/summary", error_summary, methods=["GET"]),
        Route("/sources", sources, methods=["GET"]),
    ]
    if queues is not None:
        found.append(Route("/queues", queue_depths, methods=["GET"]))
    return found


def _params(request: Request, accepted: dict[str, str]) -> dict[str, str]:
    return query_parameters(request.query_params.multi_items(), accepted)


def _bad_parameter(exc: QueryParameterError) -> Response:
    return error_response(400, str(exc), parameter=exc.parameter, accepted=exc.accepted)


def _limit(text: str) -> int:
    if text.isascii() and text.isdigit() and 1 <= int(text) <= 100:
        return int(text)
    raise QueryParameterError(
        "limit", f"limit {text[:40]!r} is not a number from 1 to 100", SOURCES_PARAMETERS["limit"]
    )


def _versioned(body: dict[str, Any], day: DayActivity) -> dict[str, Any]:
    if day.version is not None:
        body["version"] = day.version
    if day.note:
        body["note"] = day.note
    return body


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(_UTC).isoformat().replace("+00:00", "Z")


# ----------------------------------------------------------------------------------------------
# OpenAPI


def openapi_paths() -> dict[str, Any]:
    """The OpenAPI description of the dashboard and its endpoints (merged into api's)."""

    def content(name: str) -> dict[str, Any]:
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}

    def query(name: str, accepted: dict[str, str], schema: dict[str, Any], example: str) -> Any:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "description": accepted[name],
            "schema": schema,
            "example": example,
        }

    date_param = query("date", DAY_PARAMETERS, {"type": "string", "format": "date"}, "2025-08-20")
    tz_param = query("tz", DAY_PARAMETERS, {"type": "string", "default": "UTC"}, "Europe/Berlin")
    bad = {
        "description": "An unknown or malformed query parameter; the body names it.",
        "content": content("ParameterError"),
    }
    unreadable = {
        "description": "The table or the records could not be read.",
        "content": content("Error"),
    }

    def get(operation: str, summary: str, description: str, params: list[Any], ok: Any) -> Any:
        responses: dict[str, Any] = {"200": ok}
        if params is not None:
            responses["400"] = bad
        responses["503"] = unreadable
        return {
            "get": {
                "operationId": operation,
                "summary": summary,
                "description": description,
                "parameters": params,
                "responses": responses,
            }
        }

    errors = get(
        "errorSummary",
        "Invalid lines of one UTC day by error code, with samples",
        "The error records filed under that UTC day (the day their source arrived): counts by "
        "error code, the first few records of each code, and lines per UTC hour by when their "
        "error file was written. 404 when the server knows no error-record location.",
        [query("date", ERROR_PARAMETERS, {"type": "string", "format": "date"}, "2025-08-20")],
        {"description": "The day's invalid lines.", "content": content("ErrorSummary")},
    )
    errors["get"]["responses"]["404"] = {
        "description": "No error-record location (start with --errors).",
        "content": content("Error"),
    }
    return {
        "/": {
            "get": {
                "operationId": "dashboard",
                "summary": "The dashboard (HTML, loads nothing from the network)",
                "responses": {
                    "200": {
                        "description": "An HTML page drawing charts from the endpoints below.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/actions": get(
            "actions",
            "Every action of one day with its count",
            "Rows per action whose event time falls on the day in the zone (default: today, "
            "UTC), counted in one committed table version. Actions with no rows are absent.",
            [date_param, tz_param],
            {"description": "The day's actions.", "content": content("Actions")},
        ),
        "/activity": get(
            "activity",
            "Counts per local hour of one day",
            "The day's rows per local hour (of one action, or of all), each hour with its local "
            "and UTC start. A day with a DST change has 23 or 25 hours; a repeated wall-clock "
            "hour appears twice, once per UTC offset.",
            [
                date_param,
                tz_param,
                query("action", ACTIVITY_PARAMETERS, {"type": "string"}, "login"),
            ],
            {"description": "The day's hours.", "content": content("Activity")},
        ),
        "/errors/summary": errors,
        "/sources": get(
            "sources",
            "The latest ingests",
            "The newest commits that ingested sources (from the Delta log), newest first: "
            "when, which sources, rows added, dates touched. Compactions are left out. A "
            "`logsieve replay` commit is listed with `replay: true`: its rows are error records "
            "that now pass, added to sources already stored, not a new ingest of them.",
            [query("limit", SOURCES_PARAMETERS, {"type": "integer", "default": 10}, "10")],
            {"description": "The latest ingests.", "content": content("Sources")},
        ),
        "/queues": get(
            "queues",
            "Work queue and dead-letter queue depth (only under `logsieve up`)",
            "Messages waiting, in flight and delayed per queue. The route exists only when the "
            "server runs beside a queue; elsewhere it is a 404.",
            [],
            {"description": "Each queue's depth.", "content": content("Queues")},
        ),
    }


def openapi_schemas() -> dict[str, Any]:
    """The response schemas of `openapi_paths`."""
    count = {"type": "integer", "minimum": 0}
    version = {"type": "integer", "minimum": 0, "description": "The table version counted."}
    note = {"type": "string", "description": "Present when there is no table yet."}
    counts_by_name = {"type": "object", "additionalProperties": count}
    return {
        "Actions": {
            "type": "object",
            "required": ["date", "tz", "actions", "total"],
            "properties": {
                "date": {"type": "string", "format": "date"},
                "tz": {"type": "string"},
                "actions": counts_by_name,
                "total": count,
                "version": version,
                "note": note,
            },
        },
        "Activity": {
            "type": "object",
            "required": ["date", "tz", "action", "hours", "total"],
            "properties": {
                "date": {"type": "string", "format": "date"},
                "tz": {"type": "string"},
                "action": {"type": "string", "nullable": True},
                "hours": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["start", "utc_start", "count"],
                        "properties": {
                            "start": {"type": "string", "format": "date-time"},
                            "utc_start": {"type": "string", "format": "date-time"},
                            "count": count,
                        },
                    },
                },
                "total": count,
                "version": version,
                "note": note,
            },
        },
        "ErrorSummary": {
            "type": "object",
            "required": ["date", "total", "by_code", "samples", "by_hour", "unplaced", "files"],
            "properties": {
                "date": {"type": "string", "format": "date"},
                "total": count,
                "by_code": counts_by_name,
                "samples": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "source": {"type": "string"},
                                "line": {"type": "integer"},
                                "detail": {"type": "string"},
                                "raw": {"type": "string"},
                                "raw_base64": {"type": "string"},
                                "truncated": {"type": "boolean"},
                            },
                        },
                    },
                },
                "by_hour": {"type": "array", "items": count, "minItems": 24, "maxItems": 24},
                "unplaced": count,
                "files": count,
                "unreadable": count,
                "note": {"type": "string"},
            },
        },
        "Sources": {
            "type": "object",
            "required": ["ingests"],
            "properties": {
                "version": version,
                "ingests": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": [
                            "version",
                            "replay",
                            "sources",
                            "source_count",
                            "rows",
                            "dates",
                        ],
                        "properties": {
                            "version": {"type": "integer"},
                            "committed_at": {
                                "type": "string",
                                "format": "date-time",
                                "nullable": True,
                            },
                            "operation": {
                                "type": "string",
                                "description": "The Delta operation (WRITE for an ingest and "
                                "for a replay alike).",
                            },
                            "replay": {
                                "type": "boolean",
                                "description": "A `logsieve replay` commit: error records that "
                                "now pass, added to sources already stored (`rows` counts them), "
                                "not a new ingest.",
                            },
                            "sources": {"type": "array", "items": {"type": "string"}},
                            "source_count": count,
                            "source_ids": {"type": "array", "items": {"type": "string"}},
                            "rows": count,
                            "dates": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                },
            },
        },
        "Queues": {
            "type": "object",
            "required": ["queues"],
            "properties": {
                "queues": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "url", "visible", "in_flight", "delayed"],
                        "properties": {
                            "name": {"type": "string"},
                            "url": {"type": "string"},
                            "visible": count,
                            "in_flight": count,
                            "delayed": count,
                        },
                    },
                }
            },
        },
    }
