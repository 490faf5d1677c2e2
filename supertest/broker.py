"""The Dramatiq broker on Redis (with run slots), the middleware that gives actors an app context, and the actors."""
from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import MAINTENANCE_SCALE
from dramatiq.middleware import Middleware
from flask import Flask

from supertest import logs, tasks
from supertest.housekeeping import Housekeeping
from supertest.slots import MachineSlots, RunSlotBroker, RunSlots, SlotSizing


class AppContext(Middleware):
    """Run every message inside a Flask app context, so actors can use the database."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._contexts: dict[str, Any] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        context = self.app.app_context()
        context.push()
        self._contexts[message.message_id] = context
        if message.queue_name in tasks.RUN_QUEUES and message.args:
            logs.set_run(str(message.args[0]))  # Dramatiq's own lines about the message name the run too

    def after_process_message(self, broker: dramatiq.Broker, message: MessageProxy, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        context = self._contexts.pop(message.message_id, None)
        if context is not None:
            context.pop()
        logs.set_run(None)

    after_skip_message = after_process_message


def init_app(app: Flask) -> None:
    """Create the broker for this app, make it Dramatiq's global one and bind the actors to it."""
    # A process takes a run only when a thread is free for it, counting both queues (slots.py).
    machine = app.config["MAX_RUNS_PER_MACHINE"]
    slots = RunSlots(MachineSlots(machine) if machine else None)
    broker = RunSlotBroker(
        slots=slots,
        run_queues=tasks.RUN_QUEUES,
        url=app.config["REDIS_URL"],
        namespace=app.config["QUEUE_NAMESPACE"],
        # A worker that dies stops heartbeating; its messages go back to the queue once another
        # worker's maintenance pass on that queue notices. Dramatiq's defaults (60 s, a pass on 0.1%
        # of broker calls) make that take many minutes; here 30 s, and a pass on every call: an idle
        # consumer calls about once a second (wake.py), so each idle worker looks at each queue about
        # once a second (two cheap range reads, while no worker is dead).
        # Runs themselves are handed back by our own reaper (Housekeeping), whichever comes first.
        heartbeat_timeout=30_000,
        maintenance_chance=MAINTENANCE_SCALE,
    )
    broker.add_middleware(SlotSizing(slots, other_queues=(tasks.NOTIFY_QUEUE,)))
    broker.add_middleware(AppContext(app))
    broker.add_middleware(Housekeeping(app))
    dramatiq.set_broker(broker)
    app.extensions["actors"] = tasks.declare(broker, app.config)
