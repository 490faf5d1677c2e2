"""Saved tests: create, edit, delete, and run them."""
from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, tuple_

from supertest.extensions import db
from supertest.models import Run, Test
from supertest.services import runs
from supertest.services.validation import is_id


def list_saved() -> list[Test]:
    return list(db.session.scalars(select(Test).where(Test.saved).order_by(Test.title, Test.id)))


@dataclass
class Page:
    items: list[Test]
    next_cursor: str | None


def page_saved(limit: int, cursor: str | None = None, search: str = "") -> Page:
    """Saved tests by title, `limit` at a time by keyset pagination on (title, id); with `search`,
    only those whose title contains it, in any case. Raises ValueError for a cursor we did not make."""
    query = select(Test).where(Test.saved).order_by(Test.title, Test.id).limit(limit + 1)
    if search:
        query = query.where(Test.title.icontains(search, autoescape=True))
    if cursor:
        query = query.where(tuple_(Test.title, Test.id) > tuple_(*decode_cursor(cursor)))
    rows = list(db.session.scalars(query))
    items = rows[:limit]
    return Page(items, encode_cursor(items[-1]) if len(rows) > limit else None)


def encode_cursor(test: Test) -> str:
    return base64.urlsafe_b64encode(f"{test.id}|{test.title}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """(title, id) of the last test on the page before; ValueError for anything that is not a cursor we made."""
    try:
        test_id, title = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|", 1)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError("malformed cursor") from error
    if not is_id(test_id) or "\x00" in title:  # both go into the query; a NUL is a 500 on PostgreSQL
        raise ValueError("malformed cursor")
    return title, test_id


def get_saved(test_id: str) -> Test | None:
    test = db.session.get(Test, test_id)
    return test if test is not None and test.saved else None


def saved_ids(test_ids: Iterable[str | None]) -> set[str]:
    """Which of these ids are saved tests (and so have a page to link to)."""
    wanted = {test_id for test_id in test_ids if test_id}
    if not wanted:
        return set()
    return set(db.session.scalars(select(Test.id).where(Test.id.in_(wanted), Test.saved)))


def create(fields: dict[str, Any]) -> Test:
    test = Test(saved=True, **fields)
    db.session.add(test)
    db.session.commit()
    return test


def update(test: Test, fields: dict[str, Any]) -> Test:
    for name, value in fields.items():
        setattr(test, name, value)
    db.session.commit()
    return test


def as_fields(test: Test) -> dict[str, str]:
    return {"title": test.title, "script": test.script, "description": test.description}


def delete(test: Test) -> int:
    """Delete a test with its own runs and their reports; returns how many runs went with it.

    Its runs are the ones started for it alone (Run button, API, playground). Job runs that
    included it belong to their job and stay, with its result kept and no longer linked to it;
    the jobs themselves lose it from their list. Raises runs.Busy while one of its runs is active.
    """
    deleted = runs.delete_runs(select(Run).where(Run.test_id == test.id))
    db.session.delete(test)
    db.session.commit()
    return deleted


def start_run(test: Test, trigger: str) -> Run:
    """Queue a new run of the test as it is saved now; earlier runs and reports stay."""
    run = runs.create_run(Run(kind="test", test_id=test.id, title=test.title, trigger=trigger),
                          [(test, test.title, test.script)])
    runs.enqueue(run)
    return run
