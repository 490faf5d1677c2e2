"""Deleting old runs: RUN_RETENTION_DAYS, or a job's own retentionDays, in the workers' housekeeping."""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import Select, delete, exists, or_, select

from supertest.extensions import db
from supertest.models import Job, Run, RunTest, Test, utcnow
from supertest.outcomes import TERMINAL
from supertest.services import runs

log = logging.getLogger(__name__)
BATCH = 100  # runs per transaction-sized pass of delete_runs; a long backlog goes in many short steps


def expired_runs(default_days: int | None) -> list[Select]:
    """The queries for finished runs past their retention, oldest first: one per job with its own
    retentionDays, and one for every other run when `default_days` is set. Queued and running runs
    are never selected, however old."""
    now = utcnow()
    finished = select(Run).where(Run.status.in_(TERMINAL)).order_by(Run.created_at, Run.id)
    own = db.session.execute(select(Job.id, Job.retention_days).where(Job.retention_days.is_not(None))).all()
    queries = [finished.where(Run.job_id == job_id, Run.created_at < now - timedelta(days=days))
               for job_id, days in own if days is not None]
    if default_days is not None:
        own_days = select(Job.id).where(Job.retention_days.is_not(None))
        queries.append(finished.where(or_(Run.job_id.is_(None), Run.job_id.not_in(own_days)),
                                      Run.created_at < now - timedelta(days=default_days)))
    return queries


def prune(batch: int = BATCH) -> int:
    """Delete every finished run past its retention, with its report, `batch` runs at a time;
    returns how many went. A storage failure (StorageError) stops the pass with the rest kept,
    each with its report, for the next pass to try again."""
    deleted = 0
    for query in expired_runs(current_app.config["RUN_RETENTION_DAYS"]):
        while True:
            # runs.delete_runs deletes each report before its row, and commits run by run.
            done = runs.delete_runs(query.limit(batch))
            deleted += done
            if done < batch:
                break
    if deleted:
        _delete_orphaned_playground_tests()
        log.info("retention: deleted %d runs past their retention, with their reports", deleted)
    return deleted


def _delete_orphaned_playground_tests() -> None:
    """Playground code is kept as an unsaved test for its run's sake (runs.create_playground_run);
    once no run refers to it, it is nobody's."""
    db.session.execute(delete(Test).where(
        ~Test.saved, ~exists().where(Run.test_id == Test.id), ~exists().where(RunTest.test_id == Test.id)))
    db.session.commit()
