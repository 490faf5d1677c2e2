"""Runs survive faults, each made to happen for real: a hanging test meets its time limit, a user
cancels, a worker is killed with SIGKILL or told to stop with SIGTERM. No run is lost, none stays
running, and none leaves processes behind."""
from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from supertest import models
from supertest.extensions import db
from supertest.services import runs
from tests.conftest import make_app, running_workers
from tests.helpers import (
    PASSING,
    passing_script,
    run_processes,
    save_job,
    save_test,
    start_job,
    start_run,
    wait_for_run,
    wait_until,
    waits,
)

# One quick test, then one that never ends by itself (no test timeout, a promise that never
# resolves); serial, so the quick one has finished whatever the machine's load.
HANGS = """import { test, expect } from '@playwright/test';

test.describe.configure({ mode: 'serial' });

test('quick before the limit', async ({ page }) => {
  await page.setContent('<p>quick</p>');
  await expect(page.locator('p')).toHaveText('quick');
});

test('waits for ever', async ({ page }) => {
  test.setTimeout(0);
  await page.setContent('<p>waiting</p>');
  await new Promise(() => {});
});
"""


def run_state(client: FlaskClient, run_id: str) -> dict[str, Any]:
    return client.get(f"/api/runs/{run_id}").get_json()


def wait_until_running_with_browser(client: FlaskClient, run_id: str) -> None:
    wait_until(lambda: run_state(client, run_id)["status"] == "running" and len(run_processes(run_id)) > 2,
               60, "the run's browser started")


def test_a_job_past_its_time_limit_ends_timeout_and_keeps_what_it_has(client: FlaskClient, worker) -> None:
    job_id = save_job(client, "limited", [save_test(client, "hangs past the limit", HANGS)])
    # A limit the quick test meets even on a loaded machine (two suites side by side and more).
    assert client.put(f"/api/jobs/{job_id}", json={"timeoutMs": 30000}).get_json()["timeoutMs"] == 30000
    run = wait_for_run(client, start_job(client, job_id)["runId"], timeout=120)
    assert run["status"] == "timeout", run
    assert run["timeoutMs"] == 30000 and "limit of 30 s" in run["errorMessage"]
    # Stopped within seconds of its limit, not when the test gave up by itself (never).
    assert run["durationMs"] < 30_000 + 15_000, run["durationMs"]
    statuses = {result["title"]: result["status"] for result in run["tests"]}
    assert statuses == {"quick before the limit": "passed", "waits for ever": "interrupted"}
    assert client.get(run["reportUrl"]).status_code == 200  # the report so far is kept
    assert run_processes(run["id"]) == []


def test_cancelling_a_pending_run_means_it_never_starts(app: Flask, client: FlaskClient, worker) -> None:
    with app.app_context():  # saved but not queued yet, as if its message were still waiting
        test = db.session.get(models.Test, save_test(client, "cancelled early", PASSING))
        run_id = runs.create_run(models.Run(kind="test", test_id=test.id, title=test.title),
                                 [(test, test.title, test.script)]).id
    response = client.post(f"/api/runs/{run_id}/cancel")
    assert response.status_code == 202 and response.get_json()["status"] == "cancelled"
    with app.app_context():
        runs.enqueue(runs.get(run_id))  # the message arrives after all
    time.sleep(3)  # ample for the worker to take the message
    after = run_state(client, run_id)
    assert (after["status"], after["startedAt"], after["errorMessage"]) == ("cancelled", None, "Cancelled by a user.")
    assert client.post(f"/api/runs/{run_id}/cancel").status_code == 409


def test_cancelling_a_running_run_kills_its_processes(client: FlaskClient, worker) -> None:
    run_id = start_run(client, waits(60), "cancelled while running")["runId"]
    wait_until_running_with_browser(client, run_id)
    response = client.post(f"/api/runs/{run_id}/cancel")
    assert response.status_code == 202
    wait_until(lambda: run_processes(run_id) == [], 10, "the run's processes were killed")
    run = run_state(client, run_id)
    assert run["status"] == "cancelled" and run["finishedAt"]
    time.sleep(1)  # the worker's own outcome, had it one, would land by now; the cancel stands
    assert run_state(client, run_id)["status"] == "cancelled"
    conflict = client.post(f"/api/runs/{run_id}/cancel")
    assert conflict.status_code == 409 and conflict.get_json()["error"]["details"]["status"] == "cancelled"


@pytest.fixture()
def pair(app: Flask, settings: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Two workers of their own, on a queue namespace of their own, and an app that queues there."""
    own = {**settings, "QUEUE_NAMESPACE": f"supertest-faults-{uuid.uuid4().hex[:8]}"}
    with running_workers(own, tmp_path) as workers:
        yield {"app": make_app(own), "workers": workers}


def worker_of(run: dict[str, Any], app: Flask) -> int:
    with app.app_context():
        return int(runs.get(run["id"]).worker.rsplit(":", 1)[1])


def children(pid: int) -> set[int]:
    return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()} \
        if Path(f"/proc/{pid}").exists() else set()


def start_and_find_its_worker(pair: dict[str, Any], title: str) -> tuple[FlaskClient, str, int]:
    """Start a 6 s run on the pair; once its browser is up, the client, its id and its worker's pid."""
    client = pair["app"].test_client()
    run_id = start_run(client, waits(6), title)["runId"]
    wait_until_running_with_browser(client, run_id)
    return client, run_id, worker_of(run_state(client, run_id), pair["app"])


def test_a_run_whose_worker_is_killed_is_taken_up_by_another(pair: dict[str, Any]) -> None:
    client, run_id, victim = start_and_find_its_worker(pair, "outlives its worker")
    os.kill(victim, signal.SIGKILL)
    # The killed worker's test dies with it; nothing of that attempt is left running.
    wait_until(lambda: run_processes(run_id, attempt=1) == [], 15, "the lost attempt's processes died")
    # With the default settings (heartbeat 5 s, lost after 30 s), well within 90 s.
    wait_until(lambda: run_state(client, run_id)["attempt"] == 2, 90, "the run was handed back")
    run = wait_for_run(client, run_id, timeout=90)
    assert run["status"] == "passed", run
    assert run["attempt"] == 2 and run["restartedBecause"] == "restarted after worker loss"
    # Any live worker may take it up: the pair's other one, or the session's worker (whose reaper
    # sees the same database and queues the run in its own namespace).
    assert worker_of(run, pair["app"]) != victim
    assert len(run["tests"]) == 1  # one final result, from the second attempt
    assert run_processes(run_id) == []


def test_a_worker_told_to_stop_hands_its_run_back(pair: dict[str, Any]) -> None:
    client, run_id, holder = start_and_find_its_worker(pair, "outlives a shutdown")
    [stopping] = [w for w in pair["workers"] if holder in children(w.process.pid) | {w.process.pid}]
    stopping.process.send_signal(signal.SIGTERM)  # as a deployment stops a worker
    stopping.process.wait(timeout=40)
    run = wait_for_run(client, run_id, timeout=90)
    assert run["status"] == "passed", run
    assert run["attempt"] == 2 and run["restartedBecause"] == "handed back when its worker shut down"
    assert "Shutting down" in stopping.log() or "Stopping worker" in stopping.log()
    assert run_processes(run_id) == []


def test_a_message_delivered_twice_runs_once(app: Flask, client: FlaskClient, worker) -> None:
    run_id = start_run(client, passing_script("delivered twice"))["runId"]
    with app.app_context():
        runs.enqueue(runs.get(run_id))  # the same message again, as a redelivery would bring it
    run = wait_for_run(client, run_id)
    assert run["status"] == "passed" and run["attempt"] == 1
    assert len(run["tests"]) == 1
    wait_until(lambda: f"run {run_id} is not pending; nothing to do" in worker.log(), 30,
               "the second delivery was turned away")


def test_a_run_lost_too_often_ends_error_with_the_reason(app: Flask, client: FlaskClient) -> None:
    """No worker needed: a run on its last attempt whose worker stopped showing it was alive."""
    with app.app_context():
        test = db.session.get(models.Test, save_test(client, "lost again and again", PASSING))
        run = runs.create_run(models.Run(kind="test", test_id=test.id, title=test.title),
                              [(test, test.title, test.script)])
        run_id = run.id
        runs.claim(run_id, worker="gone:1")
        last = app.config["MAX_RUN_ATTEMPTS"]
        db.session.execute(update(models.Run).where(models.Run.id == run_id).values(
            attempt=last, heartbeat_at=models.utcnow() - timedelta(seconds=app.config["WORKER_LOST_SECONDS"] + 1)))
        db.session.commit()
        assert runs.reap(app.config["WORKER_LOST_SECONDS"]) == []  # ended, not handed back
    run = run_state(client, run_id)
    assert run["status"] == "error" and run["attempt"] == last
    assert run["errorMessage"] == f"Given up after {last} attempts: restarted after worker loss."
