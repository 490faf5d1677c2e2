"""Template filters for times, durations, triggers and history strips."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Flask, url_for
from markupsafe import Markup, escape

from supertest.models import as_utc, utcnow
from supertest.services.history import Outcome
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


def strip(outcomes: Sequence[Outcome]) -> Markup:
    """A history strip: one square per outcome, oldest to newest, each a link to its run.

    Built as one string rather than by a template loop: a page of strips is thousands of squares,
    and Jinja's loop with its escaping of each attribute was most of the Tests page's time.
    """
    if not outcomes:
        return Markup('<span class="strip" aria-label="no outcomes yet"><span class="muted">no runs yet</span></span>')
    runs_url = url_for("pages.run_list")
    ticks = "".join(f'<a class="tick {status}" href="{runs_url}/{run_id}" title="{status}"></a>'
                    for run_id, status in ((escape(outcome.run_id), escape(outcome.status)) for outcome in outcomes))
    return Markup(f'<span class="strip" aria-label="last {len(outcomes)} outcomes">{ticks}</span>')


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(duration=duration, age=age, iso=iso, trigger=trigger, in_zone=in_zone, strip=strip)
