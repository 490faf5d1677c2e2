"""A job's run split into shards that several worker processes take: one run to the user (one
stream, one status, one merged report), faults kept to their shard, and the balancing by history."""
from __future__ import annotations

import os
import re
import signal
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, expect

from supertest.execution.sharded import Stopwatch
from supertest.services.shards import Planned, balance
from tests.conftest import make_app, running_workers, sign_in
from tests.helpers import (
    passing_script,
    read_sse,
    report_summary,
    run_processes,
    save_job,
    save_test,
    start_job,
    wait_for_run,
    wait_until,
    waits,
)


@pytest.mark.parametrize(("tests", "count", "plan"), [
    # Uneven durations: longest first onto the least-loaded shard; each shard keeps the job's order.
    ([("a", 10), ("b", 1), ("c", 9), ("d", 2), ("e", 5), ("f", 5)], 2,
     [Planned(["a", "b", "f"], 16), Planned(["c", "d", "e"], 16)]),
    ([("a", 10), ("b", 1), ("c", 1), ("d", 1), ("e", 1)], 2, [Planned(["a"], 10), Planned(["b", "c", "d", "e"], 4)]),
    # A test with no history weighs the median of those with one.
    ([("a", 8), ("b", None), ("c", 2), ("d", None)], 2, [Planned(["a", "c"], 10), Planned(["b", "d"], 10)]),
    # No history at all: as many tests on each shard, in order of the job.
    ([("a", None), ("b", None), ("c", None), ("d", None), ("e", None)], 2,
     [Planned(["a", "c", "e"], 0), Planned(["b", "d"], 0)]),
    # More shards than tests: one test each, no empty shard.
    ([("a", 3), ("b", 5)], 4, [Planned(["b"], 5), Planned(["a"], 3)]),
    ([("a", None)], 3, [Planned(["a"], 0)]),
])
def test_balance(tests: list[tuple[str, int | None]], count: int, plan: list[Planned]) -> None:
    assert balance(tests, count) == plan


def test_stopwatch_splits_playwright_by_its_events() -> None:
    now = [100.0]
    took = Stopwatch(lambda: now[0])
    now[0] = 100.5
    took.lap("ready")
    now[0] = 102.0
    took.seen("begin", {"total": 3})
    now[0] = 104.0  # 1.5 s of its own: 0.5 s to set it up
    took.seen("test", {"durationMs": 1500})
    now[0] = 107.25  # 3 s of its own
    took.seen("test", {"durationMs": 3000})
    now[0] = 108.5  # 1 s of its own
    took.seen("test", {"durationMs": 1000})
    now[0] = 108.75
    took.lap("playwright")
    now[0] = 109.0
    took.lap("store")
    assert str(took) == ("ready 0.50 s, playwright 8.25 s, store 0.25 s (of which its start 1.50 s, its first "
                         "test's set-up 0.50 s, around its other 2 tests 0.50 s, its end 0.25 s)")


def test_the_job_form_sets_shards_and_says_what_is_wrong(client: FlaskClient) -> None:
    test_id = save_test(client, "sharded in the form", passing_script("sharded in the form"))
    assert 'name="shards" value="1"' in client.get("/jobs/new").get_data(as_text=True)
    form = {"name": "sharded in the form", "retries": "0", "testIds": [test_id], "action": "save"}
    saved = client.post("/jobs/new", data={**form, "shards": " Auto "})
    assert saved.status_code == 303, saved.get_data(as_text=True)
    job_id = saved.headers["Location"].rsplit("/", 1)[1]
    assert client.get(f"/api/jobs/{job_id}").get_json()["shards"] == "auto"
    assert 'name="shards" value="auto"' in client.get(f"/jobs/{job_id}/edit").get_data(as_text=True)
    for wrong in ("0", "many", "1.5", "65", "²"):
        refused = client.post(f"/jobs/{job_id}/edit", data={**form, "shards": wrong})
        html = refused.get_data(as_text=True)
        # Refused like any field: the form again, what was typed kept, and why.
        assert refused.status_code == 422 and "Not saved:" in html and "shards must be a whole number" in html, wrong
        assert f'name="shards" value="{wrong}"' in html
    assert client.get(f"/api/jobs/{job_id}").get_json()["shards"] == "auto"
    for typed, stored in (("4", 4), ("", 1)):
        assert client.post(f"/jobs/{job_id}/edit", data={**form, "shards": typed}).status_code == 303
        assert client.get(f"/api/jobs/{job_id}").get_json()["shards"] == stored
    # A form without the field (a page from before it) keeps the job's.
    client.put(f"/api/jobs/{job_id}", json={"shards": 3})
    assert client.post(f"/jobs/{job_id}/edit", data=form).status_code == 303
    assert client.get(f"/api/jobs/{job_id}").get_json()["shards"] == 3


def test_the_job_form_takes_shards_in_the_browser(browser: Browser, web: str, client: FlaskClient) -> None:
    title = f"sharded in a browser {uuid.uuid4().hex[:6]}"
    save_test(client, title, passing_script(title))
    # Not the `page` fixture: Chromium logs the refused save's 422 as a console error, as it should.
    context = browser.new_context(base_url=web)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(page)
    page.goto("/jobs/new")
    page.get_by_label("Name").fill(title)
    page.get_by_label("Test to add").select_option(label=title)
    page.get_by_role("button", name="Add test").click()
    expect(page.locator(".chosen-tests")).to_contain_text(title)
    shards = page.locator("input[name=shards]")
    shards.fill("lots")
    page.get_by_role("button", name="Save job").click()
    expect(page.get_by_role("alert")).to_contain_text("shards must be a whole number")
    expect(shards).to_have_value("lots")
    shards.fill("auto")
    page.get_by_role("button", name="Save job").click()
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    assert client.get(f"/api/jobs/{job_id}").get_json()["shards"] == "auto"
    context.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def pair(app: Flask, settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two worker processes of two threads, on a queue namespace of their own, and an app that queues there."""
    own = {**settings, "QUEUE_NAMESPACE": f"supertest-shards-{uuid.uuid4().hex[:8]}", "WORKER_PROCESSES": "1",
           "WORKER_THREADS": "2", "MAX_CONCURRENT_TESTS": "1"}
    with running_workers(own, tmp_path_factory.mktemp("shards")) as workers:
        yield {"app": make_app(own), "workers": workers}


def sharded_job(client: FlaskClient, name: str, scripts: list[str], shards: int | str) -> tuple[str, list[str]]:
    ids = [save_test(client, f"{name} {n}", script) for n, script in enumerate(scripts, 1)]
    job_id = save_job(client, name, ids)
    response = client.put(f"/api/jobs/{job_id}", json={"shards": shards})
    assert response.status_code == 200 and response.get_json()["shards"] == shards, response.get_json()
    return job_id, ids


def test_shards_is_a_number_or_auto(client: FlaskClient) -> None:
    job_id = save_job(client, "sharding settings", [save_test(client, "for shards", passing_script("for shards"))])
    assert client.get(f"/api/jobs/{job_id}").get_json()["shards"] == 1
    assert client.put(f"/api/jobs/{job_id}", json={"shards": "auto"}).get_json()["shards"] == "auto"
    for wrong in (0, -1, "many", 1.5, True, 65):
        response = client.put(f"/api/jobs/{job_id}", json={"shards": wrong})
        assert response.status_code == 422 and response.get_json()["error"]["details"]["field"] == "shards", wrong


def test_eight_tests_over_four_shards_are_one_run(pair: dict[str, Any]) -> None:
    client = pair["app"].test_client()
    job_id, ids = sharded_job(client, "eight over four", [passing_script(f"eight {n}") for n in range(8)], 4)
    started = start_job(client, job_id)
    events = read_sse(client, started["statusUrl"])
    run = wait_for_run(client, started["runId"])
    assert run["status"] == "passed", run
    assert run["summary"]["total"] == 8 and run["summary"]["passed"] == 8
    # Each result belongs to its saved test; every test passed.
    assert sorted(result["testId"] for result in run["tests"]) == sorted(ids)
    assert {spec["status"] for spec in run["specs"]} == {"passed"}
    # The plan: four shards of two tests, each run once, by one of the two workers.
    shards = run["shards"]
    assert [shard["index"] for shard in shards] == [0, 1, 2, 3]
    assert sorted(len(shard["files"]) for shard in shards) == [2, 2, 2, 2]
    assert sorted(file for shard in shards for file in shard["files"]) == sorted(spec["file"] for spec in run["specs"])
    assert all(shard["status"] == "passed" and shard["attempt"] == 1 and shard["worker"] and shard["durationMs"] > 0
               for shard in shards), shards
    assert len({shard["worker"] for shard in shards}) == 2  # both workers took some
    # One stream: per-test progress from every shard, counted over the whole run, and one end.
    tests = [data for event, data in events if event == "test"]
    assert len(tests) == 8 and {data["shard"] for data in tests} == {0, 1, 2, 3}
    assert sorted(data["testId"] for data in tests) == sorted(ids)
    assert max(data["done"] for data in tests) == 8 and {data["total"] for data in tests} <= set(range(2, 9))
    statuses = [data["status"] for event, data in events if event == "status"]
    assert statuses[-1] == "passed" and statuses.count("passed") == 1
    # One merged report, holding all eight tests and their traces.
    report = report_summary(client, run["id"])
    assert report["stats"]["total"] == 8 and report["stats"]["expected"] == 8, report["stats"]
    traces = [attachment["path"] for file in report["files"] for test in file["tests"]
              for result in test.get("results", []) for attachment in result.get("attachments", [])
              if attachment["name"] == "trace"]
    assert len(traces) == 8, report["files"]
    base = f"/api/test-results/{run['id']}/report"
    assert client.get(f"{base}/{traces[0]}").status_code == 200
    assert client.get(f"{base}/trace/index.html").status_code == 200  # the trace viewer
    # Merged, the shards need no report of their own, and their blob reports are let go of.
    assert {shard["reportUrl"] for shard in shards} == {None}
    # (just after the run ends: never before, so a merge taken over from a lost worker has them)
    wait_until(lambda: blobs_left(pair["app"], run["id"], range(4)) == [], 15, "the blobs deleted once merged")
    # The run page shows the plan: each shard, its tests, expected and actual time, its worker.
    page = client.get(f"/runs/{run['id']}").get_data(as_text=True)
    assert "4 shards" in page and "Shard 4" in page and "expected" in page and shards[0]["worker"] in page
    assert all(file in page for shard in shards for file in shard["files"])
    junit = client.get(f"/api/runs/{run['id']}/junit.xml")
    assert junit.status_code == 200 and junit.get_data(as_text=True).count("<testcase") == 8


def blobs_left(app: Flask, run_id: str, indexes: Iterable[int]) -> list[int]:
    """The shards whose blob report is still stored, wherever it went."""
    reports = app.extensions["reports"]
    return [index for index in indexes for where in ("s3", "local")
            if reports.open(where, "job", f"{run_id}/blob-{index}/report/shard-{index}.zip", None) is not None]


def test_a_merge_that_fails_leaves_each_shards_own_report_and_says_so(pair: dict[str, Any], tmp_path: Path) -> None:
    app = pair["app"]
    client = app.test_client()
    job_id, ids = sharded_job(client, "merge fails", [passing_script("ends first"), waits(15)], 2)
    run_id = start_job(client, job_id)["runId"]

    def first_done() -> list[dict[str, Any]]:
        return [shard for shard in client.get(f"/api/runs/{run_id}").get_json().get("shards", [])
                if shard["status"] == "passed"]
    wait_until(lambda: len(first_done()) == 1, 60, "the quick shard ended")
    [spoilt] = first_done()
    index, other = spoilt["index"], 1 - spoilt["index"]
    # Its stored blob report spoilt, as a disk fault or a hostile test could, before the slow shard
    # ends and the merge reads it: `merge-reports` fails on it.
    (tmp_path / f"shard-{index}.zip").write_bytes(b"not a zip")
    with app.app_context():
        app.extensions["reports"].save(f"{run_id}/blob-{index}", "job", tmp_path)
    run = wait_for_run(client, run_id)
    # The tests passed, and the run says so; its report could not be made, and it says that too.
    assert run["status"] == "passed" and run["summary"]["passed"] == 2, run
    assert "could not be merged" in run["errorMessage"] and "central directory" in run["errorMessage"], run
    assert "node_modules" not in run["errorMessage"]  # node's stack, our paths, left out
    assert f"Shard {other + 1} has its own report instead" in run["errorMessage"], run["errorMessage"]
    assert f"Shard {index + 1} has no report to show" in run["errorMessage"]
    assert client.get(f"/api/test-results/{run_id}/report/index.html").status_code == 404
    # The other shard's own report, made from its blob, with its test and its trace viewer.
    shards = {shard["index"]: shard for shard in run["shards"]}
    assert shards[index]["reportUrl"] is None and shards[other]["reportUrl"]
    own = report_summary(client, run_id, shards[other]["reportUrl"])
    assert own["stats"]["total"] == 1 and own["stats"]["expected"] == 1, own["stats"]
    assert client.get(f"/api/test-results/{run_id}/shards/{other}/report/trace/index.html").status_code == 200
    # The run's page says what happened and links the shard's report; the blobs stay with the run.
    page = client.get(f"/runs/{run_id}").get_data(as_text=True)
    assert "could not be merged" in page and shards[other]["reportUrl"] in page
    assert blobs_left(app, run_id, range(2)) == [0, 1]


def test_auto_takes_as_many_shards_as_free_slots_never_more_than_tests(pair: dict[str, Any]) -> None:
    client = pair["app"].test_client()
    job_id, _ = sharded_job(client, "auto shards", [passing_script(f"auto {n}") for n in range(3)], "auto")
    run = wait_for_run(client, start_job(client, job_id)["runId"])
    # Four free slots (two workers of two threads; before the test that kills one), three tests: three shards.
    assert run["status"] == "passed" and len(run["shards"]) == 3, run


def test_cancel_stops_every_shard(pair: dict[str, Any]) -> None:
    client = pair["app"].test_client()
    job_id, _ = sharded_job(client, "cancelled shards", [waits(40), waits(40)], 2)
    run_id = start_job(client, job_id)["runId"]

    def both_running() -> bool:
        shards = client.get(f"/api/runs/{run_id}").get_json().get("shards", [])
        return len(shards) == 2 and all(shard["status"] == "running" for shard in shards) \
            and len(run_processes(run_id)) > 4
    wait_until(both_running, 60, "both shards running with their browsers")
    assert client.post(f"/api/runs/{run_id}/cancel").status_code == 202
    wait_until(lambda: run_processes(run_id) == [], 15, "every shard's processes were killed")
    run = client.get(f"/api/runs/{run_id}").get_json()
    assert run["status"] == "cancelled" and {shard["status"] for shard in run["shards"]} == {"cancelled"}


def test_a_shard_whose_worker_dies_runs_again_on_its_own(pair: dict[str, Any]) -> None:
    client = pair["app"].test_client()
    # Four shards on four run slots (two workers of two threads): two on each worker.
    job_id, ids = sharded_job(client, "outlives a worker", [waits(8)] * 4, 4)
    run_id = start_job(client, job_id)["runId"]

    def running() -> list[dict[str, Any]]:
        run = client.get(f"/api/runs/{run_id}").get_json()
        return [shard for shard in run.get("shards", []) if shard["status"] == "running"]
    wait_until(lambda: len(running()) == 4 and len(run_processes(run_id)) > 8, 60, "every shard's browser started")
    victim = running()[0]["worker"]
    lost = {shard["index"] for shard in running() if shard["worker"] == victim}
    assert len(lost) == 2
    os.kill(int(victim.rsplit(":", 1)[1]), signal.SIGKILL)
    run = wait_for_run(client, run_id, timeout=150)
    assert run["status"] == "passed", run
    # The lost worker's shards ran again elsewhere; the others kept their first attempt.
    assert {shard["index"]: shard["attempt"] for shard in run["shards"]} == \
        {index: 2 if index in lost else 1 for index in range(4)}
    assert victim not in {shard["worker"] for shard in run["shards"]}
    assert sorted(result["testId"] for result in run["tests"]) == sorted(ids)  # one result each
    assert report_summary(client, run_id)["stats"]["total"] == 4
    assert run_processes(run_id) == []


def test_ad_hoc_runs_take_shards_too(pair: dict[str, Any], tmp_path: Path) -> None:
    client = pair["app"].test_client()
    files = [{"path": f"t{n}.spec.ts", "content": passing_script(f"ad hoc {n}")} for n in range(3)]
    response = client.post("/api/runs", json={"files": files, "shards": 2})
    assert response.status_code == 202, response.get_data(as_text=True)
    run = wait_for_run(client, response.get_json()["runId"])
    assert run["status"] == "passed" and len(run["shards"]) == 2 and run["summary"]["total"] == 3, run
    assert client.post("/api/runs", json={"files": files, "shards": "two"}).status_code == 422



def sleeps(seconds: int) -> str:
    """A test that waits `seconds` without a browser: a duration, and little work for the machine."""
    return ("import { test } from '@playwright/test';\n\n"
            f"test('sleeps {seconds} s', async () => {{\n"
            f"  await new Promise((resolve) => setTimeout(resolve, {seconds * 1000}));\n"
            "});\n")


def test_ad_hoc_specs_are_balanced_by_the_history_of_the_same_paths(pair: dict[str, Any]) -> None:
    client = pair["app"].test_client()
    title = f"suite {uuid.uuid4().hex[:8]}"
    files = [{"path": f"e2e/{name}.spec.ts", "content": sleeps(seconds)}
             for name, seconds in (("a", 3), ("b", 1), ("c", 1), ("d", 1))]

    def plan() -> list[tuple[list[str], int]]:
        response = client.post("/api/runs", json={"files": files, "shards": 2, "title": title})
        assert response.status_code == 202, response.get_data(as_text=True)
        run = wait_for_run(client, response.get_json()["runId"])
        assert run["status"] == "passed" and run["summary"]["total"] == 4, run
        return [(shard["files"], shard["expectedMs"]) for shard in run["shards"]]
    # No history yet: split by count. Then by how long each path took: the long one alone.
    assert plan() == [(["e2e/a.spec.ts", "e2e/c.spec.ts"], 0), (["e2e/b.spec.ts", "e2e/d.spec.ts"], 0)]
    [(first, longest), (rest, others)] = plan()
    assert (first, rest) == (["e2e/a.spec.ts"], ["e2e/b.spec.ts", "e2e/c.spec.ts", "e2e/d.spec.ts"])
    assert 3000 <= longest < 5000 and 3000 <= others < 5000, (longest, others)


HANGS = """import { test } from '@playwright/test';

test('waits for ever', async ({ page }) => {
  test.setTimeout(0);
  await page.setContent('<p>waiting</p>');
  await new Promise(() => {});
});
"""


def test_a_shard_past_the_runs_time_limit_ends_the_run_timeout_with_what_there_is(pair: dict[str, Any]) -> None:
    client = pair["app"].test_client()
    job_id, ids = sharded_job(client, "shard past its limit", [passing_script("quick in time"), HANGS], 2)
    # A limit the quick shard meets even on a loaded machine (two suites side by side and more).
    assert client.put(f"/api/jobs/{job_id}", json={"timeoutMs": 30000}).status_code == 200
    run = wait_for_run(client, start_job(client, job_id)["runId"], timeout=120)
    assert run["status"] == "timeout", run
    assert "limit of 30 s" in run["errorMessage"] and run["durationMs"] < 30_000 + 20_000
    assert sorted(shard["status"] for shard in run["shards"]) == ["passed", "timeout"]
    assert {result["testId"]: result["status"] for result in run["tests"]} == {ids[0]: "passed", ids[1]: "interrupted"}
    # The results so far, merged: the quick test's and the stopped one's.
    assert report_summary(client, run["id"])["stats"]["total"] == 2
    assert run_processes(run["id"]) == []
