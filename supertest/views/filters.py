"""Template filters for times, durations and triggers."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Flask

from supertest.models import as_utc, utcnow
from supertest.services.serialize import iso


def duration(ms: int | None) -> str:
    """1234 → "1.2 s", 75000 → "1 min 15 s"."""
    if ms is None:
        return "–"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(round(ms / 1000), 60)
    return f"{minutes} min {seconds} s"


def age(moment: datetime | str | None) -> str:
    """How long ago, in the largest unit that fits: "just now", "5 min ago", "3 h ago", "2 d ago".
    An ISO 8601 string (as JSON from Redis has it) is read first."""
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return "–"
    if moment is None:
        return "–"
    seconds = max(0, int((utcnow() - as_utc(moment)).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


TRIGGERS = {"playground": "Playground", "ui": "Run button", "api": "API", "ci": "CI", "schedule": "Schedule"}


def trigger(name: str) -> str:
    """How a run was started, in words."""
    return TRIGGERS.get(name, name)


def in_zone(moment: datetime | None, timezone: str = "UTC") -> str:
    """A time as the people of `timezone` read it: "2026-11-30 09:00 CET"."""
    if moment is None:
        return "–"
    return as_utc(moment).astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z")


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(duration=duration, age=age, iso=iso, trigger=trigger, in_zone=in_zone)
