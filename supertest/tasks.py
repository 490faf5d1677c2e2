"""Dramatiq actors: thin wrappers that hand a run id to the execution service."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dramatiq

from supertest.config import MAX_TIMEOUT_MS
from supertest.execution import execute_run

TEST_QUEUE = "test-execution"
JOB_QUEUE = "job-execution"
RUN_QUEUES = (TEST_QUEUE, JOB_QUEUE)  # their messages' one argument is a run id


def execute_test_run(run_id: str) -> None:
    """Run a single test (playground or saved) by its run id."""
    execute_run(run_id)


def execute_job_run(run_id: str) -> None:
    """Run all the tests of a job by its run id."""
    execute_run(run_id)


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
    return {
        function.__name__: dramatiq.Actor(function, broker=broker, actor_name=function.__name__,
                                          queue_name=queue, priority=0, options=options)
        for function, queue in ((execute_test_run, TEST_QUEUE), (execute_job_run, JOB_QUEUE))
    }
