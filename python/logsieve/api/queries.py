"""The API's query parameters: `date` and `tz` parsed and checked; the UTC window of a day."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from datetime import time as time_of_day
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from logsieve.errors import QueryParameterError

if TYPE_CHECKING:
    pass

_UTC = timezone.utc


_ONE_US = timedelta(microseconds=1)


_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


_NOT_ZONE_NAMES = re.compile(r"(localtime|posixrules|(posix|right)/.*)\Z")


#: What each query parameter of /logins_today accepts, as told to a client that got it wrong.
ACCEPTED_PARAMETERS: dict[str, str] = {
    "date": "a calendar date as YYYY-MM-DD, e.g. 2025-08-20 (default: today in tz)",
    "tz": "an IANA time zone name such as UTC, Europe/Berlin or America/New_York (default: UTC)",
}


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


def parse_date(value: str, accepted: str = ACCEPTED_PARAMETERS["date"]) -> date:
    """A strict `YYYY-MM-DD` (no week dates, no basic format), as the partitions are named.

    `accepted`: what the 400 says the endpoint accepts (its own default day)."""
    if _DATE_RE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise QueryParameterError("date", f"date {_shorten(value)} is not a calendar date", accepted)


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
    return day_of(query_parameters(params, ACCEPTED_PARAMETERS), now)


def query_parameters(params: Iterable[tuple[str, str]], accepted: dict[str, str]) -> dict[str, str]:
    """The query's parameters by name; an unknown name or one given twice is a 400 naming it."""
    given: dict[str, str] = {}
    for name, value in params:
        if name not in accepted:
            raise QueryParameterError(
                name,
                f"unknown query parameter {_shorten(name)}",
                "only " + "; ".join(f"{k}: {v}" for k, v in accepted.items()),
            )
        if name in given:
            raise QueryParameterError(
                name, f"query parameter {name!r} given more than once", accepted[name]
            )
        given[name] = value
    return given


def day_of(given: dict[str, str], now: datetime) -> DayWindow:
    """The day that `date` and `tz` name (default: today in UTC); `now` decides what today is."""
    zone = parse_tz(given["tz"]) if "tz" in given else ZoneInfo("UTC")
    day = parse_date(given["date"]) if "date" in given else now.astimezone(zone).date()
    return day_window(day, zone)


def _shorten(value: str, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"
