"""How tests and jobs have done over time: outcome strips, counts, and the dashboard's figures."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from supertest.extensions import db
from supertest.models import Run, RunTest, utcnow
from supertest.outcomes import ERROR, FAILED, FLAKY, PASSED, PENDING, RUNNING, TIMEOUT

STRIP_LENGTH = 30
STATS_RUNS = 20


@dataclass
class Outcome:
    """One square of a history strip: a run and how it (or the test within it) ended."""

    run_id: str
    status: str


@dataclass
class TestStats:
    runs: int
    passed: int
    failed: int
    flaky: int

    def as_json(self) -> dict[str, Any]:
        return {"lastRuns": self.runs, "passed": self.passed, "failed": self.failed, "flaky": self.flaky}


def test_outcomes(test_id: str, limit: int = STRIP_LENGTH) -> list[Outcome]:
    """The test's outcome in each of its latest runs (its own, the playground's, its jobs'), oldest first."""
    rows = db.session.execute(
        select(RunTest.run_id, RunTest.status).join(Run, Run.id == RunTest.run_id)
        .where(RunTest.test_id == test_id).order_by(Run.created_at.desc(), Run.id.desc()).limit(limit)
    ).all()
    return [Outcome(run_id, status) for run_id, status in reversed(rows)]


def job_outcomes(job_id: str, limit: int = STRIP_LENGTH) -> list[Outcome]:
    """The status of the job's latest runs, oldest first."""
    rows = db.session.execute(
        select(Run.id, Run.status).where(Run.job_id == job_id)
        .order_by(Run.created_at.desc(), Run.id.desc()).limit(limit)
    ).all()
    return [Outcome(run_id, status) for run_id, status in reversed(rows)]


def test_stats(outcomes: list[Outcome], limit: int = STATS_RUNS) -> TestStats:
    """Pass, fail and flaky counts over the last `limit` finished runs among `outcomes` (oldest first).

    Runs that ended without a verdict on the test (error, timeout, cancelled) count in `runs` only.
    """
    statuses = [outcome.status for outcome in outcomes if outcome.status not in (PENDING, RUNNING)][-limit:]
    return TestStats(len(statuses), statuses.count(PASSED), statuses.count(FAILED), statuses.count(FLAKY))


@dataclass
class Dashboard:
    running: list[Run]
    queued: int
    failures_24h: list[Run]
    failure_count_24h: int


def dashboard(shown: int = 10) -> Dashboard:
    """What is happening now, and what went wrong lately."""
    since = utcnow() - timedelta(hours=24)
    failed_recently = select(Run).where(Run.status.in_((FAILED, ERROR, TIMEOUT)), Run.finished_at >= since)
    return Dashboard(
        running=list(db.session.scalars(select(Run).where(Run.status == RUNNING).order_by(Run.started_at))),
        queued=db.session.scalar(select(func.count()).select_from(Run).where(Run.status == PENDING)) or 0,
        failures_24h=list(db.session.scalars(failed_recently.order_by(Run.finished_at.desc()).limit(shown))),
        failure_count_24h=db.session.scalar(
            select(func.count()).select_from(failed_recently.subquery())) or 0,
    )
