"""Alert rules per job, the job state they watch, and the deliveries they make.

A job's runs move it between passing and failing; each flip (after `after_failures` failures in a
row, and back on a passing run) makes one delivery per channel of its rule, queued on
`notifications`. Slot events from the schedules (late, missed, stuck) come in by `slot_alert`.
Nothing here may hold up a run: queueing happens after the commit, and a failure to queue is
logged and left in the delivery's detail.
"""
from __future__ import annotations

import html
import logging
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from supertest.extensions import db
from supertest.models import Channel, Delivery, Job, JobAlerts, Run, as_utc, utcnow
from supertest.outcomes import CANCELLED, PASSED
from supertest.services import notify
from supertest.services.serialize import iso, report_url, run_json
from supertest.services.validation import ValidationError

log = logging.getLogger(__name__)

SLOT_EVENTS = ("late", "missed", "stuck")
EVENTS = ("failed", "recovered", *SLOT_EVENTS, "test")
ACTOR = "deliver_alert"
DEFAULT_RULE: dict[str, Any] = {"channel_ids": [], "after_failures": 1, "on_recovery": True, "on_missed": True,
                                "every_failure": False, "remind_hours": None}


# ---- rules -----------------------------------------------------------------------------------------

def set_rule(job: Job, fields: dict[str, Any]) -> None:
    """Give the job this rule (fields from validation.alert_rule); 422 naming unknown channel ids.
    Flushes, does not commit: the caller saves it with the rest of the job."""
    ids = fields["channel_ids"]
    channels = list(db.session.scalars(select(Channel).where(Channel.id.in_(ids)))) if ids else []
    unknown = [channel_id for channel_id in ids if channel_id not in {channel.id for channel in channels}]
    if unknown:
        db.session.rollback()
        raise ValidationError("alerts.channelIds names channels that do not exist", "alerts.channelIds",
                              status=422, details={"unknown": unknown})
    rule = job.alerts or JobAlerts(job_id=job.id)
    for name, value in fields.items():
        if name != "channel_ids":
            setattr(rule, name, value)
    rule.channels = channels
    job.alerts = rule
    db.session.flush()


# ---- events -----------------------------------------------------------------------------------------

def after_run(run: Run) -> list[Delivery]:
    """A job run reached its end: move the job's state, and alert on a flip (or as the rule says).
    Never raises: a run's end must not depend on its alerts."""
    try:
        return _after_run(run)
    except Exception:
        log.exception("run %s: its job's alerts could not be worked out", run.id)
        db.session.rollback()
        return []


def _after_run(run: Run) -> list[Delivery]:
    if run.kind != "job" or run.job_id is None or run.status == CANCELLED:
        return []
    # Locked (PostgreSQL) so two runs of a job ending at once count one after the other.
    rule = db.session.get(JobAlerts, run.job_id, with_for_update=True)
    if rule is None:
        return []
    now, event = utcnow(), None
    if run.status == PASSED:
        if rule.state == "failing" and rule.on_recovery:
            event = "recovered"
        rule.state, rule.failures_in_row = "passing", 0
    else:
        rule.failures_in_row += 1
        due = rule.remind_hours and rule.alerted_at and now - as_utc(rule.alerted_at) >= timedelta(
            hours=rule.remind_hours)
        if rule.state == "passing" and rule.failures_in_row >= rule.after_failures:
            rule.state, event = "failing", "failed"
        elif rule.every_failure or (rule.state == "failing" and due):
            event = "failed"
        if event:
            rule.alerted_at = now
    deliveries = _record(rule, event, run.job_id, run.id, None) if event else []
    db.session.commit()
    queue(deliveries)
    return deliveries


def slot_alert(job: Job, event: str, scheduled_for: datetime, run: Run | None = None) -> list[Delivery]:
    """A schedule's slot went `late`, `missed` or `stuck`: alert the job's channels, if its rule says
    so (onMissed). The entry point for the clock; commits, queues, and returns the deliveries."""
    if event not in SLOT_EVENTS:
        raise ValueError(f"slot events are {SLOT_EVENTS}, not {event!r}")
    rule = job.alerts
    if rule is None or not rule.on_missed:
        return []
    deliveries = _record(rule, event, job.id, run.id if run else None, scheduled_for)
    db.session.commit()
    queue(deliveries)
    return deliveries


def _record(rule: JobAlerts, event: str, job_id: str, run_id: str | None,
            scheduled_for: datetime | None) -> list[Delivery]:
    deliveries = [Delivery(event=event, channel_id=channel.id, job_id=job_id, run_id=run_id,
                           scheduled_for=scheduled_for) for channel in rule.channels]
    db.session.add_all(deliveries)
    return deliveries


def queue(deliveries: list[Delivery]) -> None:
    """Hand committed deliveries to the `notifications` queue; one that cannot be queued says so."""
    for delivery in deliveries:
        try:
            current_app.extensions["actors"][ACTOR].send(delivery.id, 1)
        except Exception as error:  # the broker: connection, timeout, auth
            log.exception("alert %s could not be queued", delivery.id)
            delivery.state, delivery.detail = "failed", f"could not be queued: {error}"
            db.session.commit()


# ---- delivery ---------------------------------------------------------------------------------------

def transport() -> notify.Transport:
    config = current_app.config
    return notify.Transport(timeout=config["NOTIFY_TIMEOUT_SECONDS"], smtp_url=config["SMTP_URL"],
                            mail_from=config["MAIL_FROM"])


def deliver(delivery_id: str, attempt: int) -> int | None:
    """Make attempt number `attempt` at a delivery. Returns the milliseconds to wait before the next
    attempt, or None when it is over (sent, failed for good, or this attempt was made already)."""
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None or delivery.state != "pending":
        return None
    if delivery.attempts == attempt:
        # Made already, but the next one may never have been queued (the broker failed and Dramatiq
        # retried this message): queue it again. A second copy of that next one finds it made and stops.
        return _backoff(attempt)
    if delivery.attempts != attempt - 1:
        return None  # a redelivered message of an older attempt
    if delivery.channel is None:
        delivery.state, delivery.detail = "failed", "its channel was deleted"
        db.session.commit()
        return None
    channel = delivery.channel
    delivered, detail = notify.send(channel.type, channel.target, channel.secret, compose(delivery), transport())
    attempts = current_app.config["NOTIFY_ATTEMPTS"]
    delivery.attempts, delivery.attempted_at, delivery.detail = attempt, utcnow(), detail
    wait = None
    if delivered:
        delivery.state = "sent"
    elif attempt >= attempts:
        delivery.state = "failed"
    else:
        wait = _backoff(attempt)
        delivery.detail = f"{detail} (attempt {attempt} of {attempts}; again in {wait // 1000} s)"
    db.session.commit()
    return wait


def _backoff(attempt: int) -> int:
    """Milliseconds from failed attempt number `attempt` to the next: NOTIFY_BACKOFF_SECONDS, doubling."""
    return current_app.config["NOTIFY_BACKOFF_SECONDS"] * 1000 * 2 ** (attempt - 1)


def test_channel(channel: Channel, job_name: str = "Supertest") -> tuple[bool, str]:
    """Send a test alert now, in this request, and say what the far end answered."""
    return notify.send(channel.type, channel.target, channel.secret,
                       _alert("test", {"id": None, "name": job_name}, None, None), transport())


def compose(delivery: Delivery) -> notify.Alert:
    job = {"id": delivery.job_id, "name": delivery.job.name if delivery.job else "(deleted job)"}
    return _alert(delivery.event, job, delivery.run, delivery.scheduled_for)


WORDS = {"failed": "is failing", "recovered": "has recovered", "late": "is late: its scheduled run has not started",
         "missed": "missed a scheduled run", "stuck": "is stuck: its run has gone past its time limit",
         "test": "sent a test notification"}


def _alert(event: str, job: dict[str, Any], run: Run | None, scheduled_for: datetime | None) -> notify.Alert:
    base = current_app.config["PUBLIC_URL"]
    links = {"run": f"{base}/runs/{run.id}" if run else None,
             "report": f"{base}{report_url(run.id)}" if run and run.report_store else None}
    payload = {"event": event, "job": job, "run": run_json(run, with_tests=False) if run else None,
               "scheduledFor": iso(scheduled_for), "links": links}
    subject = f"[Supertest] {job['name']} {WORDS[event]}"
    facts = []
    if run is not None:
        facts.append(f"Run: {run.status}, {run.failed} of {run.total} test(s) failed"
                     + (f"; {run.error_message}" if run.error_message else ""))
    if scheduled_for is not None:
        facts.append(f"Scheduled for {iso(scheduled_for)}")
    shown = {name: url for name, url in links.items() if url}
    text = "\n".join([subject, *facts, *(f"{name.capitalize()}: {url}" for name, url in shown.items())]) + "\n"
    page = (f"<html><body><h2>{html.escape(subject)}</h2>"
            + "".join(f"<p>{html.escape(fact)}</p>" for fact in facts)
            + "".join(f'<p><a href="{html.escape(url)}">Open the {name}</a></p>' for name, url in shown.items())
            + "</body></html>")
    return notify.Alert(payload=payload, subject=subject, text=text, html=page)


# ---- reading ----------------------------------------------------------------------------------------

def recent(job_id: str | None = None, limit: int = 50) -> list[Delivery]:
    query = select(Delivery).options(selectinload(Delivery.channel), selectinload(Delivery.job))
    if job_id is not None:
        query = query.where(Delivery.job_id == job_id)
    return list(db.session.scalars(query.order_by(Delivery.created_at.desc(), Delivery.id.desc()).limit(limit)))


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {"id": delivery.id, "event": delivery.event, "jobId": delivery.job_id, "runId": delivery.run_id,
            "channelId": delivery.channel_id, "scheduledFor": iso(delivery.scheduled_for),
            "createdAt": iso(delivery.created_at), "attemptedAt": iso(delivery.attempted_at),
            "state": delivery.state, "attempts": delivery.attempts, "detail": delivery.detail}
