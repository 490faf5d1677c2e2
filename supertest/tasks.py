"""Dramatiq actors: thin wrappers that hand a run id to the execution service, or a delivery id to alerts."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dramatiq
from flask import current_app

from supertest.config import MAX_TIMEOUT_MS
from supertest.execution import execute_run
from supertest.execution.sharded import execute_shard
from supertest.services import alerts

TEST_QUEUE = "test-execution"
JOB_QUEUE = "job-execution"
NOTIFY_QUEUE = "notifications"
# The queues whose messages take a run slot (slots.py); their messages' one argument is a run id.
RUN_QUEUES = (TEST_QUEUE, JOB_QUEUE)


def execute_test_run(run_id: str) -> None:
    """Run a single test (playground or saved) by its run id."""
    execute_run(run_id)


def execute_job_run(run_id: str, shard: int | None = None) -> None:
    """Run all the tests of a job by its run id, or one shard of them (services/shards.py)."""
    if shard is None:
        execute_run(run_id)
    else:
        execute_shard(run_id, shard)


def deliver_alert(delivery_id: str, attempt: int) -> None:
    """Make one attempt at delivering an alert; a failed one queues the next after its backoff.

    The backoff is ours rather than Dramatiq's retries, so that every attempt is counted in the
    delivery's row and a far end's failure is not logged as a crash. Dramatiq's own retries remain
    for faults of ours (the database) that raise.
    """
    wait = alerts.deliver(delivery_id, attempt)
    if wait is not None:
        current_app.extensions["actors"][alerts.ACTOR].send_with_options(args=(delivery_id, attempt + 1), delay=wait)


def declare(broker: dramatiq.Broker, config: Mapping[str, Any]) -> dict[str, dramatiq.Actor]:
    """Bind the actors to a broker, with explicit retry and time limits.

    The runner enforces each run's time limit itself and kills the browser; Dramatiq's limit is
    only a backstop well beyond the longest a run may be given. Retries are for infrastructure
    faults that raise before a run is claimed; a failing test is a result and never raises.
    `notify_shutdown`: a worker told to stop interrupts its runs, which hand themselves back.
    """
    longest = max(config["TEST_EXECUTION_TIMEOUT_MS"], config["JOB_EXECUTION_TIMEOUT_MS"], MAX_TIMEOUT_MS)
    options = {"max_retries": 3, "min_backoff": 1_000, "max_backoff": 30_000, "time_limit": longest + 5 * 60_000,
               "notify_shutdown": True}
    actors: dict[str, dramatiq.Actor] = {
        function.__name__: dramatiq.Actor(function, broker=broker, actor_name=function.__name__,
                                          queue_name=queue, priority=0, options=options)
        for function, queue in ((execute_test_run, TEST_QUEUE), (execute_job_run, JOB_QUEUE))
    }
    # An attempt waits NOTIFY_TIMEOUT_SECONDS for the far end at most (an SMTP conversation a few times that).
    actors[alerts.ACTOR] = dramatiq.Actor(
        deliver_alert, broker=broker, actor_name=alerts.ACTOR, queue_name=NOTIFY_QUEUE, priority=0,
        options={"max_retries": 3, "min_backoff": 1_000, "max_backoff": 30_000,
                 "time_limit": config["NOTIFY_TIMEOUT_SECONDS"] * 6_000 + 60_000})
    return actors
