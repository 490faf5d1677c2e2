"""Checks on what users send, with messages that name the field."""
from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any, NoReturn

from flask import current_app, has_app_context

from supertest import cron
from supertest.config import MAX_RETENTION_DAYS, MAX_TIMEOUT_MS
from supertest.errors import Problem

MAX_TITLE_CHARS = 200
MAX_DESCRIPTION_CHARS = 10_000
MAX_RETRIES = 5
MAX_JOB_TESTS = 200
MAX_WAIT_SECONDS = 600  # GET /api/runs/<id>?wait=: beyond this, proxies and CI steps time out anyway
WAIT_SECONDS = re.compile(r"\d{1,3}(?:\.\d{1,3})?")  # plain digits: no sign, exponent, inf or nan
FIRST_TEST_NAME = re.compile(r"""\btest(?:\.only)?\(\s*(['"`])(.+?)\1""")
# No request of ours nests more than a few levels; json.loads recurses once per level, so a body of
# 100,000 brackets ends in RecursionError (a 500) unless it is refused before parsing.
MAX_JSON_DEPTH = 64
# A whole JSON string, escapes included, so that brackets and quotes inside it are not counted. An
# unclosed one runs to the end: a pattern that could fail would be tried again from every later quote,
# which is quadratic in the body's size ('"\\' * 100,000 took minutes).
JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
BRACKET_STEP = tuple(1 if byte in b"[{" else -1 if byte in b"]}" else 0 for byte in range(256))
# json.loads joins a surrogate pair into one character; what is left is an escape like \ud800 alone,
# which is not text: it cannot be encoded as UTF-8 to be stored, sent on, or even logged.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class ValidationError(Problem):
    """Input we refuse, naming the `field` that holds it."""

    status, code = 422, "validation_error"

    def __init__(self, message: str, field: str | None = None, status: int | None = None, code: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message, {"field": field, **(details or {})} if field else details, status=status, code=code)
        self.field = field


def json_object(raw: bytes) -> dict[str, Any]:
    """The JSON object a request body holds; a 400 ValidationError that says what is wrong otherwise.

    The one place request bodies are parsed, so that every JSON endpoint refuses the same things."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("the request body must be UTF-8", status=400, code="invalid_encoding") from None
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise ValidationError(f"the request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep",
                              status=400, code="invalid_json")
    try:
        data = json.loads(text, parse_constant=_not_json)
    except ValueError as error:
        raise ValidationError(f"the request body is not valid JSON: {error}", status=400, code="invalid_json") from None
    if not isinstance(data, dict):
        raise ValidationError("the request body must be a JSON object", status=400, code="invalid_json")
    where = lone_surrogate_in(data)
    if where is not None:
        raise ValidationError(f"{where} holds a lone surrogate (a \\ud800-\\udfff escape without its pair), "
                              "which is not Unicode text", where, status=400, code="invalid_encoding")
    return data


def lone_surrogate_in(data: dict[str, Any]) -> str | None:
    """Where the first string (key or value) with a lone surrogate is, as a path like `testIds[2]`;
    None when there is none. Checked once for the whole body, so that no field can carry one."""
    pending: list[tuple[str, Any]] = [("", data)]
    while pending:  # a loop, not recursion, though json_object has already bounded the depth
        where, value = pending.pop()
        if isinstance(value, str) and LONE_SURROGATE.search(value):
            return where
        if isinstance(value, dict):
            for key, item in reversed(value.items()):
                path = f"{where}.{_printable(key)}" if where else _printable(key)
                if LONE_SURROGATE.search(key):
                    return path
                pending.append((path, item))
        elif isinstance(value, list):
            pending.extend((f"{where}[{index}]", item) for index, item in reversed(list(enumerate(value))))
    return None


def _printable(key: str) -> str:
    # A path into the body goes into the error message, which must itself be encodable.
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def json_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in a JSON text: brackets counted outside strings only, in linear
    time and without recursion. Exact as far as the text is valid JSON, which is as far as json.loads
    gets before it refuses the rest."""
    brackets = JSON_STRING.sub(b"", raw).translate(None, NOT_BRACKETS)
    # The running sum of +1 per opening and -1 per closing bracket, at C speed: no Python loop per byte.
    return max(accumulate(map(BRACKET_STEP.__getitem__, brackets), initial=0))


def _not_json(constant: str) -> NoReturn:
    # Python's json reads NaN, Infinity and -Infinity, which are not JSON and which no field accepts.
    raise ValueError(f"{constant} is not a JSON value")


def script_and_title(data: dict[str, Any], max_bytes: int) -> tuple[str, str]:
    """The script to run and its label, from a playground request."""
    script = _script(data.get("script"), max_bytes)
    return script, _title(data.get("title"), script)


def test_fields(data: dict[str, Any], max_bytes: int, current: dict[str, str] | None = None) -> dict[str, str]:
    """title, script and description of a saved test. With `current` (an edit), missing fields keep their value."""
    fields = dict(current or {})
    if "script" in data or current is None:
        fields["script"] = _script(data.get("script"), max_bytes)
    if "title" in data or current is None:
        fields["title"] = _title(data.get("title"), fields["script"])
    if "description" in data or current is None:
        fields["description"] = _optional_text(data.get("description"), "description", MAX_DESCRIPTION_CHARS)
    return fields


def job_fields(data: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, Any]:
    """name, description, retries, timeoutMs, retentionDays and testIds of a job; which ids exist is
    checked by the caller."""
    fields = dict(current or {})
    if "name" in data or current is None:
        name = data.get("name")
        if name is None or (isinstance(name, str) and not name.strip()):
            raise ValidationError("name is required", "name")
        fields["name"] = _text(name, "name", MAX_TITLE_CHARS)
    if "description" in data or current is None:
        fields["description"] = _optional_text(data.get("description"), "description", MAX_DESCRIPTION_CHARS)
    if "retries" in data or current is None:
        retries = data.get("retries", 0)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
            raise ValidationError(f"retries must be a whole number from 0 to {MAX_RETRIES}", "retries")
        fields["retries"] = retries
    if "timeoutMs" in data or current is None:
        timeout = data.get("timeoutMs")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)
                                    or not 1000 <= timeout <= MAX_TIMEOUT_MS):
            raise ValidationError(f"timeoutMs must be a whole number of milliseconds from 1000 to {MAX_TIMEOUT_MS}, "
                                  "or null for the default", "timeoutMs")
        fields["timeout_ms"] = timeout
    if "retentionDays" in data or current is None:
        days = data.get("retentionDays")
        if days is not None and (isinstance(days, bool) or not isinstance(days, int)
                                 or not 1 <= days <= MAX_RETENTION_DAYS):
            raise ValidationError(f"retentionDays must be a whole number of days from 1 to {MAX_RETENTION_DAYS}, "
                                  "or null for the RUN_RETENTION_DAYS setting", "retentionDays")
        fields["retention_days"] = days
    if "shards" in data or current is None:
        fields["shards"] = shards_value(data.get("shards", 1))
    if "testIds" in data or current is None:
        fields["test_ids"] = _test_ids(data.get("testIds", []))
    if "alerts" in data:
        fields["alerts"] = alert_rule(data["alerts"])
    if "schedule" in data or current is None:
        fields["schedule"] = schedule_fields(data.get("schedule"))
    return fields


MAX_REMIND_HOURS = 24 * 30
MAX_SHARDS_ASKED = 64  # what a job may ask for; MAX_SHARDS caps it when a run is split


def shards_value(value: Any) -> int:
    """A job's or ad-hoc run's `shards`: a whole number (1: unsharded), or "auto" (stored as 0)."""
    if value == "auto":
        return 0
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SHARDS_ASKED:
        raise ValidationError(f'shards must be a whole number from 1 to {MAX_SHARDS_ASKED}, or "auto"', "shards")
    return value


def alert_rule(value: Any) -> dict[str, Any]:
    """A job's `alerts` (docs/api.md): keys left out take their defaults; which channels exist is
    checked by the caller. null: no channels, defaults otherwise."""
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise ValidationError("alerts must be an object, or null", "alerts")
    known = {"channelIds", "afterFailures", "onRecovery", "onMissed", "everyFailure", "remindHours"}
    extra = sorted(set(value) - known)
    if extra:
        raise ValidationError(f"alerts has no field {extra[0]!r}", f"alerts.{extra[0]}")
    ids = value.get("channelIds", [])
    if not isinstance(ids, list) or not all(isinstance(item, str) and is_id(item) for item in ids) or len(ids) > 50:
        raise ValidationError("alerts.channelIds must be a list of channel ids (at most 50)", "alerts.channelIds")
    after = value.get("afterFailures", 1)
    if isinstance(after, bool) or not isinstance(after, int) or not 1 <= after <= 5:
        raise ValidationError("alerts.afterFailures must be a whole number from 1 to 5", "alerts.afterFailures")
    flags = {}
    for key, name, default in (("onRecovery", "on_recovery", True), ("onMissed", "on_missed", True),
                               ("everyFailure", "every_failure", False)):
        flags[name] = value.get(key, default)
        if not isinstance(flags[name], bool):
            raise ValidationError(f"alerts.{key} must be true or false", f"alerts.{key}")
    hours = value.get("remindHours")
    if hours is not None and (isinstance(hours, bool) or not isinstance(hours, int)
                              or not 1 <= hours <= MAX_REMIND_HOURS):
        raise ValidationError(f"alerts.remindHours must be a whole number of hours from 1 to {MAX_REMIND_HOURS}, "
                              "or null for no reminders", "alerts.remindHours")
    return {"channel_ids": list(dict.fromkeys(ids)), "after_failures": after, **flags, "remind_hours": hours}


OVERLAPS = ("skip", "queue")
MAX_GRACE_SECONDS = 86_400


def schedule_fields(value: Any, now: datetime | None = None) -> dict[str, Any] | None:
    """A job's `schedule`: null, or {cron, timezone (UTC), enabled (true), overlap (skip), graceSeconds (120)}.
    The whole object is replaced, so fields left out take their defaults."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError("schedule must be an object with cron and timezone, or null", "schedule")
    unknown = sorted(set(value) - {"cron", "timezone", "enabled", "overlap", "graceSeconds"})
    if unknown:
        raise ValidationError(f"schedule has unknown fields: {', '.join(unknown)}", f"schedule.{unknown[0]}")
    timezone: Any = value.get("timezone") if value.get("timezone") is not None else "UTC"
    enabled = value.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValidationError("schedule.enabled must be true or false", "schedule.enabled")
    overlap = value.get("overlap", "skip")
    if overlap not in OVERLAPS:
        raise ValidationError("schedule.overlap must be skip or queue", "schedule.overlap")
    grace = value.get("graceSeconds", 120)
    if isinstance(grace, bool) or not isinstance(grace, int) or not 0 <= grace <= MAX_GRACE_SECONDS:
        raise ValidationError(f"schedule.graceSeconds must be a whole number of seconds from 0 to {MAX_GRACE_SECONDS}",
                              "schedule.graceSeconds")
    min_seconds = current_app.config["MIN_SCHEDULE_SECONDS"] if has_app_context() else 60
    try:
        cron.zone(timezone)
        timezone = timezone.strip()
        expression = cron.check(value.get("cron"), timezone, min_seconds, now or datetime.now(UTC))
    except cron.CronError as error:
        raise ValidationError(f"schedule.{error.field}: {error}", f"schedule.{error.field}") from None
    return {"cron": expression, "timezone": timezone, "enabled": enabled, "overlap": overlap,
            "graceSeconds": grace}


def _test_ids(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("testIds must be a list of test ids", "testIds")
    if len(value) > MAX_JOB_TESTS:
        raise ValidationError(f"a job holds at most {MAX_JOB_TESTS} tests", "testIds")
    malformed = [item for item in value if not is_id(item)]
    if malformed:
        raise ValidationError("testIds holds values that are not ids", "testIds", details={"invalid": malformed})
    repeated = sorted({item for item in value if value.count(item) > 1})
    if repeated:
        raise ValidationError("testIds names a test more than once", "testIds", details={"repeated": repeated})
    return list(value)


def _title(title: Any, script: str) -> str:
    """A blank title becomes the first test's name, so that tests are still told apart in lists."""
    if title is None or (isinstance(title, str) and not title.strip()):
        return default_title(script)
    return _text(title, "title", MAX_TITLE_CHARS)


def _optional_text(value: Any, field: str, limit: int) -> str:
    """null is an empty text; any other value that is not a string (false, 0, []) is refused, where
    `value or ""` used to store it as empty."""
    return "" if value is None else _text(value, field, limit)


def _text(value: Any, field: str, limit: int) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string", field)
    if "\x00" in value:
        raise ValidationError(f"{field} must not contain NUL characters", field)
    if len(value) > limit:
        raise ValidationError(f"{field} must be at most {limit} characters", field)
    return value.strip()


def _script(script: Any, max_bytes: int) -> str:
    if script is None:
        raise ValidationError("script is required", "script")
    if not isinstance(script, str):
        raise ValidationError("script must be a string", "script")
    if not script.strip():
        raise ValidationError("script must not be empty", "script")
    if "\x00" in script:
        raise ValidationError("script must not contain NUL characters", "script")
    size = len(script.encode("utf-8"))
    if size > max_bytes:
        raise ValidationError(f"script is {size} bytes; the limit is {max_bytes}", "script",
                              status=413, code="too_large")
    return script


def failed_only(data: dict[str, Any]) -> bool:
    """A rerun's `failedOnly`: true for only the tests that failed; left out, false."""
    value = data.get("failedOnly", False)
    if not isinstance(value, bool):
        raise ValidationError("failedOnly must be true or false", "failedOnly")
    return value


def wait_seconds(value: str | None) -> float:
    """The `wait` query parameter: seconds from 0 to MAX_WAIT_SECONDS; 0 when it is left out."""
    if value is None or value == "":
        return 0
    if not WAIT_SECONDS.fullmatch(value) or float(value) > MAX_WAIT_SECONDS:
        raise ValidationError(f"wait must be a number of seconds from 0 to {MAX_WAIT_SECONDS}", "wait",
                              status=400, code="invalid_parameter")
    return float(value)


def is_id(value: str) -> bool:
    """Ids are UUIDs; anything else cannot name a row, so it is refused before any query."""
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def default_title(script: str) -> str:
    """The first test's name, so that untitled runs are still told apart in lists."""
    found = FIRST_TEST_NAME.search(script)
    return found.group(2)[:MAX_TITLE_CHARS] if found else "Playground test"
