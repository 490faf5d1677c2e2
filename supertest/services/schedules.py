"""Schedules on jobs and their slots: setting a schedule, firing a due slot, and finding slots that
went wrong (late, stuck). The clock (supertest/clock.py) calls these every tick.

Every slot event that must alert (late, missed, stuck, skipped) goes through `slot_event`, once per
slot and event: the change of state that raises it is one only a single clock can make (an insert
under the unique key on (job, slot), or a conditional update).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from cronsim import CronSim
from sqlalchemy import exists, func, select, update
from sqlalchemy.exc import IntegrityError

from supertest import cron
from supertest.extensions import db
from supertest.models import Job, JobSchedule, Run, ScheduleSlot, Test, utcnow
from supertest.outcomes import PENDING, RUNNING
from supertest.services import runs
from supertest.services.serialize import iso, schedule_json

log = logging.getLogger(__name__)

RAN, LATE, MISSED, SKIPPED, STUCK = "ran", "late", "missed", "skipped", "stuck"
ALERTING = (LATE, MISSED, SKIPPED, STUCK)
# After downtime, at most this many slots a job slept through are recorded as missed (the newest);
# older ones leave no row, so that a clock down for a month does not write a month of rows.
MAX_MISSED_SLOTS = 10
# Called with (slot, event) by slot_event: where alerting is wired in.
listeners: list[Callable[[ScheduleSlot, str], None]] = []


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
    and tells the listeners. Called once per slot and event, by the clock that made the change."""
    db.session.execute(update(ScheduleSlot).where(ScheduleSlot.id == slot.id).values(alerted_at=utcnow()))
    db.session.commit()
    log.warning("schedule slot %s: job %s slot %s%s", event, slot.job_id, iso(slot.scheduled_for),
                f" ({slot.reason})" if slot.reason else "")
    for listener in listeners:
        try:
            listener(slot, event)
        except Exception:  # an alert that cannot be sent must not stop the clock
            log.exception("slot event listener failed for job %s slot %s", slot.job_id, iso(slot.scheduled_for))


@dataclass
class Fired:
    """What one tick did for the schedules that were due."""

    runs: list[str]
    slots: list[tuple[str, datetime, str]]  # (job id, slot, state) for each slot recorded


def due_schedules(now: datetime) -> list[JobSchedule]:
    return list(db.session.scalars(select(JobSchedule).where(JobSchedule.enabled, JobSchedule.next_run_at <= now)
                                   .order_by(JobSchedule.next_run_at)))


def earliest_next(now: datetime) -> datetime | None:
    """The soonest slot of any enabled schedule, so the clock can wake for it rather than a tick late."""
    return db.session.scalar(select(func.min(JobSchedule.next_run_at)).where(JobSchedule.enabled))


def fire_due(now: datetime) -> Fired:
    """For every enabled schedule that came due by `now`: run its newest due slot if still within its
    grace, record the others as missed, and move it to its next slot."""
    fired = Fired([], [])
    for job_id in [schedule.job_id for schedule in due_schedules(now)]:
        schedule = db.session.get(JobSchedule, job_id)
        if schedule is None or not schedule.enabled or schedule.next_run_at is None:
            continue  # changed meanwhile
        try:
            _fire(schedule, now, fired)
        except Exception:  # one job's trouble (say, the queue is down) must not stop the others
            db.session.rollback()
            log.exception("schedule of job %s could not fire", job_id)
    return fired


def _fire(schedule: JobSchedule, now: datetime, fired: Fired) -> None:
    job_id, grace = schedule.job_id, schedule.grace_seconds
    due = due_slots(schedule, now)
    following = next_slot(schedule, now)
    if due:
        _settle(job_id, due, grace, schedule.overlap, now, fired)
    # Moved on only once its slots are settled: a clock that dies in between fires them again, and
    # the unique key makes that harmless.
    db.session.execute(update(JobSchedule).where(JobSchedule.job_id == job_id).values(next_run_at=following))
    db.session.commit()


def _settle(job_id: str, due: list[datetime], grace: int, overlap: str, now: datetime, fired: Fired) -> None:
    latest, *older = due
    for slot_time in reversed(older):
        _record(job_id, slot_time, MISSED, "the clock was not running at this time", fired)
    late_by = (now - latest).total_seconds()
    if late_by > grace:
        _record(job_id, latest, MISSED, f"the clock came to this slot {late_by:.0f} s after it, past its grace "
                                        f"of {grace} s", fired)
        return
    job = db.session.get(Job, job_id)
    if job is None:
        return
    if not job.entries:
        _record(job_id, latest, SKIPPED, "the job has no tests", fired)
        return
    busy = db.session.scalar(select(Run).where(Run.job_id == job_id, Run.status.in_((PENDING, RUNNING)))
                             .order_by(Run.created_at.desc()).limit(1))
    if busy is not None and overlap == "skip":
        _record(job_id, latest, SKIPPED, f"the previous run {busy.id} was still {busy.status}", fired)
        return
    _start(job, latest, fired)


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


def _claim(slot: ScheduleSlot) -> bool:
    """Insert the slot, or find that another clock already has: the unique key decides."""
    db.session.add(slot)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


def _record(job_id: str, slot_time: datetime, state: str, reason: str, fired: Fired) -> None:
    slot = ScheduleSlot(job_id=job_id, scheduled_for=slot_time, state=state, reason=reason)
    if not _claim(slot):
        return
    db.session.commit()
    fired.slots.append((job_id, slot_time, state))
    slot_event(slot, state)


def _start(job: Job, slot_time: datetime, fired: Fired) -> None:
    """Create the slot's run and queue it, as jobs.start_run does, marked as the schedule's."""
    slot = ScheduleSlot(job_id=job.id, scheduled_for=slot_time, state=RAN)
    if not _claim(slot):
        return
    tests: list[Test] = job.tests
    created = utcnow()
    job.last_run_at = created
    run = Run(kind="job", job_id=job.id, title=job.name, trigger="schedule", retries=job.retries,
              timeout_ms=job.timeout_ms, created_at=created, scheduled_for=slot_time)
    slot.run = run
    runs.create_run(run, [(test, test.title, test.script) for test in tests])  # commits the slot with it
    fired.slots.append((job.id, slot_time, RAN))
    try:
        runs.enqueue(run)
    except runs.QueueUnavailable:
        return  # the run is marked as an error; the slot keeps it, for the record
    fired.runs.append(run.id)


def watch(now: datetime) -> list[tuple[str, datetime, str]]:
    """Slots gone wrong since: a run not started by its slot plus grace is late; a run still going past
    its time limit plus grace is stuck; a late slot whose run has started is back to ran (late_at stays)."""
    changed: list[tuple[str, datetime, str]] = []
    rows = db.session.execute(
        select(ScheduleSlot, Run, JobSchedule.grace_seconds)
        .join(Run, ScheduleSlot.run_id == Run.id)
        .join(JobSchedule, JobSchedule.job_id == ScheduleSlot.job_id)
        .where(ScheduleSlot.state.in_((RAN, LATE)), Run.status.in_((PENDING, RUNNING)))).all()
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


def scheduled_job_ids() -> set[str]:
    return set(db.session.scalars(select(JobSchedule.job_id)))


def any_enabled() -> bool:
    return bool(db.session.scalar(select(exists().where(JobSchedule.enabled))))
