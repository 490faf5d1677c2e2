"""Checks on what users send, with messages that name the field."""
from __future__ import annotations

import uuid
import dataclasses
import re
from typing import Any

MAX_TITLE_CHARS = 200
FIRST_TEST_NAME = re.compile(r"""\btest(?:\.only)?\(\s*(['"`])(.+?)\1""")


@dataclasses.dataclass
class ValidationError(Exception):
    message: str
    field: str | None = None
    status: int = 422
    code: str = "validation_error"
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


def script_and_title(data: dict[str, Any], max_bytes: int) -> tuple[str, str]:
    """The script to run and its label, from a playground request."""
    script = data.get("script")
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
    title = data.get("title")
    if title is None or (isinstance(title, str) and not title.strip()):
        title = default_title(script)
    if not isinstance(title, str):
        raise ValidationError("title must be a string", "title")
    if len(title) > MAX_TITLE_CHARS:
        raise ValidationError(f"title must be at most {MAX_TITLE_CHARS} characters", "title")
    return script, title.strip()


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
