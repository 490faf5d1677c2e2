"""What a CI script uses, on the real path (test client → queue → worker → playwright → storage):
run a job by its name, wait for the run to end, read Playwright's JUnit report, run it again."""
from __future__ import annotations

import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from supertest.outcomes import CANCELLED
from supertest.services import runs
from tests.conftest import token_of_tester
from tests.helpers import PASSING, save_job, save_test
from tests.test_auth import csrf_of, new_user, signed_in

SUFFIX = uuid.uuid4().hex[:8]
VARIABLE = f"CI_TOKEN_{SUFFIX.upper()}"
SECRET = f"ci-secret-{uuid.uuid4().hex}"  # never in a script: only the variable holds it
JOB_NAME = f"ci smoke {SUFFIX}"

# Both print the secret and the failing one puts it in its failure message, where the JUnit
# report copies what tests print (system-out) and why they failed.
LOGS_IN = """import { test, expect } from '@playwright/test';

test('logs in', async () => {
  console.log('the token is ' + process.env.%s);
  expect(process.env.%s).toBeTruthy();
});
""" % (VARIABLE, VARIABLE)  # noqa: UP031 (braces are the script's own)

REJECTED = """import { test, expect } from '@playwright/test';

test('is rejected', async () => {
  console.log('sending ' + process.env.%s);
  expect(process.env.%s, 'the token ' + process.env.%s).toBe('wrong');
});
""" % (VARIABLE, VARIABLE, VARIABLE)  # noqa: UP031


def waited(client: FlaskClient, run_id: str, seconds: int = 180) -> dict[str, Any]:
    """The run, through ?wait=: one request that answers when the run has ended."""
    response = client.get(f"/api/runs/{run_id}?wait={seconds}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@pytest.fixture(scope="module")
def smoke(app: Flask, worker: object) -> Iterator[dict[str, Any]]:
    """A job of a passing and a failing test, with a secret variable, started by its name and
    waited for in one request."""
    client = app.test_client()
    assert client.post("/api/variables", json={"name": VARIABLE, "value": SECRET, "secret": True}).status_code == 201
    try:
        ids = [save_test(client, "logs in", LOGS_IN), save_test(client, "is rejected", REJECTED)]
        job_id = save_job(client, JOB_NAME, ids)
        started = client.post("/api/jobs/run", json={"jobName": JOB_NAME})
        assert started.status_code == 202, started.get_data(as_text=True)
        yield {"ids": ids, "job_id": job_id, "started": started.get_json(),
               "run": waited(client, started.get_json()["runId"])}
    finally:
        client.delete(f"/api/variables/{VARIABLE}")


@pytest.fixture()
def pending_forever(app: Flask) -> Iterator[str]:
    """A run that is never queued, so it stays pending until the test ends it."""
    with app.app_context():
        run_id = runs.create_playground_run(PASSING, "never queued", trigger="api").id
    yield run_id
    with app.app_context():
        runs.finish(run_id, CANCELLED, error_message="ended by the test")


def test_a_job_run_by_name_is_the_jobs_run_and_wait_returns_it_finished(smoke: dict[str, Any]) -> None:
    started, run = smoke["started"], smoke["run"]
    assert started["jobId"] == smoke["job_id"] and started["status"] == "pending"
    assert run["id"] == started["runId"] and run["jobId"] == smoke["job_id"] and run["trigger"] == "api"
    assert run["status"] == "failed", run
    assert run["summary"] == {"total": 2, "passed": 1, "failed": 1, "flaky": 0, "skipped": 0}
    assert [spec["status"] for spec in run["specs"]] == ["passed", "failed"]


def test_junit_report_matches_the_run_and_holds_no_secret(client: FlaskClient, smoke: dict[str, Any]) -> None:
    run = smoke["run"]
    response = client.get(f"/api/runs/{run['id']}/junit.xml")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/xml"
    assert "sandbox" in response.headers["Content-Security-Policy"]  # the test could have written it
    text = response.get_data(as_text=True)
    suites = ET.fromstring(text)
    assert suites.tag == "testsuites"
    assert int(suites.get("tests", -1)) == run["summary"]["total"] == 2
    assert int(suites.get("failures", -1)) == run["summary"]["failed"] == 1
    cases = {case.get("name"): case for case in suites.iter("testcase")}
    assert set(cases) == {"logs in", "is rejected"}
    assert cases["is rejected"].find("failure") is not None and cases["logs in"].find("failure") is None
    # What the tests printed and why one failed are there, the secret replaced.
    assert "the token is [secret]" in text and "sending [secret]" in text, text
    assert SECRET not in text and SECRET[:20] not in text


def test_rerun_runs_all_the_tests_again(client: FlaskClient, smoke: dict[str, Any]) -> None:
    run = smoke["run"]
    response = client.post(f"/api/runs/{run['id']}/rerun")
    assert response.status_code == 202, response.get_data(as_text=True)
    started = response.get_json()
    assert started["jobId"] == smoke["job_id"] and started["runId"] != run["id"]
    assert response.headers["Location"] == started["url"]
    again = waited(client, started["runId"])
    assert again["trigger"] == "api" and again["status"] == "failed"
    assert [spec["testId"] for spec in again["specs"]] == smoke["ids"]
    assert [spec["status"] for spec in again["specs"]] == ["passed", "failed"]


def test_rerun_failed_only_runs_the_failing_test_as_the_run_had_it(
        client: FlaskClient, smoke: dict[str, Any]) -> None:
    # Saved tests edited since are not what a rerun runs: it copies the run's own scripts.
    assert client.put(f"/api/tests/{smoke['ids'][1]}", json={"script": PASSING}).status_code == 200
    response = client.post(f"/api/runs/{smoke['run']['id']}/rerun", json={"failedOnly": True})
    assert response.status_code == 202, response.get_data(as_text=True)
    again = waited(client, response.get_json()["runId"])
    assert [spec["testId"] for spec in again["specs"]] == [smoke["ids"][1]]
    assert [test["title"] for test in again["tests"]] == ["is rejected"]
    assert again["status"] == "failed" and again["summary"]["total"] == 1


def test_rerun_failed_only_with_nothing_failed_is_refused(client: FlaskClient, smoke: dict[str, Any]) -> None:
    job_id = save_job(client, f"all pass {SUFFIX}", [smoke["ids"][0]])
    good = waited(client, client.post(f"/api/jobs/{job_id}/run").get_json()["runId"])
    assert good["status"] == "passed", good
    refused = client.post(f"/api/runs/{good['id']}/rerun", json={"failedOnly": True})
    assert refused.status_code == 422
    assert refused.get_json()["error"]["code"] == "nothing_to_rerun"


def test_the_run_page_has_rerun_buttons_that_post_with_csrf(app: Flask, smoke: dict[str, Any]) -> None:
    browser, _ = signed_in(app, new_user(app))
    page = browser.get(f"/runs/{smoke['run']['id']}").get_data(as_text=True)
    assert "Rerun failed" in page and f"/runs/{smoke['run']['id']}/rerun" in page
    assert browser.post(f"/runs/{smoke['run']['id']}/rerun", data={"failed": "1"}).status_code == 400  # no CSRF
    moved = browser.post(f"/runs/{smoke['run']['id']}/rerun", data={"failed": "1", "csrf_token": csrf_of(page)})
    assert moved.status_code == 303
    new_id = moved.headers["Location"].rsplit("/", 1)[1]
    again = waited(app.test_client(), new_id)
    assert again["trigger"] == "ui" and [spec["title"] for spec in again["specs"]] == ["is rejected"]


def test_a_short_wait_on_a_pending_run_returns_it_still_pending(client: FlaskClient, pending_forever: str) -> None:
    began = time.monotonic()
    run = waited(client, pending_forever, seconds=1)
    took = time.monotonic() - began
    assert run["status"] == "pending"
    assert 1 <= took < 5, took


def test_a_wait_wakes_when_the_run_ends(app: Flask, client: FlaskClient, pending_forever: str) -> None:
    def end_it() -> None:
        time.sleep(1.5)
        with app.app_context():
            runs.cancel(pending_forever)

    ender = threading.Thread(target=end_it)
    ender.start()
    began = time.monotonic()
    run = waited(client, pending_forever, seconds=60)
    ender.join()
    assert run["status"] == "cancelled"
    assert time.monotonic() - began < 8  # woken by the status event, not at the end of the wait


def test_waits_in_the_gevent_web_process_wake_on_the_end(app: Flask, web: str, pending_forever: str) -> None:
    """The deployed server (gunicorn, gevent): several waits at once, each woken by the run's end."""
    answers: list[tuple[int, str, float]] = []

    def wait() -> None:
        began = time.monotonic()
        response = requests.get(f"{web}/api/runs/{pending_forever}", params={"wait": "60"}, timeout=90,
                                headers={"Authorization": f"Bearer {token_of_tester(app)}"})
        answers.append((response.status_code, response.json()["status"], time.monotonic() - began))

    waiters = [threading.Thread(target=wait) for _ in range(5)]
    for waiter in waiters:
        waiter.start()
    time.sleep(2)
    with app.app_context():
        runs.cancel(pending_forever)
    for waiter in waiters:
        waiter.join()
    assert [(status, run_status) for status, run_status, _ in answers] == [(200, "cancelled")] * 5
    assert all(1.5 <= took < 10 for _, _, took in answers), answers


def test_a_running_run_is_not_rerun_and_has_no_junit_yet(
        app: Flask, client: FlaskClient, pending_forever: str) -> None:
    with app.app_context():
        assert runs.claim(pending_forever, "a worker of the test's imagination") is not None
    refused = client.post(f"/api/runs/{pending_forever}/rerun")
    assert refused.status_code == 409, refused.get_data(as_text=True)
    assert refused.get_json()["error"]["code"] == "busy"
    assert refused.get_json()["error"]["details"]["status"] == "running"
    junit = client.get(f"/api/runs/{pending_forever}/junit.xml")
    assert junit.status_code == 404 and junit.get_json()["error"]["code"] == "no_report"


def test_two_jobs_of_one_name_are_a_conflict_naming_them(client: FlaskClient, smoke: dict[str, Any]) -> None:
    name = f"twice {SUFFIX}"
    ids = sorted(save_job(client, name, [smoke["ids"][0]]) for _ in range(2))
    response = client.post("/api/jobs/run", json={"jobName": name})
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "conflict" and sorted(error["details"]["jobIds"]) == ids and name in error["message"]


@pytest.mark.parametrize("method, path, body, status, code, field", [
    ("post", "/api/jobs/run", {"jobName": f"no such job {SUFFIX}"}, 404, "not_found", "jobName"),
    ("post", "/api/jobs/run", {"jobName": 5}, 422, "validation_error", "jobName"),
    ("post", "/api/jobs/run", {"jobName": "x", "jobId": str(uuid.uuid4())}, 422, "validation_error", "jobName"),
    ("get", "/api/runs/{run}?wait=-1", None, 400, "invalid_parameter", "wait"),
    ("get", "/api/runs/{run}?wait=abc", None, 400, "invalid_parameter", "wait"),
    ("get", "/api/runs/{run}?wait=601", None, 400, "invalid_parameter", "wait"),
    ("get", "/api/runs/{run}?wait=nan", None, 400, "invalid_parameter", "wait"),
    ("post", "/api/runs/{run}/rerun", {"failedOnly": "yes"}, 422, "validation_error", "failedOnly"),
    ("post", "/api/runs/{run}/rerun", {"failedOnly": 1}, 422, "validation_error", "failedOnly"),
    ("get", f"/api/runs/{uuid.uuid4()}/junit.xml", None, 404, "not_found", None),
    ("post", f"/api/runs/{uuid.uuid4()}/rerun", None, 404, "not_found", None),
])
def test_bad_inputs_are_refused(client: FlaskClient, pending_forever: str, method: str, path: str,
                                body: dict[str, Any] | None, status: int, code: str, field: str | None) -> None:
    began = time.monotonic()
    response = getattr(client, method)(path.format(run=pending_forever), json=body)
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code
    if field:
        assert error["details"]["field"] == field
    if field == "jobName" and status == 404:
        assert f"no such job {SUFFIX}" in error["message"]  # names what it did not find
    assert time.monotonic() - began < 3  # refused at once, not after a wait
