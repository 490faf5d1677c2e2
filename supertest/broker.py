"""The Dramatiq broker on Redis, and the middleware that gives actors an app context."""
from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware
from flask import Flask


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
    dramatiq.set_broker(broker)
    from supertest import tasks  # the actors; imported only once a broker is set

    app.extensions["actors"] = tasks.declare(broker, app.config)
