"""How tests and jobs have done over time: outcome strips, counts, and the dashboard's figures."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, true
from sqlalchemy.orm import InstrumentedAttribute

from supertest.extensions import db
from supertest.models import Job, Run, RunTest, Test, utcnow
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
    return test_strips([test_id], limit)[test_id]


def job_outcomes(job_id: str, limit: int = STRIP_LENGTH) -> list[Outcome]:
    """The status of the job's latest runs, oldest first."""
    return job_strips([job_id], limit)[job_id]


def test_strips(test_ids: Iterable[str], limit: int = STRIP_LENGTH) -> dict[str, list[Outcome]]:
    """test_outcomes for each of these tests, in one query (the Tests page has a strip per row)."""
    return _latest(RunTest.test_id, RunTest.run_created_at, RunTest.run_id, RunTest.status, Test.id, test_ids,
                   limit)


def job_strips(job_ids: Iterable[str], limit: int = STRIP_LENGTH) -> dict[str, list[Outcome]]:
    """job_outcomes for each of these jobs, in one query (the Jobs page has a strip per row)."""
    return _latest(Run.job_id, Run.created_at, Run.id, Run.status, Job.id, job_ids, limit)


IDS_PER_QUERY = 500  # bound parameters per statement stay well within SQLite's limit


def _latest(key: InstrumentedAttribute, created: InstrumentedAttribute, run_id: InstrumentedAttribute,
            status: InstrumentedAttribute, owner: InstrumentedAttribute, ids: Iterable[str],
            limit: int) -> dict[str, list[Outcome]]:
    """The latest `limit` (run id, status) rows for each key (`key == owner`), newest by (created, run id),
    returned oldest first: a strip for each id, empty for one without runs."""
    strips: dict[str, list[Outcome]] = {key_id: [] for key_id in ids}
    wanted = list(strips)
    for start in range(0, len(wanted), IDS_PER_QUERY):
        chunk = wanted[start:start + IDS_PER_QUERY]
        if db.session.get_bind().dialect.name == "postgresql":
            # A LATERAL subquery reads only each key's newest rows from its index; a window over all
            # of their history (below) would read every row of it.
            newest = (select(run_id.label("run_id"), status.label("status"), created.label("created"))
                      .where(key == owner).order_by(created.desc(), run_id.desc()).limit(limit).lateral())
            query = (select(owner, newest.c.run_id, newest.c.status).join(newest, true()).where(owner.in_(chunk))
                     .order_by(owner, newest.c.created.desc(), newest.c.run_id.desc()))
        else:
            # SQLite has no LATERAL; its histories are those of one machine (`make run`).
            rank = func.row_number().over(partition_by=key, order_by=(created.desc(), run_id.desc())).label("n")
            ranked = select(key.label("key"), run_id.label("run_id"), status.label("status"), rank) \
                .where(key.in_(chunk)).subquery()
            query = (select(ranked.c.key, ranked.c.run_id, ranked.c.status).where(ranked.c.n <= limit)
                     .order_by(ranked.c.key, ranked.c.n))
        for key_id, found_run, found_status in db.session.execute(query):
            strips[key_id].append(Outcome(found_run, found_status))
    return {key_id: strip[::-1] for key_id, strip in strips.items()}  # the rows came newest first


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
