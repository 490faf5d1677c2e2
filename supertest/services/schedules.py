"""Schedules on jobs and their slots: setting a schedule, firing a due slot, and finding slots that
went wrong (late, stuck). The clock (supertest/clock.py) calls these every tick.

Every slot event that must alert (late, missed, stuck, skipped) goes through `slot_event`, once per
slot and event: the change of state that raises it is one only a single clock can make (an insert
under the unique key on (job, slot), or a conditional update).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from cronsim import CronSim
from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import selectinload

from supertest import cron
from supertest.extensions import db
from supertest.models import Job, JobSchedule, JobTest, Run, ScheduleSlot, new_id, utcnow
from supertest.outcomes import PENDING, RUNNING
from supertest.services import alerts, runs
from supertest.services.serialize import iso, schedule_json

log = logging.getLogger(__name__)

RAN, LATE, MISSED, SKIPPED, STUCK = "ran", "late", "missed", "skipped", "stuck"
ALERTING = (LATE, MISSED, SKIPPED, STUCK)
# After downtime, at most this many slots a job slept through are recorded as missed (the newest);
# older ones leave no row, so that a clock down for a month does not write a month of rows.
MAX_MISSED_SLOTS = 10


def as_dict(schedule: JobSchedule | None) -> dict[str, Any] | None:
    """A schedule as job_fields gives it (and as the API shows it)."""
    return schedule_json(schedule)


def apply(job: Job, value: dict[str, Any] | None, now: datetime | None = None) -> None:
    """Give `job` the validated schedule `value` (None removes it). The next slot is worked out again
    only when what decides it changed, so that saving a job's name does not move its next run."""
    if value is None:
        job.schedule = None
        return
    schedule = job.schedule or JobSchedule()
    if job.schedule is None:
        job.schedule = schedule
    timing = (schedule.cron, schedule.timezone, schedule.enabled)
    schedule.cron, schedule.timezone, schedule.enabled = value["cron"], value["timezone"], value["enabled"]
    schedule.overlap, schedule.grace_seconds = value["overlap"], value["graceSeconds"]
    if timing != (schedule.cron, schedule.timezone, schedule.enabled) or schedule.next_run_at is None:
        schedule.next_run_at = next_slot(schedule, now or utcnow()) if schedule.enabled else None


def next_slot(schedule: JobSchedule, after: datetime) -> datetime | None:
    return next(cron.fire_times(schedule.cron, schedule.timezone, after), None)


def slots_of(job_id: str, limit: int) -> list[ScheduleSlot]:
    """A job's slots, newest first."""
    return list(db.session.scalars(select(ScheduleSlot).where(ScheduleSlot.job_id == job_id)
                                   .order_by(ScheduleSlot.scheduled_for.desc()).limit(limit)))


def slot_json(slot: ScheduleSlot) -> dict[str, Any]:
    return {"scheduledFor": iso(slot.scheduled_for), "state": slot.state, "runId": slot.run_id,
            "reason": slot.reason, "lateAt": iso(slot.late_at), "alertedAt": iso(slot.alerted_at)}


def slot_event(slot: ScheduleSlot, event: str) -> None:
    """The one place a slot's alert is raised (late, missed, stuck, skipped): marks when, logs one line,
    and alerts the job's channels. Called once per slot and event, by the clock that made the change."""
    db.session.execute(update(ScheduleSlot).where(ScheduleSlot.id == slot.id).values(alerted_at=utcnow()))
    db.session.commit()
    log.warning("schedule slot %s: job %s slot %s%s", event, slot.job_id, iso(slot.scheduled_for),
                f" ({slot.reason})" if slot.reason else "")
    job = db.session.get(Job, slot.job_id)
    if job is None:  # deleted since
        return
    try:
        # A slot skipped by the overlap rule is a run that did not happen: to the people alerted, missed.
        alerts.slot_alert(job, MISSED if event == SKIPPED else event, slot.scheduled_for,
                          db.session.get(Run, slot.run_id) if slot.run_id else None)
    except Exception:  # an alert that cannot be sent must not stop the clock
        db.session.rollback()
        log.exception("could not alert on job %s slot %s", slot.job_id, iso(slot.scheduled_for))


@dataclass
class Fired:
    """What one tick did for the schedules that were due."""

    runs: list[str]
    slots: list[tuple[str, datetime, str]]  # (job id, slot, state) for each slot recorded


def due_schedules(now: datetime) -> list[JobSchedule]:
    # In one order for every clock, so that two at once take the slots' row locks in the same order.
    return list(db.session.scalars(select(JobSchedule).where(JobSchedule.enabled, JobSchedule.next_run_at <= now)
                                   .order_by(JobSchedule.next_run_at, JobSchedule.job_id)))


def earliest_next(now: datetime) -> datetime | None:
    """The soonest slot of any enabled schedule, so the clock can wake for it rather than a tick late."""
    return db.session.scalar(select(func.min(JobSchedule.next_run_at)).where(JobSchedule.enabled))


def earliest_late(now: datetime) -> datetime | None:
    """The soonest moment a fired slot whose run has not started goes late (its time plus its grace),
    so the clock can wake for it: a late alert then leaves within moments of the deadline."""
    rows = db.session.execute(
        select(ScheduleSlot.scheduled_for, JobSchedule.grace_seconds)
        .join(Run, ScheduleSlot.run_id == Run.id)
        .join(JobSchedule, JobSchedule.job_id == ScheduleSlot.job_id)
        .where(ScheduleSlot.state == RAN, ScheduleSlot.late_at.is_(None), Run.status == PENDING)).all()
    return min((cron.as_utc(slot) + timedelta(seconds=grace) for slot, grace in rows), default=None)


def fire_due(now: datetime) -> Fired:
    """For every enabled schedule that came due by `now`: run its newest due slot if still within its
    grace, record the others as missed, and move it to its next slot. FIRE_BATCH schedules share a
    transaction (one commit, then their runs are queued): a commit each made 500 jobs due in one
    minute take 16 s on SQLite."""
    fired = Fired([], [])
    # Plain values, worked out before the first commit expires the rows they come from.
    plans = [Plan(schedule.job_id, schedule.grace_seconds, schedule.overlap, due_slots(schedule, now),
                  next_slot(schedule, now)) for schedule in due_schedules(now)]
    for first in range(0, len(plans), FIRE_BATCH):
        batch = plans[first:first + FIRE_BATCH]
        try:
            _fire_batch(batch, now, fired)
        except Exception:  # the database or queue is down: the next tick tries again (slots are unique)
            db.session.rollback()
            log.exception("schedules of %d jobs could not fire", len(batch))
    return fired


FIRE_BATCH = 100
WITH_TESTS = selectinload(Job.entries).selectinload(JobTest.test)


@dataclass
class Plan:
    """What one due schedule needs, read before its batch starts."""

    job_id: str
    grace: int
    overlap: str
    due: list[datetime]  # newest first
    following: datetime | None


def _fire_batch(batch: list[Plan], now: datetime, fired: Fired) -> None:
    job_ids = [plan.job_id for plan in batch]
    jobs = {job.id: job for job in db.session.scalars(select(Job).options(WITH_TESTS).where(Job.id.in_(job_ids)))}
    busy = {job_id: (run_id, status) for job_id, run_id, status in db.session.execute(
        select(Run.job_id, Run.id, Run.status).where(Run.job_id.in_(job_ids), Run.status.in_((PENDING, RUNNING))))}
    created: list[tuple[int, Run]] = []
    events: list[tuple[int, str]] = []
    with db.session.no_autoflush:  # each slot's insert would flush the runs made so far, one by one
        for plan in batch:
            job = jobs.get(plan.job_id)
            if plan.due and job is not None:
                _settle(job, plan, busy.get(plan.job_id), now, created, events, fired)
    db.session.flush()  # the runs' rows, all at once, before their slots point at them
    if created:
        db.session.execute(update(ScheduleSlot), [{"id": slot_id, "run_id": run.id} for slot_id, run in created])
    # Moved on in the same transaction as its slots: a clock that dies before the commit leaves both
    # undone, and the next tick fires them again.
    db.session.execute(update(JobSchedule), [{"job_id": plan.job_id, "next_run_at": plan.following}
                                             for plan in batch])
    queued = [(run.id, run.kind) for _, run in created]
    db.session.commit()
    for run_id, kind in queued:
        try:
            runs.enqueue_id(run_id, kind)
            fired.runs.append(run_id)
        except runs.QueueUnavailable:
            pass  # the run is marked as an error; its slot keeps it, for the record
    for slot_id, event in events:
        slot = db.session.get(ScheduleSlot, slot_id)
        if slot is not None:
            slot_event(slot, event)


def _settle(job: Job, plan: Plan, busy: tuple[str, str] | None, now: datetime, created: list[tuple[int, Run]],
            events: list[tuple[int, str]], fired: Fired) -> None:
    latest, *older = plan.due

    def record(slot_time: datetime, state: str, reason: str) -> int | None:
        slot_id = _claim(job.id, slot_time, state, reason)
        if slot_id is not None:
            fired.slots.append((job.id, slot_time, state))
            if state in ALERTING:
                events.append((slot_id, state))
        return slot_id

    for slot_time in reversed(older):
        record(slot_time, MISSED, "the clock was not running at this time")
    late_by, grace = (now - latest).total_seconds(), plan.grace
    if late_by > grace:
        record(latest, MISSED, f"the clock came to this slot {late_by:.0f} s after it, past its grace of {grace} s")
    elif not job.entries:
        record(latest, SKIPPED, "the job has no tests")
    elif busy is not None and plan.overlap == "skip":
        record(latest, SKIPPED, f"the previous run {busy[0]} was still {busy[1]}")
    else:
        slot_id = record(latest, RAN, "")
        if slot_id is not None:
            created.append((slot_id, _new_run(job, latest)))


def due_slots(schedule: JobSchedule, now: datetime) -> list[datetime]:
    """The slots from the schedule's next_run_at up to `now`, newest first, at most MAX_MISSED_SLOTS + 1:
    read backwards from now, so that a long downtime costs no more than a short one."""
    assert schedule.next_run_at is not None
    start = cron.as_utc(schedule.next_run_at)
    zone = cron.zone(schedule.timezone)
    backwards = CronSim(schedule.cron, (now + timedelta(seconds=1)).astimezone(zone), reverse=True)
    times = (moment.astimezone(UTC) for moment in backwards)
    return [moment for moment in islice(times, MAX_MISSED_SLOTS + 1) if moment >= start
            ] if start <= now else []


def _claim(job_id: str, slot_time: datetime, state: str, reason: str) -> int | None:
    """Insert the slot's row, or find that another clock already has (None): the unique key on
    (job, slot) decides, without an error to recover from (ON CONFLICT DO NOTHING, PostgreSQL and
    SQLite alike). A second clock's insert waits for the first one's commit, then does nothing."""
    dialect = db.session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(ScheduleSlot).values(
        job_id=job_id, scheduled_for=slot_time, state=state, reason=reason or None, created_at=utcnow(),
    ).on_conflict_do_nothing(index_elements=["job_id", "scheduled_for"]).returning(ScheduleSlot.id)
    return db.session.execute(statement).scalar()


def _new_run(job: Job, slot_time: datetime) -> Run:
    """The slot's run, as jobs.start_run makes one, marked as the schedule's; committed by the caller."""
    created = utcnow()
    job.last_run_at = created
    return runs.create_run(Run(id=new_id(), kind="job", job_id=job.id, title=job.name, trigger="schedule",
                               retries=job.retries, timeout_ms=job.timeout_ms, created_at=created,
                               scheduled_for=slot_time, shards=job.shards),
                           [(test, test.title, test.script) for test in job.tests], commit=False)


def watch(now: datetime) -> list[tuple[str, datetime, str]]:
    """Slots gone wrong since: a run not started by its slot plus grace is late; a run still going past
    its time limit plus grace is stuck; a late slot whose run has started is back to ran (late_at stays)."""
    changed: list[tuple[str, datetime, str]] = []
    rows = db.session.execute(
        select(ScheduleSlot, Run, JobSchedule.grace_seconds)
        .join(Run, ScheduleSlot.run_id == Run.id)
        .join(JobSchedule, JobSchedule.job_id == ScheduleSlot.job_id)
        # A late slot whose run has started, whatever its status now: it may start and end between ticks.
        .where(or_((ScheduleSlot.state == LATE) & Run.started_at.is_not(None),
                   (ScheduleSlot.state == RAN) & Run.status.in_((PENDING, RUNNING))))).all()
    for slot, run, grace in rows:
        slot_time = cron.as_utc(slot.scheduled_for)
        if slot.state == LATE and run.started_at is not None:
            _move(slot, (LATE,), {"state": RAN})
        elif slot.state == RAN and slot.late_at is None and run.started_at is None \
                and now > slot_time + timedelta(seconds=grace):
            if _move(slot, (RAN,), {"state": LATE, "late_at": now,
                                    "reason": f"its run had not started {grace} s after the slot"},
                     ScheduleSlot.late_at.is_(None)):
                changed.append((slot.job_id, slot_time, LATE))
                slot_event(slot, LATE)
        elif run.status == RUNNING and run.started_at is not None \
                and now > cron.as_utc(run.started_at) + timedelta(milliseconds=run.timeout_ms, seconds=grace):
            if _move(slot, (RAN, LATE), {"state": STUCK,
                                         "reason": f"its run was still running {grace} s past its time limit"}):
                changed.append((slot.job_id, slot_time, STUCK))
                slot_event(slot, STUCK)
    db.session.commit()
    return changed


def _move(slot: ScheduleSlot, states: tuple[str, ...], values: dict[str, Any], *conditions: Any) -> bool:
    """Change a slot's state if it is still in one of `states`: only one clock wins the change."""
    result = db.session.execute(update(ScheduleSlot).where(ScheduleSlot.id == slot.id,
                                                           ScheduleSlot.state.in_(states), *conditions)
                                .values(**values).execution_options(synchronize_session=False))
    db.session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    for name, value in values.items():
        setattr(slot, name, value)
    return True


def any_enabled() -> bool:
    return bool(db.session.scalar(select(exists().where(JobSchedule.enabled))))
