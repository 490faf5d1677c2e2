"""The clock process (the Procfile's `clock:`): fires job schedules and watches their slots.

    python -m supertest.clock

Each tick creates and queues the run of every due slot, records slots it cannot run (missed,
skipped), and marks slots whose run is late or stuck. Safe to run twice at once (a deploy overlap):
the database refuses a second slot row for the same job and time, so only one clock makes its run.
It stores when it last ticked in Redis, for /api/health.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from flask import Flask

from supertest import create_app
from supertest.connections import redis_client
from supertest.extensions import db
from supertest.models import as_utc, utcnow
from supertest.services import schedules

log = logging.getLogger("supertest.clock")


@dataclass
class Tick:
    """What one tick did: runs queued, slots recorded (job id, slot, state), slots found late or stuck."""

    runs: list[str]
    slots: list[tuple[str, datetime, str]]
    watched: list[tuple[str, datetime, str]]


def tick(now: datetime) -> Tick:
    """One pass at time `now` (injected, so tests need not wait for minutes). Needs an app context."""
    fired = schedules.fire_due(now)
    watched = schedules.watch(now)
    return Tick(fired.runs, fired.slots, watched)


def last_tick_key(namespace: str) -> str:
    return f"{namespace}:clock:last-tick"


def record_tick(app: Flask, moment: float) -> None:
    """When the clock last ticked (Unix time), for /api/health; kept a day, so an old value dies out."""
    redis_client().set(last_tick_key(app.config["QUEUE_NAMESPACE"]), f"{moment:.3f}", ex=86_400)


def seconds_until_next(now: datetime, longest: float) -> float:
    """How long to sleep: until the soonest slot or late deadline, so a slot is fired (and a late one
    found) on time rather than up to a tick after, but never longer than `longest`."""
    moments = [as_utc(moment) for moment in (schedules.earliest_next(now), schedules.earliest_late(now))
               if moment is not None]
    # One already past is overdue: its tick failed, or it is being handled; do not spin on it.
    ahead = [(moment - now).total_seconds() for moment in moments if moment > now]
    # A hair past the moment: a slot is late once its deadline has passed, not at it.
    return min([longest] + [seconds + 0.01 for seconds in ahead])


def run(app: Flask, stop: threading.Event) -> None:
    """Tick every CLOCK_TICK_SECONDS (or sooner, for a slot) until `stop` is set."""
    every = float(app.config["CLOCK_TICK_SECONDS"])
    log.info("clock started: ticking every %s s", every)
    while not stop.is_set():
        pause = every
        with app.app_context():
            try:
                started = time.time()
                done = tick(utcnow())
                record_tick(app, started)
                if done.runs or done.slots or done.watched:
                    log.info("tick: %d runs queued, %d slots recorded, %d slots late or stuck",
                             len(done.runs), len(done.slots), len(done.watched))
                pause = seconds_until_next(utcnow(), every)
            except Exception:  # the database or Redis is down: try again on the next tick
                log.warning("tick failed; trying again in %s s", every, exc_info=True)
            finally:
                db.session.remove()
        stop.wait(pause)
    log.info("clock stopped")


def main() -> None:
    app = create_app()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run(app, stop)


if __name__ == "__main__":
    main()
