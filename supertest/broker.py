"""The Dramatiq broker on Redis, and the middleware that gives actors an app context."""
from __future__ import annotations

import logging
import threading
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


class Reaper(Middleware):
    """In every worker process, a thread that hands back runs whose worker is gone (killed,
    crashed, cut off): their heartbeat stops, and after WORKER_LOST_SECONDS another worker
    takes them up. Any worker may reap any run; the handover is a compare-and-set."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.stopped = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        threading.Thread(target=self._reap, name="reaper", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stopped.set()

    def _reap(self) -> None:
        from supertest.services import runs  # imports the models, which need the app's extensions

        every = self.app.config["HEARTBEAT_SECONDS"]
        while not self.stopped.wait(every):
            with self.app.app_context():
                try:
                    runs.reap(self.app.config["WORKER_LOST_SECONDS"])
                except Exception:  # the database or Redis is down: try again on the next pass
                    log.warning("could not look for runs of lost workers", exc_info=True)


def init_app(app: Flask) -> None:
    """Create the broker for this app, make it Dramatiq's global one and bind the actors to it."""
    broker = RedisBroker(
        url=app.config["REDIS_URL"],
        namespace=app.config["QUEUE_NAMESPACE"],
        # A worker that dies stops heartbeating; its messages go back to the queue once
        # another worker's maintenance pass notices. The defaults make that take many minutes.
        heartbeat_timeout=30_000,
        maintenance_chance=100,
    )
    broker.add_middleware(AppContext(app))
    broker.add_middleware(Reaper(app))
    dramatiq.set_broker(broker)
    from supertest import tasks  # the actors; imported only once a broker is set

    app.extensions["actors"] = tasks.declare(broker, app.config)
