"""Creating, queueing, claiming and finishing runs; every status change goes through here."""
from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import Select, func, select, tuple_, update

from supertest import events
from supertest.errors import Problem, Unavailable
from supertest.extensions import db
from supertest.models import Run, RunFile, RunShard, RunTest, Test, TestResult, new_id, utcnow
from supertest.outcomes import CANCELLED, ERROR, GOOD, PENDING, RUNNING, TERMINAL, CaseResult, summary
from supertest.services import alerts
from supertest.services.serialize import run_json
from supertest.services.validation import is_id

log = logging.getLogger(__name__)


class QueueUnavailable(Unavailable):
    """The run was saved but could not be queued; it has been marked as an error."""

    code, service, what = "queue_unavailable", "redis", "Redis (the run queue)"

    def describe(self) -> str:
        return f"{super().describe()}. The run was recorded as an error; try again shortly."


ACTORS = {"test": "execute_test_run", "job": "execute_job_run"}


def create_playground_run(script: str, title: str, trigger: str, saved: Test | None = None) -> Run:
    """A pending run of code typed in the playground.

    Code that belongs to no saved test is kept as an unsaved test sharing the run's id (docs/api.md);
    code edited from a saved test counts in that test's history.
    """
    run_id = new_id()
    if saved is None:
        saved = Test(id=run_id, title=title, script=script, saved=False)
        db.session.add(saved)
    return create_run(Run(id=run_id, kind="test", test_id=saved.id, title=title, trigger=trigger),
                      [(saved, title, script)])


def create_run(run: Run, tests: list[tuple[Test, str, str]], commit: bool = True) -> Run:
    """Insert a pending run with a copy of each (test, title, script) it will run, and commit (unless
    the caller commits it with more: the clock commits many scheduled runs at once)."""
    numbered = len(tests) > 1  # numbered names keep a job's order and keep equal titles apart
    return _insert(run, [(test.id, title, script, run_test_filename(title, i + 1 if numbered else None))
                         for i, (test, title, script) in enumerate(tests)], commit)


def insert_suite(run: Run, specs: list[tuple[str, str]]) -> Run:
    """create_run for an ad-hoc run (services/suites.py): each spec is named by its path in the
    suite, and is its own title; the run's files (support files, config) are already on it."""
    return _insert(run, [(None, path[-200:], script, path) for path, script in specs])


def _insert(run: Run, tests: list[tuple[str | None, str, str, str]], commit: bool = True) -> Run:
    """create_run, from the id of each test (None: a test deleted since, or none, in an ad-hoc run)
    rather than the test, and its file name: a rerun copies another run's tests, which need not
    exist any more, under the names they had."""
    run.status = PENDING
    run.created_at = run.created_at or utcnow()  # now rather than at the insert: its run tests keep a copy
    if run.timeout_ms is None:
        limit = "JOB_EXECUTION_TIMEOUT_MS" if run.kind == "job" else "TEST_EXECUTION_TIMEOUT_MS"
        run.timeout_ms = current_app.config[limit]
    run.run_tests = [RunTest(position=i, test_id=test_id, title=title, script=script, run_created_at=run.created_at,
                             filename=filename)
                     for i, (test_id, title, script, filename) in enumerate(tests)]
    db.session.add(run)
    if commit:
        db.session.commit()
    return run


class StillGoing(Problem):
    """A run cannot be run again before it has ended."""

    status, code = 409, "busy"


class NothingFailed(Problem):
    """A rerun of the failed tests of a run in which none failed."""

    status, code = 422, "nothing_to_rerun"


def rerun(run: Run, failed_only: bool, trigger: str) -> Run:
    """Queue a new run of the tests `run` ran, as that run ran them: its copies of the scripts, its
    retries and time limit, not the tests as saved now (a rerun asks "does the same thing pass
    now?"). `failed_only` keeps the tests that did not pass (a status outside GOOD: failed, error,
    timeout, cancelled), in their order."""
    if not run.finished:
        raise StillGoing(f"the run is still {run.status}; run it again once it has ended", {"status": run.status})
    chosen = [run_test for run_test in run.run_tests if not failed_only or run_test.status not in GOOD]
    if not chosen:
        raise NothingFailed("no test failed in this run; send failedOnly: false to run them all again",
                            {"field": "failedOnly"})
    now = utcnow()
    if run.job is not None:
        run.job.last_run_at = now  # as jobs.start_run does: lastRunAt is the newest run's createdAt
    # An ad-hoc run's support files and config come along: its specs import them.
    new = _insert(Run(kind=run.kind, test_id=run.test_id, job_id=run.job_id, title=run.title, trigger=trigger,
                      retries=run.retries, workers=run.workers, timeout_ms=run.timeout_ms, created_at=now,
                      shards=run.shards if len(chosen) > 1 else 1,
                      files=[RunFile(path=file.path, content=file.content) for file in run.files]),
                  [(run_test.test_id, run_test.title, run_test.script, run_test.filename) for run_test in chosen])
    enqueue(new)
    return new


def run_test_filename(title: str, number: int | None = None) -> str:
    """A file name Playwright will pick up, recognisable in the report, safe on any disk."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", title).strip("-")[:60] or "test"
    return f"{number:03d}-{stem}.spec.ts" if number else f"{stem}.spec.ts"


def enqueue(run: Run) -> None:
    """Queue a committed run. If the queue is unreachable the run ends as an error, not pending forever."""
    enqueue_id(run.id, run.kind)


def enqueue_id(run_id: str, kind: str) -> None:
    """enqueue, by id: the clock queues many runs after one commit, without loading each again."""
    try:
        if kind == "job":
            from supertest.services import shards  # it builds on this module
            if shards.start(run_id):  # a sharded run: a message per shard instead
                return
        current_app.extensions["actors"][ACTORS[kind]].send(run_id)
    except Exception as error:  # any broker failure: connection, timeout, auth
        log.exception("could not queue run %s", run_id)
        finish(run_id, ERROR, error_message=f"The run could not be queued: {error}")
        raise QueueUnavailable(str(error)) from error


def claim(run_id: str, worker: str) -> Run | None:
    """pending → running, only if it is still pending; None when another delivery got there first."""
    now = utcnow()
    return _transition(run_id, (PENDING,), {"status": RUNNING, "started_at": now, "worker": worker,
                                            "heartbeat_at": now})


def cancel(run_id: str) -> Run | None:
    """pending or running → cancelled. A pending run is then never started; the worker of a running
    one sees the status change and kills the run's processes. None when the run had already ended."""
    cancelled = finish(run_id, CANCELLED, error_message="Cancelled by a user.")
    if cancelled is not None and cancelled.shards > 1:  # each shard's worker sees the run's status and stops
        db.session.execute(update(RunShard).where(RunShard.run_id == run_id, RunShard.status.in_((PENDING, RUNNING)))
                           .values(status=CANCELLED, finished_at=utcnow()))
        db.session.commit()
    return cancelled


def start_sharded(run_id: str) -> Run | None:
    """pending → running at a sharded run's first shard; its shards have workers, the run none."""
    now = utcnow()
    return _transition(run_id, (PENDING,), {"status": RUNNING, "started_at": now, "heartbeat_at": now})


def end_sharded(run_id: str, status: str, error_message: str | None, report_store: str | None) -> Run | None:
    """A sharded run's end, once its shards have: its summary from the results they recorded."""
    statuses = db.session.scalars(select(TestResult.status).where(TestResult.run_id == run_id)).all()
    return _transition(run_id, (RUNNING,), {"status": status, "error_message": error_message,
                                            "report_store": report_store, "finished_at": utcnow(),
                                            **summary(statuses)})


def hand_back(run_id: str, because: str, attempt: int | None = None) -> Run | None:
    """running → pending again, attempt + 1, and queue it: its worker was lost or is shutting down.

    After MAX_RUN_ATTEMPTS attempts the run ends `error` instead. None when the run is not running,
    or not in the given `attempt` (a worker hands back only its own).
    """
    run = get(run_id)
    if run is None or run.status != RUNNING or attempt not in (None, run.attempt):
        return None
    if run.attempt >= current_app.config["MAX_RUN_ATTEMPTS"]:
        return finish(run_id, ERROR, error_message=f"Given up after {run.attempt} attempts: {because}.")
    moved = _transition(run_id, (RUNNING,), {"status": PENDING, "attempt": run.attempt + 1, "started_at": None,
                                             "worker": None, "heartbeat_at": None, "restarted_because": because},
                        attempt=run.attempt)
    if moved is not None:
        enqueue(moved)
    return moved


def reap(stale_seconds: float) -> list[str]:
    """Hand back every running run whose worker has not shown it was alive for `stale_seconds`
    (or end it, on its last attempt); returns the ids of those handed back."""
    stale = utcnow() - timedelta(seconds=stale_seconds)
    # A sharded run's shards are reaped one by one (shards.reap), not the run.
    found = db.session.scalars(select(Run.id).where(Run.status == RUNNING, Run.heartbeat_at < stale,
                                                    Run.shards == 1)).all()
    db.session.rollback()  # end the read, so the next pass sees fresh rows (SQLite keeps a snapshot)
    handed = []
    for run_id in found:
        # Checked again inside the update: the worker may have beaten since the query above.
        changed = db.session.execute(update(Run).where(Run.id == run_id, Run.status == RUNNING,
                                                       Run.heartbeat_at < stale).values(heartbeat_at=utcnow()))
        db.session.commit()
        moved = hand_back(run_id, "restarted after worker loss") if changed.rowcount else None  # type: ignore[attr-defined]
        if moved is not None and moved.status == PENDING:
            log.warning("run %s: its worker was lost; handed back to the queue", run_id)
            handed.append(run_id)
        elif moved is not None:
            log.warning("run %s: its worker was lost once too often; the run ends %s", run_id, moved.status)
    return handed


def finish(run_id: str, status: str, error_message: str | None = None, report_store: str | None = None,
           results: tuple[CaseResult, ...] = (), test_statuses: dict[str, str] | None = None,
           attempt: int | None = None) -> Run | None:
    """Record a terminal status once; a run that has already ended keeps its first outcome.

    A worker passes the `attempt` it claimed: once the run has been handed to another worker,
    the first worker's outcome no longer counts.

    `results` are matched to the run's tests by file name; `test_statuses` maps a test's file name
    to its outcome in this run (a test not named there takes the run's status).
    """
    assert status in TERMINAL
    values = {"status": status, "error_message": error_message, "report_store": report_store,
              "finished_at": utcnow(), **summary(r.status for r in results)}

    def record() -> None:
        run_tests = db.session.scalars(select(RunTest).where(RunTest.run_id == run_id)).all()
        by_file = {run_test.filename: run_test.id for run_test in run_tests}
        db.session.add_all(
            TestResult(run_id=run_id, position=i, title=r.title, file=r.file, status=r.status,
                       duration_ms=r.duration_ms, retries=r.retries, error=r.error, run_test_id=by_file.get(r.file))
            for i, r in enumerate(results))
        for run_test in run_tests:
            run_test.status = (test_statuses or {}).get(run_test.filename, status)

    return _transition(run_id, (PENDING, RUNNING), values, record, attempt)


def _transition(run_id: str, allowed_from: tuple[str, ...], values: dict,
                also: Callable[[], None] | None = None, attempt: int | None = None) -> Run | None:
    """Change a run's status by a conditional update (compare-and-set), then tell its viewers.

    `also` adds more changes to the same transaction, only when the status did change.
    None when the run was not in one of `allowed_from`: someone else already moved it on.
    """
    query = update(Run).where(Run.id == run_id, Run.status.in_(allowed_from))
    if attempt is not None:
        query = query.where(Run.attempt == attempt)
    changed = db.session.execute(query.values(**values)).rowcount  # type: ignore[attr-defined]
    if changed and also:
        also()
    db.session.commit()
    if not changed:
        return None
    run = db.session.get(Run, run_id)
    assert run is not None  # it was just updated in this session
    events.publish(run_id, "status", run_json(run, with_tests=run.finished))
    if run.finished and run.kind == "job":
        alerts.after_run(run)  # never raises; its deliveries go to their own queue
    return run


def get(run_id: str) -> Run | None:
    return db.session.get(Run, run_id)


def wait_for_end(run_id: str, seconds: float) -> Run | None:
    """The run once it has ended, or as it is after `seconds` (None if it was deleted meanwhile).

    No database connection is held while waiting (a pool has few, and a CI job may wait ten
    minutes): the session is released, and each look at the run takes one only for that look.
    """
    def ended() -> bool:
        try:
            run = get(run_id)
            return run is None or run.finished
        finally:
            db.session.remove()

    def is_final(event: str, data: dict) -> bool:
        return event == "status" and data.get("status") in TERMINAL

    db.session.remove()
    events.wait_for(current_app.extensions["sse_hub"], run_id, ended, is_final, seconds)
    return get(run_id)


@dataclass
class Page:
    items: list[Run]
    next_cursor: str | None


def list_runs(limit: int, cursor: str | None = None, status: str | None = None,
              test_id: str | None = None, job_id: str | None = None) -> Page:
    """Runs newest first, by keyset pagination on (created_at, id).

    `test_id` selects every run that ran the test: its own, the playground's and its jobs'.
    """
    # A test's runs are found and ordered through its run tests (their copy of created_at, indexed
    # with the test), so its page does not scan all runs for the few that ran it. A run runs a
    # test at most once (a job refuses a test twice), so the join repeats no run.
    order = (RunTest.run_created_at, RunTest.run_id) if test_id else (Run.created_at, Run.id)
    query = select(Run).order_by(order[0].desc(), order[1].desc()).limit(limit + 1)
    if status:
        query = query.where(Run.status == status)
    if test_id:
        query = query.join(RunTest, RunTest.run_id == Run.id).where(RunTest.test_id == test_id)
    if job_id:
        query = query.where(Run.job_id == job_id)
    if cursor:
        # A row-value comparison, which the index on the order can start from; its spelled-out
        # form (a < x OR a = x AND b < y) made PostgreSQL read every newer run first.
        query = query.where(tuple_(*order) < tuple_(*decode_cursor(cursor)))
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
        moment = datetime.fromisoformat(created)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError("malformed cursor") from error
    # The id goes into the query: one with a NUL in it was a 500 on PostgreSQL.
    if not is_id(run_id):
        raise ValueError("malformed cursor")
    return moment, run_id


class Busy(Problem):
    """Something cannot be deleted while one of its runs is still queued or running."""

    status, code = 409, "busy"


def delete_runs(query: Select) -> int:
    """Delete the selected runs and their reports, one run at a time.

    A report goes before its row, so a storage failure (StorageError, raised) leaves the rest of
    the runs as they were, each still with its report; nothing is left pointing at a deleted report.
    """
    active = db.session.scalar(select(func.count()).select_from(
        query.where(Run.status.in_((PENDING, RUNNING))).subquery()))
    if active:
        raise Busy(f"{active} of its runs {'is' if active == 1 else 'are'} still queued or running; "
                   "delete it once they have finished")
    deleted = 0
    reports = current_app.extensions["reports"]
    for run in db.session.scalars(query).all():
        # A sharded run's shards keep reports (their own, their blobs) under the run's prefix too.
        parts = run.run_shards if run.shards > 1 else []
        stores = {where for where in (run.report_store, *(shard.report_store for shard in parts),
                                      *(shard.blob_store for shard in parts)) if where}
        for where in sorted(stores):
            reports.delete(run.id, run.kind, where)
        db.session.delete(run)
        db.session.commit()
        deleted += 1
    return deleted
