"""A worker process runs as many runs at once as it has threads, from either queue, and no more:
a worker command of its own (the Procfile's, one process of two threads), on a queue namespace
of its own, so that no other test's runs take its threads."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.conftest import make_app, start_worker
from tests.helpers import save_job, save_test, start_job, start_run, wait_for_run

# No browser: the runs wait, so they overlap however loaded the machine is.
WAITS = """import { test } from '@playwright/test';

test('waits 3 s', async () => {
  await new Promise((resolve) => setTimeout(resolve, 3000));
});
"""


@pytest.fixture()
def own_app(app: Flask, settings: dict[str, str], tmp_path: Path) -> Iterator[Flask]:
    own = {**settings, "QUEUE_NAMESPACE": f"supertest-slots-{uuid.uuid4().hex[:8]}",
           "WORKER_PROCESSES": "1", "WORKER_THREADS": "2"}
    worker = start_worker(own, tmp_path / "worker.log")
    try:
        yield make_app(own)
    finally:
        worker.stop()


def span(run: dict[str, Any]) -> tuple[datetime, datetime]:
    assert run["status"] == "passed", run
    return datetime.fromisoformat(run["startedAt"]), datetime.fromisoformat(run["finishedAt"])


def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


def test_two_runs_submitted_together_on_two_threads_overlap(own_app: Flask) -> None:
    client = own_app.test_client()
    ids = [start_run(client, WAITS, f"together {n}")["runId"] for n in (1, 2)]
    (first_start, first_end), (second_start, second_end) = (span(wait_for_run(client, run_id)) for run_id in ids)
    assert first_start < second_end and second_start < first_end


def test_test_runs_and_a_job_run_share_the_threads_never_more(own_app: Flask) -> None:
    client = own_app.test_client()
    job_id = save_job(client, "waits", [save_test(client, "waits in a job", WAITS)])
    ids = [start_run(client, WAITS, f"shared {n}")["runId"] for n in (1, 2)] + [start_job(client, job_id)["runId"]]
    assert most_at_once([span(wait_for_run(client, run_id)) for run_id in ids]) == 2
