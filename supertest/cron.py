"""Cron expressions in a time zone, through cronsim: checking them, their next times, their words.

No parsing of our own: cronsim reads the 5 fields and walks the calendar, handling daylight-saving
changes as Debian's cron does (a fixed-time job in a skipped hour runs once when the clock jumps, a
job in a repeated hour runs once; "every 15 minutes" runs through both).
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice, takewhile
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MAX_CRON_CHARS = 200
# How many fire times the "too frequent" check looks at: enough to see the closest two of any
# expression that fires in bursts (`0-4 9 * * *` bursts daily), bounded so that a check costs
# milliseconds (cronsim takes some 20 µs a time).
GAP_SAMPLE = 1500
GAP_SAMPLE_YEARS = timedelta(days=29 * 366)  # weekdays fall on the same dates again within 28 years


class CronError(ValueError):
    """A schedule we refuse; `field` is `cron` or `timezone`."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def zone(name: Any) -> ZoneInfo:
    """The IANA time zone called `name` (from the tzdata package where the system has none)."""
    if not isinstance(name, str) or not name.strip() or len(name) > 64 or ".." in name or name.startswith("/"):
        raise CronError("timezone must be an IANA time zone name such as Europe/Berlin or UTC", "timezone")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC",
                        "timezone") from None


def fire_times(cron: str, timezone: str, after: datetime) -> Iterator[datetime]:
    """The times `cron` fires in `timezone` strictly after `after`, in UTC. Ends (after at most 50
    years of calendar, cronsim's own bound) for an expression that never fires again."""
    tz = zone(timezone)
    try:
        times = CronSim(cron, as_utc(after).astimezone(tz))
    except CronSimError as error:
        raise CronError(f"not a valid cron expression: {error}", "cron") from None
    return _in_utc(times)


def _in_utc(times: CronSim) -> Iterator[datetime]:
    try:
        for moment in times:
            yield moment.astimezone(UTC)
    except OverflowError:  # past the year 9999: `0 0 * 2 1#5` (a Monday the 29th of February) gets there
        return


def next_times(cron: str, timezone: str, after: datetime, count: int) -> list[datetime]:
    return list(islice(fire_times(cron, timezone, after), count))


def check(cron: Any, timezone: str, min_seconds: int, now: datetime) -> str:
    """The expression, tidied, if it is valid, fires at all, and never twice within `min_seconds`;
    a CronError naming the field otherwise."""
    if not isinstance(cron, str) or not cron.strip():
        raise CronError("cron is required: five fields, such as */10 * * * *", "cron")
    if len(cron) > MAX_CRON_CHARS or "\x00" in cron:
        raise CronError(f"cron must be at most {MAX_CRON_CHARS} characters", "cron")
    cron = " ".join(cron.split())
    if len(cron.split(" ")) != 5:
        raise CronError("cron must have five fields: minute hour day-of-month month day-of-week", "cron")
    fires = fire_times(cron, timezone, now)
    first = next(fires, None)
    # Within GAP_SAMPLE_YEARS of the first: a rare expression (a Monday the 29th of February) would
    # otherwise have cronsim walk GAP_SAMPLE of its times through thousands of years, for each request.
    times = [] if first is None else [first, *takewhile(
        lambda moment: moment < first + GAP_SAMPLE_YEARS, islice(fires, GAP_SAMPLE - 1))]
    if not times:
        raise CronError(f"{cron!r} never fires", "cron")
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(times, times[1:], strict=False)]
    if gaps and min(gaps) < min_seconds:
        raise CronError(f"{cron!r} fires every {min(gaps):.0f} s at times; the shortest interval allowed is "
                        f"{min_seconds} s (MIN_SCHEDULE_SECONDS)", "cron")
    return cron


def explain(cron: str) -> str:
    """The expression in words, as cronsim says it ("Every 10th minute of every hour")."""
    try:
        return CronSim(cron, datetime.now(UTC)).explain()
    except Exception:  # explain() is newer than parsing and may not know every form; words are a nicety
        return cron


def as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
