"""Saved tests grouped into jobs: one `playwright test` for the whole job, through the queue and
a real worker, with live per-test events, one combined report in the job bucket, and results
mapped back to the saved tests."""
from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import (
    FAILING,
    FLAKY,
    SYNTAX_ERROR,
    passing_script,
    read_sse,
    report_summary,
    save_job,
    save_test,
    start_job,
    wait_for_run,
)
from tests.s3server import S3Server


@pytest.fixture(scope="module")
def five(app: Flask, worker) -> dict[str, Any]:
    """A job of five saved tests (three pass, one fails, one is flaky with retries 1), run once
    while an SSE client watches it from the start."""
    client = app.test_client()
    ids = [save_test(client, f"passes {n}", passing_script(f"passes {n}")) for n in (1, 2, 3)]
    ids.append(save_test(client, "fails", FAILING))
    ids.append(save_test(client, "flaky", FLAKY))
    job_id = save_job(client, "five of a kind", ids, retries=1)
    started = start_job(client, job_id)
    events = read_sse(client, started["statusUrl"])
    return {"ids": ids, "job_id": job_id, "started": started, "events": events,
            "run": wait_for_run(client, started["runId"])}


def test_job_run_answers_with_where_to_watch(five) -> None:
    started, run_id = five["started"], five["started"]["runId"]
    assert started == {
        "runId": run_id, "jobId": five["job_id"], "status": "pending",
        "reportUrl": f"/api/test-results/{run_id}/report/index.html",
        "statusUrl": f"/api/job-status/sse/{run_id}", "url": f"/api/runs/{run_id}",
    }


def test_job_of_five_ends_failed_with_its_summary(five) -> None:
    run = five["run"]
    assert run["kind"] == "job" and run["jobId"] == five["job_id"]
    assert run["status"] == "failed", run
    assert run["summary"] == {"total": 5, "passed": 3, "failed": 1, "flaky": 1, "skipped": 0}


def test_each_result_is_linked_to_its_saved_test(five) -> None:
    by_test = {result["testId"]: result for result in five["run"]["tests"]}
    assert set(by_test) == set(five["ids"])
    statuses = [by_test[test_id]["status"] for test_id in five["ids"]]
    assert statuses == ["passed", "passed", "passed", "failed", "flaky"]
    assert by_test[five["ids"][4]]["retries"] == 1
    assert [spec["testId"] for spec in five["run"]["specs"]] == five["ids"]  # in the job's order
    assert [spec["status"] for spec in five["run"]["specs"]] == statuses


def test_a_live_test_event_arrives_for_each_test(five) -> None:
    tests = [data for name, data in five["events"] if name == "test"]
    final = [event for event in tests if event["status"] != "retrying"]
    assert sorted(event["testId"] for event in final) == sorted(five["ids"])
    assert sorted(event["done"] for event in final) == [1, 2, 3, 4, 5]
    assert all(event["total"] == 5 for event in tests)
    # With retries 1 every failing attempt is retried: the failing test and the flaky one.
    retried = sorted(event["testId"] for event in tests if event["status"] == "retrying")
    assert retried == sorted(five["ids"][3:])
    statuses = [data["status"] for name, data in five["events"] if name == "status"]
    assert statuses[-1] == "failed" and "running" in statuses


def test_one_combined_report_with_five_tests_in_the_job_bucket(client: FlaskClient, five, s3: S3Server,
                                                               settings: dict[str, str]) -> None:
    run_id = five["run"]["id"]
    assert f"{run_id}/report/index.html" in s3.keys(settings["S3_JOB_BUCKET_NAME"], f"{run_id}/")
    assert s3.keys(settings["S3_TEST_BUCKET_NAME"], f"{run_id}/") == []
    report = report_summary(client, run_id)
    assert report["stats"]["total"] == 5
    assert (report["stats"]["expected"], report["stats"]["unexpected"], report["stats"]["flaky"]) == (3, 1, 1)
    assert len(report["files"]) == 5


def test_running_a_job_sets_its_last_run_time(client: FlaskClient, five) -> None:
    job = client.get(f"/api/jobs/{five['job_id']}").get_json()
    assert job["lastRunAt"] is not None
    assert job["lastRunAt"][:19] == five["run"]["createdAt"][:19]
    listed = client.get(f"/api/runs?jobId={five['job_id']}").get_json()["items"]
    assert [item["id"] for item in listed] == [five["run"]["id"]]


def test_a_saved_test_run_twice_keeps_two_readable_reports(client: FlaskClient, worker) -> None:
    test_id = save_test(client, "twice", passing_script("twice"))
    first = client.post(f"/api/tests/{test_id}/run")
    second = client.post(f"/api/tests/{test_id}/run")
    assert first.status_code == second.status_code == 202
    runs = [wait_for_run(client, response.get_json()["runId"]) for response in (first, second)]
    assert runs[0]["id"] != runs[1]["id"]
    for run in runs:
        assert run["status"] == "passed" and run["testId"] == test_id and run["trigger"] == "api"
        assert client.get(run["reportUrl"]).status_code == 200
        assert report_summary(client, run["id"])["stats"]["total"] == 1
    listed = client.get(f"/api/runs?testId={test_id}").get_json()["items"]
    assert [item["id"] for item in listed] == [runs[1]["id"], runs[0]["id"]]


def test_two_runs_of_one_job_at_once_both_complete_apart(client: FlaskClient, worker, s3: S3Server,
                                                         settings: dict[str, str]) -> None:
    ids = [save_test(client, f"side by side {n}", passing_script(f"side by side {n}")) for n in (1, 2)]
    job_id = save_job(client, "twice at once", ids)
    started = [start_job(client, job_id) for _ in range(2)]
    runs = [wait_for_run(client, body["runId"]) for body in started]
    for run in runs:
        assert run["status"] == "passed", run
        assert run["summary"]["total"] == 2
        assert report_summary(client, run["id"])["stats"]["total"] == 2
        keys = s3.keys(settings["S3_JOB_BUCKET_NAME"], f"{run['id']}/")
        assert keys and all(key.startswith(f"{run['id']}/report/") for key in keys)


def test_equal_and_awkward_titles_each_get_their_own_file(client: FlaskClient, worker) -> None:
    titles = ["same", "same", 'a/b:c*?"<>|', "../../etc/passwd", "日本語のテスト", " "]
    ids = [save_test(client, title, passing_script(f"case {n}")) for n, title in enumerate(titles)]
    ids.append(save_test(client, "same", FLAKY))
    run = wait_for_run(client, start_job(client, save_job(client, "awkward", ids, retries=1))["runId"])
    # A test that passed on its retry is flaky, and the run still passed.
    assert run["status"] == "passed", run
    assert run["summary"] == {"total": 7, "passed": 6, "failed": 0, "flaky": 1, "skipped": 0}
    assert sorted(result["testId"] for result in run["tests"]) == sorted(ids)
    files = [spec["file"] for spec in run["specs"]]
    assert len(set(files)) == len(files)
    assert all("/" not in name and name.endswith(".spec.ts") for name in files)


def test_a_test_that_does_not_compile_stops_the_job_and_is_named(client: FlaskClient, worker) -> None:
    ids = [save_test(client, "compiles", passing_script("compiles")), save_test(client, "does not", SYNTAX_ERROR)]
    run = wait_for_run(client, start_job(client, save_job(client, "one broken", ids))["runId"])
    # Playwright runs no test when a file does not load; the run says which file and where.
    assert run["status"] == "error", run
    assert "SyntaxError" in run["errorMessage"] and "002-does-not.spec.ts:4:" in run["errorMessage"]
    assert [spec["status"] for spec in run["specs"]] == ["skipped", "error"]


def test_a_job_without_tests_cannot_be_run(app: Flask, client: FlaskClient) -> None:
    job_id = save_job(client, "empty", [])
    for response in (client.post("/api/jobs/run", json={"jobId": job_id}), client.post(f"/api/jobs/{job_id}/run")):
        assert response.status_code == 422
        assert response.get_json()["error"]["code"] == "empty_job"
        assert "no tests" in response.get_json()["error"]["message"]
    assert client.get(f"/api/runs?jobId={job_id}").get_json()["items"] == []
    assert client.get(f"/api/jobs/{job_id}").get_json()["lastRunAt"] is None


def test_a_test_deleted_while_its_job_is_queued_still_runs_in_it(client: FlaskClient, worker) -> None:
    keep = save_test(client, "stays", passing_script("stays"))
    gone = save_test(client, "goes", passing_script("goes"))
    job_id = save_job(client, "loses a test", [keep, gone])
    started = start_job(client, job_id)
    assert client.delete(f"/api/tests/{gone}").status_code == 200
    run = wait_for_run(client, started["runId"])
    # The run runs what the job held when it was started; the deleted test's result stays, unlinked.
    assert run["status"] == "passed", run
    assert sorted((r["testId"] or "") for r in run["tests"]) == sorted([keep, ""])
    assert [spec["title"] for spec in run["specs"]] == ["stays", "goes"]
    assert client.get(f"/api/jobs/{job_id}").get_json()["testIds"] == [keep]
