"""The HTTP API over the clean dataset: /logins_today, /healthz, /openapi.json and /docs.

A request reads only the `date=YYYY-MM-DD` partitions its day touches (one, or two when a time
zone moves the day across UTC midnight) and only the `action` and `event_time` columns, so its
cost follows the size of one day, not the length of the history. Answers are cached per day and
time zone and stay valid while those partitions' file listings are unchanged; a listing is read
again once it is `listing_ttl` seconds old, which is how files written while we serve show up.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from datetime import time as time_of_day
from types import FrameType
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from logsieve.errors import ConfigError, InternalError, QueryParameterError, SourceError
from logsieve.storage import file_url_path

if TYPE_CHECKING:
    import pyarrow.fs
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

CLEAN_URI_ENV = "LOGSIEVE_CLEAN_URI"
DEFAULT_LISTING_TTL = 1.0
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
"""Log levels `serve` and `up` accept (uvicorn's names)."""
LOGIN_ACTION = "login"
_CACHE_ENTRIES = 4096
_UTC = timezone.utc
_ONE_US = timedelta(microseconds=1)
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: How Arrow's S3 filesystem words a failure to reach the endpoint (refused, reset, timed out).
_NETWORK_ERROR = "AWS Error NETWORK_CONNECTION"
_FOREVER = float("inf")
_NOT_ZONE_NAMES = re.compile(r"(localtime|posixrules|(posix|right)/.*)\Z")

#: What each query parameter of /logins_today accepts, as told to a client that got it wrong.
ACCEPTED_PARAMETERS: dict[str, str] = {
    "date": "a calendar date as YYYY-MM-DD, e.g. 2025-08-20 (default: today in tz)",
    "tz": "an IANA time zone name such as UTC, Europe/Berlin or America/New_York (default: UTC)",
}

# ----------------------------------------------------------------------------------------------
# The question: which day, in which zone


@dataclass(frozen=True)
class DayWindow:
    """One calendar day in one time zone as the inclusive UTC interval [first, last]."""

    day: date
    tz: str
    first: datetime
    last: datetime

    @property
    def partitions(self) -> tuple[str, ...]:
        """The UTC dates (partition names) the window touches: one or two, in order."""
        start, stop = self.first.date(), self.last.date()
        return tuple(
            (start + timedelta(days=i)).isoformat() for i in range((stop - start).days + 1)
        )

    def covers(self, partition: str) -> bool:
        """Whether the whole UTC day `partition` lies inside the window (always so for UTC)."""
        day = date.fromisoformat(partition)
        start = datetime(day.year, day.month, day.day, tzinfo=_UTC)
        end = start.replace(hour=23, minute=59, second=59, microsecond=999_999)
        return self.first <= start and end <= self.last


def day_window(day: date, zone: ZoneInfo) -> DayWindow:
    """The UTC instants of `day` as lived in `zone`, clamped to the years 0001-9999."""
    first = _utc_instant(day, zone, clamp=datetime.min)
    try:
        last = _utc_instant(day + timedelta(days=1), zone, clamp=datetime.max) - _ONE_US
    except OverflowError:  # 9999-12-31 has no next day: its last microsecond, if in range
        try:
            last = datetime.combine(day, time_of_day.max, tzinfo=zone).astimezone(_UTC)
        except OverflowError:
            last = datetime.max.replace(tzinfo=_UTC)
    return DayWindow(day, str(zone.key), first, min(last, datetime.max.replace(tzinfo=_UTC)))


def _utc_instant(day: date, zone: ZoneInfo, *, clamp: datetime) -> datetime:
    """Local midnight of `day` in UTC; `clamp` when that lies outside datetime's range."""
    try:
        return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(_UTC)
    except OverflowError:
        return clamp.replace(tzinfo=_UTC)


def parse_date(value: str) -> date:
    """A strict `YYYY-MM-DD` (no week dates, no basic format), as the partitions are named."""
    if _DATE_RE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise QueryParameterError(
        "date", f"date {_shorten(value)} is not a calendar date", ACCEPTED_PARAMETERS["date"]
    )


def parse_tz(value: str) -> ZoneInfo:
    """An IANA zone from the system's (or the tzdata package's) database.

    Files in the system's zoneinfo directory that are not zone names (`localtime`, whatever the
    server's clock is set to; `posixrules`; the `posix/` and `right/` copies) are refused: the
    answer must not depend on the machine that serves it.
    """
    try:
        if value and value == value.strip() and not _NOT_ZONE_NAMES.match(value):
            return ZoneInfo(value)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        pass
    hint = " (a '+' in a URL means a space: write it as %2B)" if " " in value else ""
    raise QueryParameterError(
        "tz",
        f"tz {_shorten(value)} is not an IANA time zone name{hint}",
        ACCEPTED_PARAMETERS["tz"],
    )


def parse_logins_query(params: Iterable[tuple[str, str]], now: datetime) -> DayWindow:
    """The window a /logins_today query asks about; `now` decides what "today" is."""
    given: dict[str, str] = {}
    for name, value in params:
        if name not in ACCEPTED_PARAMETERS:
            raise QueryParameterError(
                name,
                f"unknown query parameter {_shorten(name)}",
                "only " + "; ".join(f"{k}: {v}" for k, v in ACCEPTED_PARAMETERS.items()),
            )
        if name in given:
            raise QueryParameterError(
                name, f"query parameter {name!r} given more than once", ACCEPTED_PARAMETERS[name]
            )
        given[name] = value
    zone = parse_tz(given["tz"]) if "tz" in given else ZoneInfo("UTC")
    day = parse_date(given["date"]) if "date" in given else now.astimezone(zone).date()
    return day_window(day, zone)


def _shorten(value: str, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


# ----------------------------------------------------------------------------------------------
# The data: partitions listed on demand, counted with pyarrow.dataset, answers cached

#: One file of a partition as listed: (path, size, mtime in ns). A change in any means new data.
FileEntry = tuple[str, int, int]
Listing = tuple[FileEntry, ...]
K = TypeVar("K")
V = TypeVar("V")


class _BoundedCache(Generic[K, V]):
    """A small thread-safe LRU, so that odd queries cannot grow memory without bound."""

    def __init__(self, size: int = _CACHE_ENTRIES) -> None:
        self._size = size
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


@dataclass(frozen=True)
class LoginAnswer:
    """A count and, when there is no dataset at all, a note saying so."""

    count: int
    note: str | None = None


class CleanDataset:
    """The clean Parquet dataset at a local directory or `s3://bucket/prefix`, read by day."""

    def __init__(self, uri: str, *, listing_ttl: float = DEFAULT_LISTING_TTL) -> None:
        if not 0 <= listing_ttl < float("inf"):
            raise ConfigError(f"listing TTL must be a number of seconds >= 0, not {listing_ttl}")
        self.uri = uri
        self.listing_ttl = listing_ttl
        self._fs, self._root = open_clean_location(uri)
        self._listings: _BoundedCache[str, tuple[float, Listing]] = _BoundedCache()
        self._answers: _BoundedCache[tuple[date, str], tuple[tuple[Listing, ...], int]]
        self._answers = _BoundedCache()
        self._root_seen: tuple[float, bool] = (-1.0, False)  # (fresh until, any day stored)
        #: Per (day, tz): the listings a read failed on and the message, until they change.
        self._failures: _BoundedCache[tuple[date, str], tuple[tuple[Listing, ...], str]]
        self._failures = _BoundedCache()

    def cached_answer(self, window: DayWindow) -> LoginAnswer | None:
        """The answer if every listing it rests on is fresh and unchanged; never touches storage."""
        now = time.monotonic()
        listings = []
        for partition in window.partitions:
            entry = self._listings.get(partition)
            if entry is None or entry[0] < now:
                return None
            listings.append(entry[1])
        if not any(listings):
            fresh_until, exists = self._root_seen
            return self._empty_answer(exists) if fresh_until >= now else None
        hit = self._answers.get((window.day, window.tz))
        return LoginAnswer(hit[1]) if hit is not None and hit[0] == tuple(listings) else None

    def answer(self, window: DayWindow) -> LoginAnswer:
        """Count logins in the window, reading storage only where the listing changed."""
        import pyarrow as pa

        # OSError and ArrowInvalid (a ValueError) for unreadable files; ArrowNotImplementedError
        # and ArrowTypeError for a column of another type than logsieve writes.
        unreadable = (OSError, ValueError, pa.ArrowException)
        key = (window.day, window.tz)
        listings: tuple[Listing, ...] = ()
        try:
            listings = self._window_listings(window)
            failed = self._failures.get(key)
            if failed is not None and failed[0] == listings:  # the same bad file, still there
                raise SourceError(failed[1])
            try:
                return self._answer(window, listings)
            except unreadable as exc:
                if _NETWORK_ERROR in str(exc):  # storage unreachable: don't wait twice
                    raise
                # A file replaced or removed since it was listed? Only then is a retry worth it.
                self._listings.clear()
                fresh = self._window_listings(window)
                if fresh == listings:
                    raise
                listings = fresh
                return self._answer(window, listings)
        except unreadable as exc:
            network = _NETWORK_ERROR in str(exc)
            detail = _first_line(exc) if network else self._culprit(window, listings, exc)
            message = f"cannot read the clean dataset at {self.uri}: {detail}"
            if listings and not network:  # until the listing changes, the answer is the same
                self._failures.put(key, (listings, message))
            raise SourceError(message) from exc

    def _window_listings(self, window: DayWindow) -> tuple[Listing, ...]:
        return tuple(self._listing(partition) for partition in window.partitions)

    def _answer(self, window: DayWindow, listings: tuple[Listing, ...]) -> LoginAnswer:
        if not any(listings):
            return self._empty_answer(self._root_exists())
        self._root_seen = (_FOREVER, True)
        key = (window.day, window.tz)
        hit = self._answers.get(key)
        if hit is not None and hit[0] == listings:
            return LoginAnswer(hit[1])
        count = sum(self._count_logins(files, scope) for files, scope in _split(window, listings))
        self._answers.put(key, (listings, count))
        return LoginAnswer(count)

    def _culprit(self, window: DayWindow, listings: tuple[Listing, ...], exc: Exception) -> str:
        """The message, naming the file: if pyarrow's does not, the first that fails on its own."""
        import pyarrow as pa

        if any(path in str(exc) for listing in listings for path, _, _ in listing):
            return _first_line(exc)
        for files, scope in _split(window, listings):
            for entry in files:
                try:
                    self._count_logins([entry], scope)
                except (OSError, ValueError, pa.ArrowException) as culprit:
                    return f"{entry[0]}: {_first_line(culprit)}"
        return _first_line(exc)

    def _empty_answer(self, root_exists: bool) -> LoginAnswer:
        if root_exists:
            return LoginAnswer(0)
        return LoginAnswer(
            0, f"no clean dataset at {self.uri} yet: no date=YYYY-MM-DD partitions stored"
        )

    def _listing(self, partition: str) -> Listing:
        """The partition's Parquet files, re-read once the cached listing is `listing_ttl` old."""
        now = time.monotonic()
        entry = self._listings.get(partition)
        if entry is not None and entry[0] >= now:
            return entry[1]
        listing = self._list_partition(partition)
        self._listings.put(partition, (now + self.listing_ttl, listing))
        return listing

    def _list_partition(self, partition: str) -> Listing:
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(f"{self._root}/date={partition}", allow_not_found=True)
        files = [
            (info.path, info.size or 0, info.mtime_ns or 0)
            for info in self._fs.get_file_info(selector)
            if info.type == pafs.FileType.File
            and info.base_name.endswith(".parquet")
            and not info.base_name.startswith((".", "_"))  # writers' temporary files
        ]
        return tuple(sorted(files))

    def _root_exists(self) -> bool:
        """Whether any day is stored at all, re-checked like a listing.

        Looks for `date=` partitions rather than the root itself, so that an existing but wrong
        directory (or a prefix holding only `_logsieve/`) gets the same note as a missing one.
        """
        import pyarrow.fs as pafs

        now = time.monotonic()
        fresh_until, exists = self._root_seen
        if fresh_until < now:
            selector = pafs.FileSelector(self._root, allow_not_found=True)
            exists = any(
                info.type == pafs.FileType.Directory
                and info.base_name.startswith("date=")
                and _DATE_RE.fullmatch(info.base_name[len("date=") :]) is not None
                for info in self._fs.get_file_info(selector)
            )
            # Once a day was seen, it is never listed again: that listing grows with history.
            self._root_seen = (_FOREVER if exists else now + self.listing_ttl, exists)
        return exists

    def _count_logins(self, files: list[FileEntry], window: DayWindow | None) -> int:
        """Rows with action == login in `files`, and inside `window` unless it is None.

        Only `action` is read (as dictionary indices, not strings) and, when rows must be
        checked against the window, `event_time`. Files of a partition the window covers
        whole need no time check: the layout puts a row under the UTC date of its event_time.
        """
        if not files:
            return 0
        import pyarrow as pa
        import pyarrow.dataset as ds

        time_type = pa.timestamp("us", tz="UTC")
        columns = [("action", pa.dictionary(pa.int32(), pa.string()))]
        condition = ds.field("action") == LOGIN_ACTION
        if window is not None:
            columns.append(("event_time", time_type))
            event_time = ds.field("event_time")
            condition &= (event_time >= pa.scalar(window.first, time_type)) & (
                event_time <= pa.scalar(window.last, time_type)
            )
        parquet = ds.ParquetFileFormat(
            read_options=ds.ParquetReadOptions(dictionary_columns=["action"])
        )
        # Known sizes spare S3 a HEAD request per file before its footer is read.
        fragments = [
            parquet.make_fragment(path, filesystem=self._fs, file_size=size)
            for path, size, _ in files
        ]
        dataset = ds.FileSystemDataset(fragments, pa.schema(columns), parquet, self._fs)
        return int(dataset.count_rows(filter=condition))


def _split(
    window: DayWindow, listings: tuple[Listing, ...]
) -> list[tuple[list[FileEntry], DayWindow | None]]:
    """Files of partitions the window covers whole (no time check), then the others."""
    whole: list[FileEntry] = []
    partial: list[FileEntry] = []
    for partition, listing in zip(window.partitions, listings):
        (whole if window.covers(partition) else partial).extend(listing)
    return [(whole, None), (partial, window)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_clean_location(uri: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """A pyarrow filesystem and root path for a local directory or `s3://bucket/prefix`."""
    import pyarrow.fs as pafs

    if uri.startswith("s3://"):
        root = uri[len("s3://") :].strip("/")
        if not root:
            raise ConfigError(f"clean URI {uri!r} names no bucket: use s3://bucket/prefix")
        if "//" in root:
            raise ConfigError(f"clean URI {uri!r} has an empty path segment ('//')")
        return _s3_filesystem(), root
    if uri.startswith("file:"):
        uri = file_url_path(uri)
    elif "://" in uri:
        raise ConfigError(
            f"clean URI {uri!r} is not supported: use a local directory or s3://bucket/prefix"
        )
    path = os.path.abspath(os.path.expanduser(uri))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"clean dataset {path} is a file, not a directory")
    return pafs.LocalFileSystem(), path


def _s3_filesystem() -> pyarrow.fs.S3FileSystem:
    """S3 as boto3 would reach it: AWS_ENDPOINT_URL(_S3) and the region from the environment."""
    import pyarrow.fs as pafs

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    options: dict[str, Any] = {
        "region": region,  # explicit, so the SDK never asks the EC2 metadata service
        "connect_timeout": 2.0,
        "request_timeout": 5.0,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=2),
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options.update(_endpoint_options(endpoint))
    return pafs.S3FileSystem(**options)


# ----------------------------------------------------------------------------------------------
# The web application


def _endpoint_options(endpoint: str) -> dict[str, str]:
    """S3FileSystem's scheme and endpoint_override for an http(s)://host[:port] URL."""
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:  # a port out of range, an unclosed "["
        raise ConfigError(f"AWS endpoint URL {endpoint!r} is not a valid URL") from None
    problem = None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problem = "is not an http(s) URL"
    elif port == 0 or parts.netloc.endswith(":"):
        problem = "has no usable port"
    elif "@" in parts.netloc or "%" in parts.netloc:
        problem = "must be scheme://host[:port], without user info or escapes"
    elif parts.path not in ("", "/") or parts.query or parts.fragment:
        problem = "has a path, query or fragment, which S3 requests would not keep"
    if problem:
        raise ConfigError(f"AWS endpoint URL {endpoint!r} {problem}")
    return {"scheme": parts.scheme, "endpoint_override": parts.netloc}


def create_app(
    clean_uri: str | None = None, *, listing_ttl: float = DEFAULT_LISTING_TTL
) -> Starlette:
    """The Starlette app over `clean_uri` (default: $LOGSIEVE_CLEAN_URI)."""
    import anyio.to_thread
    import pyarrow.dataset  # noqa: F401  (imported now, not on the first request)
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import HTMLResponse
    from starlette.routing import Route
    from starlette.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    dataset = CleanDataset(resolve_clean_uri(clean_uri), listing_ttl=listing_ttl)

    async def logins_today(request: Request) -> Response:
        try:
            window = parse_logins_query(request.query_params.multi_items(), datetime.now(_UTC))
        except QueryParameterError as exc:
            return error_response(400, str(exc), parameter=exc.parameter, accepted=exc.accepted)
        answer = dataset.cached_answer(window)
        if answer is None:
            try:
                answer = await anyio.to_thread.run_sync(dataset.answer, window)
            except SourceError as exc:
                return error_response(503, str(exc))
        body: dict[str, Any] = {
            "logins_today": answer.count,
            "date": window.day.isoformat(),
            "tz": window.tz,
        }
        if answer.note:
            body["note"] = answer.note
        return json_response(body)

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

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
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route("/docs/assets/{name}", docs_asset, methods=["GET", "HEAD"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.dataset = dataset
    return app


def resolve_clean_uri(clean_uri: str | None) -> str:
    """The clean dataset's location: the argument, else $LOGSIEVE_CLEAN_URI, else an error."""
    uri = clean_uri or os.environ.get(CLEAN_URI_ENV, "").strip()
    if not uri:
        raise ConfigError(f"no clean dataset given: pass --clean URI or set {CLEAN_URI_ENV}")
    return uri


def json_response(body: Any, status_code: int = 200, headers: Any = None) -> Response:
    """A JSON response serialised by orjson."""
    import orjson
    from starlette.responses import Response

    return Response(
        orjson.dumps(body), status_code=status_code, headers=headers, media_type="application/json"
    )


def error_response(status_code: int, message: str, headers: Any = None, **fields: str) -> Response:
    """The one error shape every endpoint uses: {"error": ..., plus context fields}."""
    return json_response({"error": message, **fields}, status_code=status_code, headers=headers)


#: The files of the swagger-ui-bundle package that /docs loads, and all that is served of it.
DOCS_ASSETS = ("swagger-ui.css", "favicon-32x32.png", "swagger-ui-bundle.js")


def docs_page(root_path: str = "") -> str:
    """Swagger UI wired to our own assets and document: it loads nothing from the network."""
    assets = f"{root_path}/docs/assets"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>logsieve API</title>
<link rel="stylesheet" href="{assets}/{DOCS_ASSETS[0]}">
<link rel="icon" type="image/png" href="{assets}/{DOCS_ASSETS[1]}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/{DOCS_ASSETS[2]}"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "{root_path}/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
}});
</script>
</body>
</html>
"""


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3 description of every endpoint, parameter and response."""
    from logsieve import __version__

    def json_content(schema_ref: str) -> dict[str, Any]:
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}

    error_400 = {
        "description": "An unknown or malformed query parameter; the body names it.",
        "content": json_content("ParameterError"),
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "logsieve API",
            "version": __version__,
            "description": "Questions about the clean, date-partitioned log dataset.",
        },
        "paths": {
            "/logins_today": {
                "get": {
                    "operationId": "loginsToday",
                    "summary": "Count logins on one day",
                    "description": (
                        "Rows whose action is `login` and whose event time falls on the given "
                        "day in the given time zone (by default: today, UTC). Reads only the "
                        "one or two UTC date partitions that day touches."
                    ),
                    "parameters": [
                        {
                            "name": "date",
                            "in": "query",
                            "required": False,
                            "description": ACCEPTED_PARAMETERS["date"],
                            "schema": {"type": "string", "format": "date"},
                            "example": "2025-08-20",
                        },
                        {
                            "name": "tz",
                            "in": "query",
                            "required": False,
                            "description": ACCEPTED_PARAMETERS["tz"],
                            "schema": {"type": "string", "default": "UTC"},
                            "example": "Europe/Berlin",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The count for that day.",
                            "content": json_content("LoginsToday"),
                        },
                        "400": error_400,
                        "503": {
                            "description": "The clean dataset could not be read.",
                            "content": json_content("Error"),
                        },
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness check",
                    "responses": {
                        "200": {
                            "description": "The server is up.",
                            "content": json_content("Health"),
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This OpenAPI document",
                    "responses": {
                        "200": {
                            "description": "The OpenAPI 3 document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            "/docs": {
                "get": {
                    "operationId": "docs",
                    "summary": "Interactive documentation (Swagger UI, served locally)",
                    "responses": {
                        "200": {
                            "description": "An HTML page.",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "LoginsToday": {
                    "type": "object",
                    "required": ["logins_today", "date", "tz"],
                    "properties": {
                        "logins_today": {"type": "integer", "minimum": 0},
                        "date": {"type": "string", "format": "date"},
                        "tz": {"type": "string", "description": "The zone the day is in."},
                        "note": {
                            "type": "string",
                            "description": "Present when there is no dataset yet (count 0).",
                        },
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"type": "string", "enum": ["ok"]}},
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "ParameterError": {
                    "type": "object",
                    "required": ["error", "parameter", "accepted"],
                    "properties": {
                        "error": {"type": "string"},
                        "parameter": {"type": "string", "description": "The parameter at fault."},
                        "accepted": {"type": "string", "description": "What it accepts."},
                    },
                },
            }
        },
    }


# ----------------------------------------------------------------------------------------------
# Serving: uvicorn in a thread, so the main thread keeps the signals


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket, bound up front so a busy port is a clear one-line error."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is not a TCP port number (0-65535; 0 picks a free one)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


class BackgroundServer:
    """uvicorn serving an ASGI app from a daemon thread; `with` starts it and stops it."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
        access_log: bool = False,
    ) -> None:
        import uvicorn

        self.socket = bind_socket(host, port)
        self.host = host
        self.port: int = self.socket.getsockname()[1]
        config = uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self.socket]},
            name="logsieve-api",
            daemon=True,
        )

    @property
    def url(self) -> str:
        """A URL clients can use: a wildcard address (0.0.0.0, ::) is reached through loopback."""
        return f"http://{url_host(self.host)}:{self.port}"

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self, timeout: float = 15.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise InternalError(f"the HTTP server on {self.url} did not start")
            time.sleep(0.01)

    def stop(self, timeout: float = 15.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.socket.close()

    def __enter__(self) -> BackgroundServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def shutdown_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while inside; the previous handlers come back after."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def port_number(text: str) -> int:
    """argparse type for a TCP port: 0-65535, where 0 asks the system for a free one."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number 0-65535")
    return port


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clean",
        metavar="URI",
        default=None,
        help=f"clean dataset: a directory or s3://bucket/prefix (default: ${CLEAN_URI_ENV})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=port_number, default=8000, help="port (0: a free one)")
    parser.add_argument(
        "--listing-ttl",
        type=float,
        default=DEFAULT_LISTING_TTL,
        metavar="SECONDS",
        help="how long a partition listing is trusted before new files are looked for",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=LOG_LEVELS,
        help="uvicorn's log level",
    )


def url_host(host: str) -> str:
    """`host` as it goes in a URL that clients connect to: a wildcard is reached via loopback."""
    if is_wildcard(host):
        host = "::1" if ":" in host else "127.0.0.1"
    return f"[{host.replace('%', '%25')}]" if ":" in host else host


def is_wildcard(host: str) -> bool:
    """Whether binding `host` listens on every interface (0.0.0.0, ::, 0, ::0 ...)."""
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return host == "0"  # what inet_aton reads as 0.0.0.0


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM, then stop cleanly."""
    app = create_app(args.clean, listing_ttl=args.listing_ttl)
    server = BackgroundServer(
        app, args.host, args.port, log_level=args.log_level, access_log=args.access_log
    )
    with shutdown_signals() as stop, server:
        print(
            f"logsieve serve: {app.state.dataset.uri} on {server.url}"
            f"{' (listening on every interface)' if is_wildcard(args.host) else ''}\n"
            f"  curl '{server.url}/logins_today?date=YYYY-MM-DD&tz=Europe/Berlin'\n"
            f"  API docs: {server.url}/docs   (Ctrl-C stops)",
            flush=True,
        )
        while not stop.wait(0.2):
            if not server.alive:
                print("logsieve serve: the HTTP server stopped unexpectedly", file=sys.stderr)
                return 1
    print("logsieve serve: stopped", flush=True)
    return 0
