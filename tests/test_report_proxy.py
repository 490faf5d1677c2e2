"""The report proxy: status while running, 404 without a report, and no way out of the report."""
from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from supertest.outcomes import ERROR
from supertest.services import runs
from tests.helpers import PASSING, wait_for_run

TRAVERSALS = [
    "report/../../etc/passwd",
    "report/../other/report/index.html",
    "../report/index.html",
    "report/..%2F..%2Fetc%2Fpasswd",
    "%2e%2e/%2e%2e/etc/passwd",
    "report/%2e%2e/%2e%2e/etc/passwd",
    "report\\..\\..\\etc\\passwd",
    "report/./index.html",
    "report/data/%00.png",
    "index.html",
    "results.json",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_paths_outside_the_report_are_refused(client: FlaskClient, started, path: str) -> None:
    run_id = started["passing"]["runId"]
    wait_for_run(client, run_id)
    response = client.get(f"/api/test-results/{run_id}/{path}", follow_redirects=True)
    assert response.status_code == 400, response.status_code
    assert response.get_json()["error"]["code"] == "invalid_path"


def test_absolute_path_is_refused(client: FlaskClient, started) -> None:
    run_id = started["passing"]["runId"]
    wait_for_run(client, run_id)
    response = client.get(f"/api/test-results/{run_id}//etc/passwd", follow_redirects=True)
    assert response.status_code in (400, 404)
    assert b"root:" not in response.data


def test_missing_file_in_a_report_is_404(client: FlaskClient, started) -> None:
    run_id = started["passing"]["runId"]
    wait_for_run(client, run_id)
    response = client.get(f"/api/test-results/{run_id}/report/data/no-such-file.png")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_run_still_going_answers_202(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        run = runs.create_playground_run(PASSING, "not queued", trigger="api")  # never enqueued: stays pending
        run_id = run.id
    response = client.get(f"/api/test-results/{run_id}/report/index.html")
    assert response.status_code == 202
    assert response.get_json() == {"status": "pending"}


def test_finished_run_without_report_is_404_with_its_error(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        run_id = runs.create_playground_run(PASSING, "no report", trigger="api").id
        runs.finish(run_id, ERROR, error_message="The browser would not start on the worker.")
    response = client.get(f"/api/test-results/{run_id}/report/index.html")
    assert response.status_code == 404
    assert response.get_json()["error"] == {"code": "no_report",
                                            "message": "The browser would not start on the worker."}
