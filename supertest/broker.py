"""The Dramatiq broker on Redis, and the middleware that gives actors an app context."""
from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware
from flask import Flask

log = logging.getLogger(__name__)


class AppContext(Middleware):
    """Run every message inside a Flask app context, so actors can use the database."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._contexts: dict[str, Any] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        context = self.app.app_context()
        context.push()
        self._contexts[message.message_id] = context

    def after_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        context = self._contexts.pop(message.message_id, None)
        if context is not None:
            context.pop()

    after_skip_message = after_process_message


class Housekeeping(Middleware):
    """Periodic work in every worker process, each job on a thread of its own.

    - Reap: hand back runs whose worker is gone (killed, crashed, cut off): their heartbeat
      stops, and after WORKER_LOST_SECONDS another worker takes them up. Any worker may reap
      any run; the handover is a compare-and-set.
    - Upload the reports this machine kept on disk while object storage was down.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.stopped = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        from supertest.services import reports, runs  # imports the models, which need the app's extensions

        config = self.app.config
        for name, seconds, job in (
            ("reaper", config["HEARTBEAT_SECONDS"], lambda: runs.reap(config["WORKER_LOST_SECONDS"])),
            ("report-uploader", config["REPORT_RETRY_SECONDS"], reports.upload_kept_reports),
            ("sandbox-check", config["HEARTBEAT_SECONDS"], self._announce_sandbox),
        ):
            threading.Thread(target=self._every, args=(seconds, job), name=name, daemon=True).start()
        threading.Thread(target=self._now, args=(self._announce_sandbox,), name="sandbox-check", daemon=True).start()

    def _announce_sandbox(self) -> None:
        """Whether tests can run in this process's sandbox: found once (before its first run, or
        here at start), told to /api/health for as long as this process lives."""
        from supertest import events
        from supertest.execution import preflight, sandbox_problem

        seconds = max(30, 3 * self.app.config["HEARTBEAT_SECONDS"])
        preflight.announce(events.redis_client(), self.app.config["QUEUE_NAMESPACE"],
                           f"{socket.gethostname()}:{os.getpid()}", sandbox_problem(), seconds)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stopped.set()

    def _now(self, job: Callable[[], object]) -> None:
        with self.app.app_context():
            try:
                job()
            except Exception:
                log.warning("%s failed", threading.current_thread().name, exc_info=True)

    def _every(self, seconds: float, job: Callable[[], object]) -> None:
        while not self.stopped.wait(seconds):
            with self.app.app_context():
                try:
                    job()
                except Exception:  # the database or Redis is down: try again on the next pass
                    log.warning("%s failed; trying again in %s s", threading.current_thread().name, seconds,
                                exc_info=True)


def init_app(app: Flask) -> None:
    """Create the broker for this app, make it Dramatiq's global one and bind the actors to it."""
    broker = RedisBroker(
        url=app.config["REDIS_URL"],
        namespace=app.config["QUEUE_NAMESPACE"],
        # A worker that dies stops heartbeating; its messages go back to the queue once another
        # worker's maintenance pass notices. Dramatiq's defaults (60 s, a pass on 0.1% of broker
        # calls) make that take many minutes; here 30 s, and a pass on 10% of calls (out of a million).
        # Runs themselves are handed back by our own reaper (Housekeeping), whichever comes first.
        heartbeat_timeout=30_000,
        maintenance_chance=100_000,
    )
    broker.add_middleware(AppContext(app))
    broker.add_middleware(Housekeeping(app))
    dramatiq.set_broker(broker)
    from supertest import tasks  # the actors; imported only once a broker is set

    app.extensions["actors"] = tasks.declare(broker, app.config)
