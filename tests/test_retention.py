"""Retention: finished runs past RUN_RETENTION_DAYS, or their job's retentionDays, go with their
reports in S3; queued and running runs stay however old, and strips and counts show what is left."""
from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from supertest import config, models
from supertest.extensions import db
from supertest.outcomes import CANCELLED, PASSED
from supertest.services import retention, runs
from tests.helpers import passing_script, save_test, start_job, wait_for_run
from tests.s3server import S3Server


def backdate(app: Flask, run_id: str, days: int) -> None:
    """As if the run had been made `days` ago (its run tests keep a copy of when)."""
    moment = models.utcnow() - timedelta(days=days)
    with app.app_context():
        db.session.execute(update(models.Run).where(models.Run.id == run_id).values(created_at=moment))
        db.session.execute(update(models.RunTest).where(models.RunTest.run_id == run_id)
                           .values(run_created_at=moment))
        db.session.commit()


def test_old_runs_go_with_their_reports_and_active_ones_stay(
        app: Flask, client: FlaskClient, worker, s3: S3Server, settings: dict[str, str]) -> None:
    test_id = save_test(client, "kept a while", passing_script("kept a while"))
    created = client.post("/api/jobs", json={"name": "short memory", "testIds": [test_id], "retentionDays": 3})
    assert created.status_code == 201 and created.get_json()["retentionDays"] == 3
    job_id = created.get_json()["id"]
    old_job_run, new_job_run = (wait_for_run(client, start_job(client, job_id)["runId"]) for _ in range(2))
    own_run = wait_for_run(client, client.post(f"/api/tests/{test_id}/run").get_json()["runId"])
    assert old_job_run["status"] == new_job_run["status"] == own_run["status"] == PASSED
    with app.app_context():  # a run that is never queued stays pending, however old it gets
        test = db.session.get(models.Test, test_id)
        queued = runs.create_run(models.Run(kind="test", test_id=test_id, title=test.title),
                                 [(test, test.title, test.script)]).id
    backdate(app, old_job_run["id"], 4)
    backdate(app, own_run["id"], 40)
    backdate(app, queued, 400)
    jobs_bucket, tests_bucket = settings["S3_JOB_BUCKET_NAME"], settings["S3_TEST_BUCKET_NAME"]
    assert s3.keys(jobs_bucket, f"{old_job_run['id']}/") and s3.keys(tests_bucket, f"{own_run['id']}/")

    # RUN_RETENTION_DAYS unset: only the job's own 3 days apply.
    assert app.config["RUN_RETENTION_DAYS"] is None
    with app.app_context():
        assert retention.prune(batch=1) == 1
    assert client.get(f"/api/runs/{old_job_run['id']}").status_code == 404
    assert s3.keys(jobs_bucket, f"{old_job_run['id']}/") == []
    assert s3.keys(jobs_bucket, f"{new_job_run['id']}/")
    job_page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert job_page.count('class="tick ') == 1 and f'/runs/{new_job_run["id"]}"' in job_page
    assert client.get(f"/api/tests/{test_id}").get_json()["stats"] == \
        {"lastRuns": 2, "passed": 2, "failed": 0, "flaky": 0}

    app.config["RUN_RETENTION_DAYS"] = 30
    try:
        with app.app_context():
            assert retention.prune() == 1
    finally:
        app.config["RUN_RETENTION_DAYS"] = None
    assert client.get(f"/api/runs/{own_run['id']}").status_code == 404
    assert s3.keys(tests_bucket, f"{own_run['id']}/") == []
    assert client.get(f"/api/runs/{queued}").get_json()["status"] == "pending"
    assert client.get(f"/api/tests/{test_id}").get_json()["stats"] == \
        {"lastRuns": 1, "passed": 1, "failed": 0, "flaky": 0}
    with app.app_context():
        runs.finish(queued, CANCELLED, error_message="ended by the test")


def test_a_job_form_save_keeps_the_retention_the_api_set(client: FlaskClient) -> None:
    test_id = save_test(client, "in a form", passing_script("in a form"))
    job_id = client.post("/api/jobs", json={"name": "form", "testIds": [test_id], "retentionDays": 9}).get_json()["id"]
    saved = client.post(f"/jobs/{job_id}/edit", data={"name": "form, renamed", "retries": "0", "testIds": [test_id]})
    assert saved.status_code == 303
    body = client.get(f"/api/jobs/{job_id}").get_json()
    assert (body["name"], body["retentionDays"]) == ("form, renamed", 9)
    assert client.put(f"/api/jobs/{job_id}", json={"retentionDays": None}).get_json()["retentionDays"] is None


@pytest.mark.parametrize(("raw", "error"), [("0", "at least 1"), ("36501", "at most"), ("30d", "whole number")])
def test_run_retention_days_is_parsed_strictly(raw: str, error: str) -> None:
    with pytest.raises(config.ConfigError, match=error):
        config.from_env({"RUN_RETENTION_DAYS": raw, "SECRET_KEY": "x"})
    assert config.from_env({"RUN_RETENTION_DAYS": " 30 ", "SECRET_KEY": "x"})["RUN_RETENTION_DAYS"] == 30
    assert config.from_env({"SECRET_KEY": "x"})["RUN_RETENTION_DAYS"] is None

