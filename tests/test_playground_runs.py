"""POST /api/test through the queue, a real worker and Playwright in Chromium, to results,
S3 and SSE."""
from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.helpers import read_sse, wait_for_run
from tests.s3server import S3Server


def test_start_answers_with_where_to_watch(started: dict[str, dict[str, Any]]) -> None:
    body = started["passing"]
    run_id = body["runId"]
    assert body == {
        "testId": run_id, "runId": run_id, "status": "pending",
        "reportUrl": f"/api/test-results/{run_id}/report/index.html",
        "statusUrl": f"/api/test-status/sse/{run_id}",
        "url": f"/api/runs/{run_id}",
    }


def test_live_status_goes_pending_running_test_passed(client: FlaskClient, started) -> None:
    events = read_sse(client, started["passing"]["statusUrl"])
    statuses = [data["status"] for name, data in events if name == "status"]
    assert statuses[-1] == "passed"
    assert set(statuses) <= {"pending", "running", "passed"}
    tests = [data for name, data in events if name == "test"]
    # Reconnecting clients get the current state first; a stream opened before the end sees the test event.
    if statuses[0] != "passed":
        assert [t["title"] for t in tests] == ["greets the visitor"]
        assert tests[0]["status"] == "passed"


def test_passing_script_ends_passed_with_one_result(client: FlaskClient, started) -> None:
    run = wait_for_run(client, started["passing"]["runId"])
    assert run["status"] == "passed", run
    assert run["errorMessage"] is None
    assert run["summary"] == {"total": 1, "passed": 1, "failed": 0, "flaky": 0, "skipped": 0}
    [result] = run["tests"]
    assert result["title"] == "greets the visitor"
    assert result["status"] == "passed"
    assert result["file"].endswith(".spec.ts")
    assert run["durationMs"] > 0 and run["startedAt"] and run["finishedAt"]


def test_report_trace_and_video_come_through_the_proxy(client: FlaskClient, started, s3: S3Server,
                                                       settings: dict[str, str]) -> None:
    run_id = started["passing"]["runId"]
    wait_for_run(client, run_id)
    index = client.get(f"/api/test-results/{run_id}/report/index.html")
    assert index.status_code == 200
    assert index.mimetype == "text/html"
    assert "private" in index.headers["Cache-Control"]
    assert b"<html" in index.data.lower()

    keys = {obj["Key"] for obj in s3.client().list_objects_v2(
        Bucket=settings["S3_TEST_BUCKET_NAME"], Prefix=f"{run_id}/report/")["Contents"]}
    assert f"{run_id}/report/index.html" in keys
    traces = [k for k in keys if k.endswith(".zip")]
    videos = [k for k in keys if k.endswith(".webm")]
    assert traces and videos, keys

    trace = client.get(f"/api/test-results/{run_id}/{traces[0].split('/', 1)[1]}")
    assert trace.status_code == 200 and trace.mimetype == "application/zip"
    assert trace.data[:2] == b"PK"

    video_url = f"/api/test-results/{run_id}/{videos[0].split('/', 1)[1]}"
    whole = client.get(video_url)
    assert whole.status_code == 200 and whole.mimetype == "video/webm"
    part = client.get(video_url, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 0-99/{len(whole.data)}"
    assert part.data == whole.data[:100]


def test_failing_assertion_ends_failed_with_its_message(client: FlaskClient, started) -> None:
    run = wait_for_run(client, started["failing"]["runId"])
    assert run["status"] == "failed", run
    assert run["summary"]["failed"] == 1
    [result] = run["tests"]
    assert result["status"] == "failed"
    assert "toHaveText" in result["error"]
    assert "Goodbye, tester" in result["error"]
    assert "\x1b[" not in result["error"]  # colour codes are stripped
    assert client.get(run["reportUrl"]).status_code == 200  # a failed run keeps its report


def test_syntax_error_ends_error_with_playwrights_message(client: FlaskClient, started) -> None:
    run = wait_for_run(client, started["broken"]["runId"])
    assert run["status"] == "error", run
    assert run["tests"] == []
    message = run["errorMessage"]
    assert "SyntaxError" in message
    assert ":4:" in message  # file:line:column of the broken line
    assert "/runs/" not in message  # the worker's paths are not shown


def test_late_sse_client_still_gets_the_terminal_status(client: FlaskClient, started) -> None:
    run_id = started["failing"]["runId"]
    wait_for_run(client, run_id)
    for url in (f"/api/test-status/sse/{run_id}", f"/api/runs/{run_id}/events"):
        events = read_sse(client, url, timeout=10)
        assert events[0][0] == "status"
        assert events[0][1]["status"] == "failed"
        assert len(events) == 1  # and the stream closes


def test_runs_are_listed_newest_first_a_page_at_a_time(client: FlaskClient, started) -> None:
    ids = [started[name]["runId"] for name in ("passing", "failing", "broken")]
    listed, cursor, pages = [], "", 0
    while cursor is not None:
        page = client.get(f"/api/runs?limit=2&cursor={cursor}").get_json()
        assert len(page["items"]) <= 2
        listed += [item["id"] for item in page["items"]]
        cursor, pages = page["nextCursor"], pages + 1
    assert pages >= 2
    assert len(set(listed)) == len(listed)
    assert [run_id for run_id in listed if run_id in ids] == ids[::-1]
    only_errors = client.get("/api/runs?status=error").get_json()["items"]
    assert ids[2] in [item["id"] for item in only_errors]
    assert all(item["status"] == "error" for item in only_errors)


def test_the_test_process_sees_none_of_the_apps_settings(client: FlaskClient, started, settings) -> None:
    # The worker that ran it has every one of these set (see the `settings` fixture).
    assert {"DATABASE_URL", "REDIS_URL", "AWS_SECRET_ACCESS_KEY", "SECRET_KEY"} <= set(settings)
    run = wait_for_run(client, started["env_probe"]["runId"])
    assert run["status"] == "passed", run["tests"]
