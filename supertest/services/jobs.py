"""Jobs (suites): an ordered list of saved tests, run together as one run."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from supertest.errors import NotFound, Problem
from supertest.extensions import db
from supertest.models import Job, JobAlerts, JobSchedule, JobTest, Run, Test, utcnow
from supertest.services import alerts, runs, schedules
from supertest.services.validation import ValidationError


class EmptyJob(Problem):
    """A job with no tests has nothing to run."""

    status, code = 422, "empty_job"


# A job's tests in two more queries, rather than one for its list and one per test.
WITH_TESTS = selectinload(Job.entries).selectinload(JobTest.test)
WITH_ALERTS = selectinload(Job.alerts).selectinload(JobAlerts.channels)


def list_jobs(scheduled: bool = False) -> list[Job]:
    """Every job by name, without its tests (listed_tests has them); `scheduled`: only those with a
    schedule (enabled or paused)."""
    query = select(Job).options(WITH_ALERTS).order_by(Job.name, Job.id)
    if scheduled:
        query = query.join(JobSchedule, JobSchedule.job_id == Job.id)
    return list(db.session.scalars(query))


def listed_tests(job_ids: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """Each job's tests in order as (id, title), in one query of plain rows: loading the lists'
    entries and tests as objects (a thousand for 50 jobs of 10) was most of the Jobs page's time."""
    listed: dict[str, list[tuple[str, str]]] = {job_id: [] for job_id in job_ids}
    if listed:
        query = (select(JobTest.job_id, Test.id, Test.title).join(Test, Test.id == JobTest.test_id)
                 .where(JobTest.job_id.in_(list(listed))).order_by(JobTest.job_id, JobTest.position))
        for job_id, test_id, title in db.session.execute(query):
            listed[job_id].append((test_id, title))
    return listed


def get(job_id: str) -> Job | None:
    return db.session.get(Job, job_id, options=[WITH_TESTS])


def named(name: str) -> Job:
    """The one job called `name` (names are stored stripped, so the name is too). Names are not
    unique: several jobs of that name are a 409 listing them, rather than a guess at which one."""
    name = name.strip()
    found = list(db.session.scalars(select(Job).options(WITH_TESTS).where(Job.name == name).order_by(Job.id)))
    if not found:
        raise NotFound(f"no job named {name!r}", {"field": "jobName"})
    if len(found) > 1:
        raise Problem(f"{len(found)} jobs are named {name!r}; run one by its jobId",
                      {"field": "jobName", "jobIds": [job.id for job in found]}, status=409, code="conflict")
    return found[0]


def create(fields: dict[str, Any]) -> Job:
    job = Job()
    db.session.add(job)
    return update(job, fields)


def update(job: Job, fields: dict[str, Any]) -> Job:
    """Apply validated fields; `test_ids` must all name saved tests, or nothing is saved."""
    fields = dict(fields)
    test_ids = fields.pop("test_ids", None)
    rule = fields.pop("alerts", None)
    if "schedule" in fields:
        schedules.apply(job, fields.pop("schedule"))
    for name, value in fields.items():
        setattr(job, name, value)
    if test_ids is not None:
        found = {test.id for test in db.session.scalars(select(Test).where(Test.id.in_(test_ids), Test.saved))}
        unknown = [test_id for test_id in test_ids if test_id not in found]
        if unknown:
            db.session.rollback()
            raise ValidationError("testIds names tests that do not exist", "testIds", status=422,
                                  details={"unknown": unknown})
        job.entries.clear()
        db.session.flush()  # the old positions go before the new ones take their place
        job.entries.extend(JobTest(position=i, test_id=test_id) for i, test_id in enumerate(test_ids))
    if rule is not None:
        db.session.flush()  # a new job has its id before its rule points at it
        alerts.set_rule(job, rule)
    db.session.commit()
    return job


def as_fields(job: Job) -> dict[str, Any]:
    return {"name": job.name, "description": job.description, "retries": job.retries, "timeout_ms": job.timeout_ms,
            "retention_days": job.retention_days, "shards": job.shards,
            "test_ids": [entry.test_id for entry in job.entries],
            "schedule": schedules.as_dict(job.schedule)}


def delete(job: Job) -> int:
    """Delete a job with its runs and their reports; its tests stay. Raises runs.Busy while a run is active."""
    deleted = runs.delete_runs(select(Run).where(Run.job_id == job.id))
    db.session.delete(job)
    db.session.commit()
    return deleted


def start_run(job: Job, trigger: str) -> Run:
    """Queue a run of the job's tests as they are saved now, in the job's order."""
    if not job.entries:
        raise EmptyJob(f"job {job.name!r} has no tests; add at least one before running it")
    now = utcnow()  # the job's lastRunAt is its newest run's createdAt, to the microsecond
    job.last_run_at = now
    run = runs.create_run(Run(kind="job", job_id=job.id, title=job.name, trigger=trigger, retries=job.retries,
                              timeout_ms=job.timeout_ms, created_at=now, shards=job.shards),
                          [(test, test.title, test.script) for test in job.tests])
    runs.enqueue(run)
    return run
