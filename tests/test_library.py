"""Saved tests and jobs as resources: bad input saves nothing, deletion leaves nothing behind,
and a test's history counts its runs from everywhere."""
from __future__ import annotations

import html
import re
import uuid
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select

from supertest import models
from supertest.extensions import db
from supertest.outcomes import CANCELLED, FAILED, PASSED
from supertest.services import history, runs
from supertest.views import test_pages
from tests.helpers import FAILING, PASSING, passing_script, save_job, save_test, start_job, wait_for_run
from tests.s3server import S3Server

UNKNOWN = str(uuid.uuid4())


def counts(app: Flask) -> dict[str, int]:
    with app.app_context():
        return {model.__name__: db.session.scalar(select(func.count()).select_from(model))
                for model in (models.Test, models.Job, models.JobTest, models.Run, models.RunTest)}


@pytest.fixture(scope="module")
def saved(app: Flask) -> str:
    return save_test(app.test_client(), "a saved test", PASSING)


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), [
    ("post", "/api/tests", {}, 422, "script"),
    ("post", "/api/tests", {"script": 5}, 422, "script"),
    ("post", "/api/tests", {"script": "x", "title": "t" * 201}, 422, "title"),
    ("post", "/api/tests", {"script": "x", "description": ["d"]}, 422, "description"),
    ("put", "/api/tests/{test}", {"script": "   "}, 422, "script"),
    ("put", "/api/tests/{test}", {"title": 7}, 422, "title"),
    ("put", f"/api/tests/{UNKNOWN}", {"title": "x"}, 404, None),
    ("put", "/api/tests/not-an-id", {"title": "x"}, 404, None),
    ("post", "/api/jobs", {}, 422, "name"),
    ("post", "/api/jobs", {"name": "  "}, 422, "name"),
    ("post", "/api/jobs", {"name": "j", "testIds": "{test}"}, 422, "testIds"),
    ("post", "/api/jobs", {"name": "j", "testIds": [UNKNOWN]}, 422, "testIds"),
    ("post", "/api/jobs", {"name": "j", "testIds": ["{test}", UNKNOWN]}, 422, "testIds"),
    ("post", "/api/jobs", {"name": "j", "testIds": ["{test}", "{test}"]}, 422, "testIds"),
    ("post", "/api/jobs", {"name": "j", "testIds": ["nope"]}, 422, "testIds"),
    ("post", "/api/jobs", {"name": "j", "testIds": [1]}, 422, "testIds"),
    ("post", "/api/jobs", {"name": "j", "retries": "1"}, 422, "retries"),
    ("post", "/api/jobs", {"name": "j", "retries": True}, 422, "retries"),
    ("post", "/api/jobs", {"name": "j", "retries": -1}, 422, "retries"),
    ("post", "/api/jobs", {"name": "j", "retentionDays": 0}, 422, "retentionDays"),
    ("post", "/api/jobs", {"name": "j", "retentionDays": "30"}, 422, "retentionDays"),
    ("post", "/api/jobs", {"name": "j", "retentionDays": True}, 422, "retentionDays"),
    ("post", "/api/jobs", {"name": "j", "retentionDays": 36501}, 422, "retentionDays"),
    ("put", "/api/jobs/{job}", {"name": "renamed", "testIds": [UNKNOWN]}, 422, "testIds"),
    ("put", f"/api/jobs/{UNKNOWN}", {"name": "x"}, 404, None),
    ("post", "/api/jobs/run", {}, 422, "jobId"),
    ("post", "/api/jobs/run", {"jobId": 5}, 422, "jobId"),
    ("post", "/api/jobs/run", {"jobId": UNKNOWN}, 404, "jobId"),
    ("post", f"/api/jobs/{UNKNOWN}/run", None, 404, None),
    ("post", f"/api/tests/{UNKNOWN}/run", None, 404, None),
    ("delete", f"/api/tests/{UNKNOWN}", None, 404, None),
    ("delete", f"/api/jobs/{UNKNOWN}", None, 404, None),
])
def test_bad_requests_are_refused_and_save_nothing(app: Flask, client: FlaskClient, saved: str, method: str,
                                                   path: str, body: Any, status: int, field: str | None) -> None:
    job = save_job(client, "unchanged", [saved])

    def fill(value: Any) -> Any:  # put the ids of this test's test and job in place of {test} and {job}
        if isinstance(value, dict):
            return {key: fill(item) for key, item in value.items()}
        if isinstance(value, list):
            return [fill(item) for item in value]
        return value.format(test=saved, job=job) if isinstance(value, str) else value

    body = fill(body)
    before = counts(app)
    response = getattr(client, method)(fill(path), json=body)
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["message"]
    if field:
        assert error["details"]["field"] == field
    assert counts(app) == before
    after = client.get(f"/api/jobs/{job}").get_json()
    assert (after["name"], after["testIds"]) == ("unchanged", [saved])


def test_unknown_and_repeated_ids_are_named_in_the_error(client: FlaskClient, saved: str) -> None:
    unknown = client.post("/api/jobs", json={"name": "j", "testIds": [saved, UNKNOWN]}).get_json()["error"]
    assert unknown["details"]["unknown"] == [UNKNOWN]
    repeated = client.post("/api/jobs", json={"name": "j", "testIds": [saved, saved]}).get_json()["error"]
    assert repeated["details"]["repeated"] == [saved]


def test_a_test_is_created_read_edited_and_listed(client: FlaskClient) -> None:
    test_id = save_test(client, "to edit", PASSING, "first words")
    edited = client.put(f"/api/tests/{test_id}", json={"description": "second words"})
    assert edited.status_code == 200
    body = client.get(f"/api/tests/{test_id}").get_json()
    assert (body["title"], body["script"], body["description"]) == ("to edit", PASSING, "second words")
    assert body["stats"] == {"lastRuns": 0, "passed": 0, "failed": 0, "flaky": 0}
    assert test_id in [item["id"] for item in client.get("/api/tests").get_json()["items"]]


def test_a_job_keeps_its_tests_in_the_order_given(client: FlaskClient) -> None:
    first, second, third = (save_test(client, f"order {n}", PASSING) for n in (1, 2, 3))
    job_id = save_job(client, "ordered", [third, first, second])
    assert client.get(f"/api/jobs/{job_id}").get_json()["testIds"] == [third, first, second]
    reordered = client.put(f"/api/jobs/{job_id}", json={"testIds": [second, third]}).get_json()
    assert reordered["testIds"] == [second, third] and reordered["name"] == "ordered"


def test_playground_scripts_are_not_listed_as_saved_tests(client: FlaskClient, started) -> None:
    listed = {item["id"] for item in client.get("/api/tests").get_json()["items"]}
    assert started["passing"]["testId"] not in listed
    assert client.get(f"/api/tests/{started['passing']['testId']}").status_code == 404


def test_history_counts_a_tests_runs_from_everywhere(client: FlaskClient, worker) -> None:
    test_id = save_test(client, "counted everywhere", FAILING)
    direct = client.post(f"/api/tests/{test_id}/run").get_json()["runId"]
    in_job = start_job(client, save_job(client, "counts too", [test_id]))["runId"]
    # Edited in the playground (and now passing), without saving: still this test's history.
    played = client.post("/playground/runs", data={"script": PASSING, "title": "edited", "testId": test_id})
    assert played.status_code == 303
    run_ids = [direct, in_job, played.headers["Location"].rsplit("/", 1)[1]]
    assert [wait_for_run(client, run_id)["status"] for run_id in run_ids] == ["failed", "failed", "passed"]

    assert client.get(f"/api/tests/{test_id}").get_json()["stats"] == \
        {"lastRuns": 3, "passed": 1, "failed": 2, "flaky": 0}
    listed = client.get(f"/api/runs?testId={test_id}").get_json()["items"]
    assert [(item["id"], item["kind"], item["trigger"]) for item in listed] == \
        [(run_ids[2], "test", "playground"), (run_ids[1], "job", "api"), (run_ids[0], "test", "api")]
    page = client.get(f"/tests/{test_id}").get_data(as_text=True)
    assert page.count('class="tick ') == 3
    assert page.index('class="tick failed"') < page.index('class="tick passed"')  # oldest first


def test_deleting_a_test_takes_its_runs_and_reports_and_keeps_its_job_results(
        app: Flask, client: FlaskClient, worker, s3: S3Server, settings: dict[str, str]) -> None:
    test_id = save_test(client, "to delete", passing_script("to delete"))
    other = save_test(client, "stays", passing_script("stays"))
    job_id = save_job(client, "outlives it", [test_id, other])
    own = wait_for_run(client, client.post(f"/api/tests/{test_id}/run").get_json()["runId"])
    job_run = wait_for_run(client, start_job(client, job_id)["runId"])
    assert own["status"] == job_run["status"] == PASSED
    assert s3.keys(settings["S3_TEST_BUCKET_NAME"], f"{own['id']}/")

    response = client.delete(f"/api/tests/{test_id}")
    assert response.status_code == 200
    assert response.get_json() == {"deleted": test_id, "deletedRuns": 1}
    assert client.get(f"/api/tests/{test_id}").status_code == 404
    assert client.get(f"/api/runs/{own['id']}").status_code == 404
    assert s3.keys(settings["S3_TEST_BUCKET_NAME"], f"{own['id']}/") == []
    assert own["id"] not in client.get("/runs").get_data(as_text=True)

    kept = client.get(f"/api/runs/{job_run['id']}").get_json()
    assert sorted((result["testId"] or "") for result in kept["tests"]) == sorted([other, ""])
    assert client.get(kept["reportUrl"]).status_code == 200
    assert client.get(f"/api/jobs/{job_id}").get_json()["testIds"] == [other]


def test_deleting_a_job_takes_its_runs_and_reports_and_keeps_its_tests(
        client: FlaskClient, worker, s3: S3Server, settings: dict[str, str]) -> None:
    test_id = save_test(client, "outlives its job", passing_script("outlives its job"))
    job_id = save_job(client, "to delete", [test_id])
    run = wait_for_run(client, start_job(client, job_id)["runId"])
    assert s3.keys(settings["S3_JOB_BUCKET_NAME"], f"{run['id']}/")

    assert client.delete(f"/api/jobs/{job_id}").get_json() == {"deleted": job_id, "deletedRuns": 1}
    assert client.get(f"/api/jobs/{job_id}").status_code == 404
    assert client.get(f"/api/runs/{run['id']}").status_code == 404
    assert s3.keys(settings["S3_JOB_BUCKET_NAME"], f"{run['id']}/") == []
    assert client.get(f"/api/tests/{test_id}").status_code == 200


def test_a_test_with_a_run_in_progress_is_not_deleted(app: Flask, client: FlaskClient) -> None:
    test_id = save_test(client, "busy", PASSING)
    with app.app_context():  # a run that stays pending: it is never queued
        test = db.session.get(models.Test, test_id)
        run_id = runs.create_run(models.Run(kind="test", test_id=test_id, title="busy"),
                                 [(test, test.title, test.script)]).id
    response = client.delete(f"/api/tests/{test_id}")
    assert response.status_code == 409
    assert "still queued or running" in response.get_json()["error"]["message"]
    assert client.get(f"/api/tests/{test_id}").status_code == 200
    assert client.get(f"/api/runs/{run_id}").status_code == 200
    with app.app_context():
        runs.finish(run_id, CANCELLED, error_message="ended by the test")
    assert client.delete(f"/api/tests/{test_id}").status_code == 200


def test_the_playground_saves_a_new_test_and_saves_over_it(client: FlaskClient) -> None:
    created = client.post("/tests", data={"title": "from the editor", "script": PASSING, "description": "d"})
    assert created.status_code == 303
    test_id = created.headers["Location"].rsplit("/", 1)[1]
    assert client.get(f"/api/tests/{test_id}").get_json()["title"] == "from the editor"

    # From htmx the answer is a redirect for htmx to follow, not a page swapped into the editor.
    edited = client.post(f"/tests/{test_id}", data={"title": "renamed", "script": FAILING},
                         headers={"HX-Request": "true"})
    assert edited.status_code == 204 and edited.headers["HX-Redirect"] == f"/tests/{test_id}"
    body = client.get(f"/api/tests/{test_id}").get_json()
    assert (body["title"], body["script"], body["description"]) == ("renamed", FAILING, "d")

    refused = client.post(f"/tests/{test_id}", data={"title": "blank", "script": "  "})
    assert refused.status_code == 422 and "script must not be empty" in refused.get_data(as_text=True)
    assert client.get(f"/api/tests/{test_id}").get_json()["title"] == "renamed"


def test_the_job_form_adds_moves_and_removes_tests_before_saving(app: Flask, client: FlaskClient) -> None:
    first, second = save_test(client, "form one", PASSING), save_test(client, "form two", PASSING)
    before = counts(app)
    form = {"name": "made in the form", "description": "", "retries": "1"}
    added = client.post("/jobs/new", data={**form, "testIds": [first], "add": second, "action": "add"})
    assert added.status_code == 200
    html = added.get_data(as_text=True)
    assert html.index(f'value="{first}"') < html.index(f'value="{second}"')
    moved = client.post("/jobs/new", data={**form, "testIds": [first, second], "action": "up:1"}).get_data(as_text=True)
    assert moved.index(f'name="testIds" value="{second}"') < moved.index(f'name="testIds" value="{first}"')
    removed = client.post("/jobs/new", data={**form, "testIds": [first, second], "action": "remove:0"})
    assert f'name="testIds" value="{first}"' not in removed.get_data(as_text=True)
    assert counts(app) == before  # nothing is saved until Save

    refused = client.post("/jobs/new", data={**form, "retries": "many", "testIds": [first], "action": "save"})
    assert refused.status_code == 422 and "must be numbers" in refused.get_data(as_text=True)
    saved = client.post("/jobs/new", data={**form, "testIds": [second, first], "action": "save"})
    assert saved.status_code == 303
    job = client.get("/api" + saved.headers["Location"]).get_json()
    assert (job["name"], job["retries"], job["testIds"]) == ("made in the form", 1, [second, first])


def test_the_dashboard_counts_what_is_queued_and_what_failed(app: Flask, client: FlaskClient) -> None:
    def figure(name: str) -> int:
        html = client.get("/", headers={"HX-Request": "true"}).get_data(as_text=True)
        return int(re.search(rf'id="{name}">(\d+)<', html).group(1))

    test_id = save_test(client, "waits on the dashboard", PASSING)
    queued, failed = figure("queued-count"), figure("failure-count")
    with app.app_context():  # a run that is never queued stays pending
        test = db.session.get(models.Test, test_id)
        run_id = runs.create_run(models.Run(kind="test", test_id=test_id, title=test.title),
                                 [(test, test.title, test.script)]).id
    assert figure("queued-count") == queued + 1
    with app.app_context():
        runs.finish(run_id, FAILED)
    assert (figure("queued-count"), figure("failure-count")) == (queued, failed + 1)


def test_strips_and_pages_of_runs_keep_the_newest_first_order(app: Flask, client: FlaskClient) -> None:
    """Strips for many tests or jobs come from one query each (history.test_strips, job_strips), and
    every list of runs pages by (created_at, id), ties included, as the strips order them."""
    first, second, idle = (save_test(client, f"history {n}", PASSING) for n in (1, 2, 3))
    job_id = save_job(client, "history job", [first, second])
    tie = models.utcnow()
    with app.app_context():
        tests = {test_id: db.session.get(models.Test, test_id) for test_id in (first, second)}
        job = db.session.get(models.Job, job_id)
        made = []
        for n in range(34):
            # Three runs share one created_at: the run id breaks the tie, in strips and on pages alike.
            moment = tie if n in (10, 11, 12) else None
            if n % 3 == 0:
                run = models.Run(kind="job", job_id=job_id, title=job.name, created_at=moment)
                ran = [(test, test.title, test.script) for test in job.tests]
            else:
                run = models.Run(kind="test", test_id=first, title="history 1", created_at=moment)
                ran = [(tests[first], "history 1", PASSING)]
            made.append(runs.create_run(run, ran).id)
            runs.finish(made[-1], FAILED if n % 4 == 0 else PASSED)
        newest_first = [run.id for run in db.session.scalars(
            select(models.Run).where(models.Run.id.in_(made))
            .order_by(models.Run.created_at.desc(), models.Run.id.desc()))]
        job_runs = [run_id for run_id in newest_first if db.session.get(models.Run, run_id).kind == "job"]

        strips = history.test_strips([first, second, idle])
        assert [outcome.run_id for outcome in strips[first]] == newest_first[:history.STRIP_LENGTH][::-1]
        assert [outcome.run_id for outcome in strips[second]] == job_runs[::-1]
        assert strips[idle] == [] and strips[first] == history.test_outcomes(first)
        assert [outcome.run_id for outcome in history.job_strips([job_id])[job_id]] == job_runs[::-1]

        for filters, expected in (({"test_id": first}, newest_first), ({"test_id": second}, job_runs),
                                  ({"job_id": job_id}, job_runs)):
            seen, cursor = [], None
            while True:
                page = runs.list_runs(4, cursor, **filters)
                seen += [run.id for run in page.items]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert seen == expected, filters

    statements = []

    def count(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # Who is asking (the token, its last use now and then, the user) costs the same on every page.
        if "api_tokens" not in statement and "FROM users" not in statement:
            statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        page = client.get("/tests?q=history").get_data(as_text=True)  # a page of 50: others' tests may come first
        for_tests = len(statements)
        statements.clear()
        jobs_page = client.get("/jobs").get_data(as_text=True)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # A few statements for the whole page, however many tests and jobs there are (not one per row).
    # Jobs: jobs, their tests' titles, rules, rules' channels, schedules, strips.
    assert for_tests <= 4 and len(statements) <= 8, (for_tests, statements)
    assert f'href="/runs/{newest_first[0]}"' in page and f'href="/runs/{job_runs[0]}"' in jobs_page


def test_the_tests_list_pages_by_title_and_searches_titles(app: Flask, client: FlaskClient,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A page of tests at a time, by title then id (titles may repeat), each page's link to the next
    keeping the search; a search finds a piece of a title in any case, with % and _ as themselves."""
    prefix = f"paged {uuid.uuid4().hex[:8]}"
    titles = {save_test(client, f"{prefix} {suffix}", PASSING): suffix for suffix in ("b", "A%", "b", "c_d", "e")}
    with app.app_context():
        in_order = list(db.session.scalars(select(models.Test.id).where(models.Test.id.in_(titles))
                                           .order_by(models.Test.title, models.Test.id)))
    monkeypatch.setattr(test_pages, "PAGE_SIZE", 2)
    seen, pages, url = [], 0, f"/tests?q={quote(prefix.upper())}"
    while url:
        page = client.get(url).get_data(as_text=True)
        seen += re.findall(r'href="/tests/([0-9a-f-]{36})"', page)
        pages += 1
        more = re.search(r'href="([^"]*)">More tests', page)
        url = html.unescape(more.group(1)) if more else ""
        assert not more or parse_qs(urlsplit(url).query)["q"] == [prefix.upper()]
    assert (seen, pages) == (in_order, 3)

    def found(search: str) -> list[str]:
        page = client.get(f"/tests?q={quote(search)}").get_data(as_text=True)
        return re.findall(r'href="/tests/([0-9a-f-]{36})"', page)

    assert [titles[test_id] for test_id in found(f"{prefix} a%")] == ["A%"]
    assert [titles[test_id] for test_id in found(f"{prefix} c_d")] == ["c_d"]
    assert found(f"{prefix} %") == [] and found(f"{prefix} _") == []  # as wildcards, they would find all five
    assert "has “" in client.get(f"/tests?q={quote(prefix + ' z')}").get_data(as_text=True)
