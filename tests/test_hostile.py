"""Hostile or broken scripts end with a clear status and hurt nothing else: a detached process, an
endless loop, a script that exits the test process, 50 MB printed at once, a 30 MB attachment."""
from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import (
    passing_script,
    run_processes,
    save_job,
    save_test,
    start_job,
    start_run,
    wait_for_run,
    wait_until,
)
from tests.s3server import S3Server

DETACHED = """import { test } from '@playwright/test';
import { spawn } from 'child_process';

test('leaves a process behind', async () => {
  spawn('sleep', ['300'], { detached: true, stdio: 'ignore' }).unref();
});
"""

SPINS = """import { test } from '@playwright/test';

test('spins for ever', () => {
  while (true) {}
});
"""

EXITS = """import { test } from '@playwright/test';

test('exits the process', async () => {
  process.exit(3);
});
"""

SHOUTS = """import { test } from '@playwright/test';

test('prints 50 MB', async () => {
  process.stdout.write('x'.repeat(50 * 1024 * 1024));
});
"""

ATTACHES = """import { test } from '@playwright/test';

test('attaches 30 MB', async ({}, testInfo) => {
  const body = Buffer.alloc(30 * 1024 * 1024, 7);
  await testInfo.attach('big.bin', { body, contentType: 'application/octet-stream' });
});
"""
BIG = 30 * 1024 * 1024


@pytest.fixture(scope="module")
def hostile(app: Flask, worker) -> dict[str, dict[str, Any]]:
    """Each script run once, queued together so the worker takes them side by side."""
    client = app.test_client()
    spinner = save_job(client, "spins", [save_test(client, "spins", SPINS)])
    client.put(f"/api/jobs/{spinner}", json={"timeoutMs": 5000})
    started = {
        "detached": start_run(client, DETACHED)["runId"],
        "spins": start_job(client, spinner)["runId"],
        "exits": start_run(client, EXITS)["runId"],
        "shouts": start_run(client, SHOUTS)["runId"],
        "attaches": start_run(client, ATTACHES)["runId"],
        "after": start_run(client, passing_script("still fine afterwards"))["runId"],
    }
    return {name: wait_for_run(client, run_id, timeout=180) for name, run_id in started.items()}


def test_a_detached_process_is_killed_when_the_run_ends(hostile) -> None:
    run = hostile["detached"]
    assert run["status"] == "passed", run
    wait_until(lambda: run_processes(run["id"]) == [], 5, "the detached sleep was killed")


def test_an_endless_loop_meets_the_time_limit(hostile) -> None:
    run = hostile["spins"]
    assert run["status"] == "timeout", run
    assert run["durationMs"] < 5000 + 15_000, run["durationMs"]
    assert run_processes(run["id"]) == []


def test_a_script_that_exits_the_process_fails_clearly(hostile) -> None:
    run = hostile["exits"]
    assert run["status"] in ("failed", "error"), run
    message = (run["errorMessage"] or "") + " ".join(test["error"] or "" for test in run["tests"])
    assert "exit" in message.lower(), run
    assert run_processes(run["id"]) == []


def test_fifty_megabytes_of_output_keep_the_stored_text_small(hostile) -> None:
    run = hostile["shouts"]
    assert run["status"] == "passed", run
    assert len(str(run)) < 100_000  # the run's record holds none of it


def test_a_thirty_megabyte_attachment_is_streamed_with_range(client: FlaskClient, hostile, s3: S3Server,
                                                            settings: dict[str, str]) -> None:
    run = hostile["attaches"]
    assert run["status"] == "passed", run
    [key] = [k for k in s3.keys(settings["S3_TEST_BUCKET_NAME"], f"{run['id']}/report/data/") if k.endswith(".bin")]
    url = f"/api/test-results/{key}"
    part = client.get(url, headers={"Range": f"bytes={BIG - 10}-"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes {BIG - 10}-{BIG - 1}/{BIG}"
    assert part.data == b"\x07" * 10
    whole = client.get(url, buffered=False)
    assert whole.status_code == 200 and int(whole.headers["Content-Length"]) == BIG
    assert sum(len(chunk) for chunk in whole.response) == BIG
    whole.close()


def test_the_worker_carries_on_after_all_of_them(hostile) -> None:
    assert hostile["after"]["status"] == "passed", hostile["after"]
