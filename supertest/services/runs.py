"""Creating, queueing, claiming and finishing runs; every status change goes through here."""
from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from flask import current_app
from sqlalchemy import and_, or_, select, update

from supertest import events
from supertest.extensions import db
from supertest.models import ERROR, PENDING, RUNNING, TERMINAL, Run, Test, TestResult, new_id, utcnow
from supertest.services.serialize import run_json

if TYPE_CHECKING:  # execution depends on this module, not the other way round
    from supertest.execution.results import CaseResult

log = logging.getLogger(__name__)


class QueueUnavailable(Exception):
    """The run was saved but could not be queued; it has been marked as an error."""


def create_playground_run(script: str, title: str) -> Run:
    """Save the playground script and a pending run for it. The test and run share one id."""
    run_id = new_id()
    db.session.add(Test(id=run_id, title=title, script=script, saved=False))
    run = Run(id=run_id, kind="test", test_id=run_id, title=title, status=PENDING)
    db.session.add(run)
    db.session.commit()
    return run


def enqueue(run: Run) -> None:
    """Queue a committed run. If the queue is unreachable the run ends as an error, not pending forever."""
    try:
        current_app.extensions["actors"]["execute_test_run"].send(run.id)
    except Exception as error:  # any broker failure: connection, timeout, auth
        log.exception("could not queue run %s", run.id)
        finish(run.id, ERROR, error_message=f"The run could not be queued: {error}")
        raise QueueUnavailable(str(error)) from error


def claim(run_id: str) -> Run | None:
    """pending → running, only if it is still pending; None when another delivery got there first."""
    return _transition(run_id, (PENDING,), {"status": RUNNING, "started_at": utcnow()})


def finish(run_id: str, status: str, error_message: str | None = None,
           report_store: str | None = None, results: tuple[CaseResult, ...] = ()) -> Run | None:
    """Record a terminal status once; a run that has already ended keeps its first outcome."""
    assert status in TERMINAL
    counts = {name: sum(1 for r in results if r.status == name) for name in ("passed", "flaky", "skipped")}
    values = {"status": status, "error_message": error_message, "report_store": report_store,
              "finished_at": utcnow(), "total": len(results), "failed": len(results) - sum(counts.values()),
              **counts}
    rows = [TestResult(run_id=run_id, position=i, title=r.title, file=r.file, status=r.status,
                       duration_ms=r.duration_ms, retries=r.retries, error=r.error)
            for i, r in enumerate(results)]
    return _transition(run_id, (PENDING, RUNNING), values, rows)


def _transition(run_id: str, allowed_from: tuple[str, ...], values: dict,
                rows: list[TestResult] | None = None) -> Run | None:
    """Change a run's status by a conditional update (compare-and-set), then tell its viewers.

    None when the run was not in one of `allowed_from`: someone else already moved it on.
    """
    changed = db.session.execute(
        update(Run).where(Run.id == run_id, Run.status.in_(allowed_from)).values(**values)
    ).rowcount
    if changed and rows:
        db.session.add_all(rows)
    db.session.commit()
    if not changed:
        return None
    run = db.session.get(Run, run_id)
    events.publish(run_id, "status", run_json(run, with_tests=run.finished))
    return run


def get(run_id: str) -> Run | None:
    return db.session.get(Run, run_id)


@dataclass
class Page:
    items: list[Run]
    next_cursor: str | None


def list_runs(limit: int, cursor: str | None = None, status: str | None = None,
              test_id: str | None = None) -> Page:
    """Runs newest first, by keyset pagination on (created_at, id)."""
    query = select(Run).order_by(Run.created_at.desc(), Run.id.desc()).limit(limit + 1)
    if status:
        query = query.where(Run.status == status)
    if test_id:
        query = query.where(Run.test_id == test_id)
    if cursor:
        created, run_id = decode_cursor(cursor)
        query = query.where(or_(Run.created_at < created, and_(Run.created_at == created, Run.id < run_id)))
    rows = list(db.session.scalars(query))
    more = len(rows) > limit
    items = rows[:limit]
    return Page(items, encode_cursor(items[-1]) if more else None)


def encode_cursor(run: Run) -> str:
    return base64.urlsafe_b64encode(f"{run.created_at.isoformat()}|{run.id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError for anything that is not a cursor we made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, run_id = raw.split("|", 1)
        return datetime.fromisoformat(created), run_id
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError("malformed cursor") from error
