"""Variables and secrets for tests: named values every run gets as environment variables."""
from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from supertest.extensions import db
from supertest.models import Variable
from supertest.services.validation import ValidationError

# Checked with fullmatch: `$` after `match` would also accept a name ending in a newline.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
# The runner sets these itself; a variable may not change how Playwright or the sandbox runs.
RESERVED = frozenset({"PATH", "HOME", "TMPDIR", "LANG", "CI", "FORCE_COLOR", "PLAYWRIGHT_BROWSERS_PATH"})
RESERVED_PREFIXES = ("NODE_", "PLAYWRIGHT_", "PW_", "LD_", "DEBUG")
MAX_VALUE_CHARS = 8192
# Shorter secrets would match all over a report, redacting it into nonsense. Whitespace does not count:
# a secret of 8 spaces blanked every 8-space indent of the code snippets in error messages.
MIN_SECRET_CHARS = 8


def list_all() -> list[Variable]:
    return list(db.session.scalars(select(Variable).order_by(Variable.name)))


def get(name: str) -> Variable | None:
    """The variable of that name; None for a name no variable could have, without a query."""
    return db.session.scalar(select(Variable).where(Variable.name == name)) if NAME.fullmatch(name) else None


def for_run() -> tuple[dict[str, str], list[str]]:
    """What a run gets: every variable as environment, and the secret values to redact."""
    every = list_all()
    return {item.name: item.value for item in every}, [item.value for item in every if item.secret]


def create(data: dict[str, Any]) -> Variable:
    name = data.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValidationError("name must be letters, digits and underscores, not starting with a digit "
                              "(at most 100)", "name")
    if name.upper() in RESERVED or name.upper().startswith(RESERVED_PREFIXES):
        raise ValidationError(f"{name} is set by Supertest itself and cannot be a variable", "name")
    if get(name) is not None:
        raise ValidationError(f"a variable named {name} already exists", "name", status=409, code="conflict")
    secret = _flag(data.get("secret", False))
    variable = Variable(name=name, value=_value(data.get("value"), secret), secret=secret)
    db.session.add(variable)
    db.session.commit()
    return variable


def update(variable: Variable, data: dict[str, Any]) -> Variable:
    """A new value; a secret stays a secret (turning it into a plain variable would show it)."""
    if "secret" in data and _flag(data["secret"]) != variable.secret:
        if variable.secret:
            raise ValidationError("a secret cannot become a plain variable: delete it and add it again", "secret")
        variable.secret = True
    if "value" in data:
        variable.value = _value(data["value"], variable.secret)
    elif variable.secret:
        _value(variable.value, True)  # made secret: its value must be long enough to redact safely
    db.session.commit()
    return variable


def delete(variable: Variable) -> None:
    db.session.delete(variable)
    db.session.commit()


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError("secret must be true or false", "secret")
    return value


def _value(value: Any, secret: bool) -> str:
    if not isinstance(value, str):
        raise ValidationError("value must be a string", "value")
    if len(value) > MAX_VALUE_CHARS or "\x00" in value:
        raise ValidationError(f"value must be at most {MAX_VALUE_CHARS} characters, without NUL", "value")
    if secret and len("".join(value.split())) < MIN_SECRET_CHARS:
        raise ValidationError(f"a secret must have at least {MIN_SECRET_CHARS} characters that are not spaces "
                              "or other whitespace", "value")
    return value
