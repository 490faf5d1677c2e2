"""Saved tests: create, edit, delete, and run them."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from supertest.extensions import db
from supertest.models import Run, Test
from supertest.services import runs


def list_saved() -> list[Test]:
    return list(db.session.scalars(select(Test).where(Test.saved).order_by(Test.title, Test.id)))


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
