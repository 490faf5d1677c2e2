"""What an operator watches: the queues, the live workers, runs restarted lately, report storage."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from supertest import queues, registry
from supertest.connections import redis_client
from supertest.extensions import db
from supertest.models import Run, utcnow
from supertest.outcomes import RUNNING
from supertest.storage import LOCAL

RESTARTED_SHOWN = 50


def queue_names() -> list[str]:
    """The queues the app's actors are declared on, so that a queue added with an actor shows up."""
    return sorted({actor.queue_name for actor in current_app.extensions["actors"].values()})


def queue_states() -> list[dict[str, Any]]:
    """Each queue: messages waiting, how long the oldest has waited, and those workers hold (running)."""
    now_ms = int(time.time() * 1000)
    states = queues.inspect(redis_client(), current_app.config["QUEUE_NAMESPACE"], queue_names())
    return [{"name": state.name, "waiting": state.waiting,
             "oldestWaitingSeconds": state.oldest_waiting_seconds(now_ms), "running": state.held}
            for state in states]


def workers() -> list[dict[str, Any]]:
    """The live worker processes as they registered (registry.py), each with the runs it holds now
    (from the database, which knows: a run names its worker while it runs)."""
    entries = registry.registered(redis_client(), current_app.config["QUEUE_NAMESPACE"])
    held: dict[str, list[str]] = {}
    for run_id, worker in db.session.execute(select(Run.id, Run.worker).where(Run.status == RUNNING)):
        held.setdefault(worker or "", []).append(run_id)
    db.session.rollback()
    return [{"id": entry["id"], "host": entry.get("host"), "pid": entry.get("pid"),
             "startedAt": entry.get("startedAt"), "heartbeatAt": entry.get("heartbeatAt"),
             "runs": sorted(held.get(entry["id"], [])), "sandbox": entry.get("sandbox"),
             "versions": entry.get("versions")}
            for entry in entries]


def restarted_runs(hours: int = 24) -> list[Run]:
    """Runs started again (handed back: worker lost or shut down) among those of the last `hours`."""
    since = utcnow() - timedelta(hours=hours)
    return list(db.session.scalars(select(Run).where(Run.created_at >= since, Run.attempt > 1)
                                   .order_by(Run.created_at.desc()).limit(RESTARTED_SHOWN)))


def uploads_waiting() -> int:
    """Reports kept on a worker's disk while object storage was down, waiting to be uploaded.
    Without object storage, local disk is where reports live: nothing waits."""
    if not current_app.extensions["reports"].remote:
        return 0
    return db.session.scalar(select(func.count()).select_from(Run).where(Run.report_store == LOCAL)) or 0


def storage_problem() -> str | None:
    """None when report storage answers; else what went wrong, in a line."""
    try:
        current_app.extensions["reports"].check()
    except Exception as error:  # any failure of the store is the answer, not an error of this page
        return str(error).splitlines()[0][:300] if str(error) else type(error).__name__
    return None


@dataclass(frozen=True)
class Overview:
    queues: list[dict[str, Any]]
    workers: list[dict[str, Any]]
    restarted: list[Run]
    storage_problem: str | None
    uploads_waiting: int
    remote_storage: bool


def overview() -> Overview:
    return Overview(queue_states(), workers(), restarted_runs(), storage_problem(), uploads_waiting(),
                    current_app.extensions["reports"].remote)
