"""What happens when object storage, Redis or the database cannot be reached: real closed ports
and real connections cut by a proxy, no mocks."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from flask import Flask
from flask_migrate import upgrade

from supertest.stack import free_port
from tests.conftest import POSTGRES_ADMIN_URL, ProcfileProcess, make_app, start_worker
from tests.helpers import PASSING, run_processes, start_run, wait_for_run, wait_until
from tests.s3server import S3Server
from tests.tcpproxy import TcpProxy

WAITS_6_S = """import { test } from '@playwright/test';

test('takes 6 s', async ({ page }) => {
  await page.setContent('<p>busy</p>');
  await page.waitForTimeout(6000);
});
"""


@pytest.fixture(scope="module")
def no_s3_settings(settings: dict[str, str]) -> dict[str, str]:
    """The same database and report folder, but S3 on a port where nothing listens, and a queue of its own."""
    return {**settings, "S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
            "QUEUE_NAMESPACE": settings["QUEUE_NAMESPACE"] + "-no-s3"}


@pytest.fixture(scope="module")
def no_s3_worker(app: Flask, no_s3_settings: dict[str, str], tmp_path_factory) -> Iterator[ProcfileProcess]:
    worker = start_worker(no_s3_settings, tmp_path_factory.mktemp("no-s3") / "worker.log")
    try:
        yield worker
    finally:
        worker.stop()


def test_with_s3_unreachable_the_report_is_kept_on_local_disk_and_served(
    app: Flask, no_s3_settings: dict[str, str], no_s3_worker: ProcfileProcess
) -> None:
    no_s3_client = make_app(no_s3_settings).test_client()
    run_id = start_run(no_s3_client, PASSING, "survives storage outage")["runId"]
    run = wait_for_run(no_s3_client, run_id)
    assert run["status"] == "passed", run
    assert run["reportUrl"]
    assert (Path(no_s3_settings["REPORTS_DIR"]) / run_id / "report" / "index.html").is_file()
    # Served by the regular app too, whose S3 works but does not have this report.
    client = app.test_client()
    response = client.get(run["reportUrl"])
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    [video] = (Path(no_s3_settings["REPORTS_DIR"]) / run_id / "report" / "data").glob("*.webm")
    part = client.get(f"/api/test-results/{run_id}/report/data/{video.name}", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.mimetype == "video/webm"
    assert part.data == video.read_bytes()[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{video.stat().st_size}"
    assert "keeping it on local disk" in no_s3_worker.log()

    health = no_s3_client.get("/api/health")
    assert health.status_code == 503
    assert health.get_json()["storage"].startswith("error")
    assert health.get_json()["database"] == "ok"


def test_health_is_ok_when_everything_is_up(app: Flask) -> None:
    response = app.test_client().get("/api/health")
    assert response.status_code == 200
    body = response.get_json()
    body.pop("clockLastTickSecondsAgo")  # a number once a clock has run in this session, else null
    assert body == {"status": "ok", "database": "ok", "redis": "ok", "storage": "ok", "sandbox": "ok", "clock": "ok"}


def test_with_redis_down_a_run_request_is_503_and_the_run_is_not_left_pending(
    app: Flask, settings: dict[str, str]
) -> None:
    client = make_app({**settings, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}).test_client()
    response = client.post("/api/test", json={"script": PASSING})
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "queue_unavailable"
    assert "Redis" in error["message"]
    latest = client.get("/api/runs?limit=1").get_json()["items"][0]
    assert latest["status"] == "error"
    assert "could not be queued" in latest["errorMessage"]
    health = client.get("/api/health")
    assert health.status_code == 503
    assert health.get_json()["redis"].startswith("error")


def test_with_redis_down_the_playground_says_so(app: Flask, settings: dict[str, str]) -> None:
    client = make_app({**settings, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}).test_client()
    response = client.post("/playground/runs", data={"script": PASSING}, headers={"HX-Request": "true"})
    assert response.status_code == 503
    assert "Redis" in response.get_data(as_text=True)


@pytest.fixture()
def s3_through_proxy(s3: S3Server, settings: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A worker that reaches S3 only through a proxy the test can take down, trying kept reports
    again every second; its own queue namespace and report folder."""
    endpoint = urlsplit(s3.endpoint)
    proxy = TcpProxy(endpoint.hostname, endpoint.port).up()
    own = {**settings, "S3_ENDPOINT": f"http://127.0.0.1:{proxy.port}", "REPORT_RETRY_SECONDS": "1",
           "QUEUE_NAMESPACE": settings["QUEUE_NAMESPACE"] + "-s3-proxy", "REPORTS_DIR": str(tmp_path / "kept")}
    worker = start_worker(own, tmp_path / "worker.log")
    try:
        yield {"proxy": proxy, "settings": own, "worker": worker}
    finally:
        worker.stop()
        proxy.down()


def test_a_report_kept_while_s3_was_down_is_uploaded_once_it_is_back(
    app: Flask, s3: S3Server, s3_through_proxy: dict[str, Any]
) -> None:
    proxy, own = s3_through_proxy["proxy"], s3_through_proxy["settings"]
    proxy.down()
    client = make_app(own).test_client()
    run = wait_for_run(client, start_run(client, PASSING, "kept, then uploaded")["runId"])
    assert run["status"] == "passed", run
    kept = Path(own["REPORTS_DIR"]) / run["id"] / "report" / "index.html"
    assert kept.is_file()
    assert s3.keys(own["S3_TEST_BUCKET_NAME"], f"{run['id']}/") == []

    proxy.up()
    wait_until(lambda: not kept.exists(), 60, "the kept report was uploaded")
    assert f"{run['id']}/report/index.html" in s3.keys(own["S3_TEST_BUCKET_NAME"], f"{run['id']}/")
    # Served from S3 now, by the regular app (which never saw the local copy).
    assert app.test_client().get(run["reportUrl"]).status_code == 200
    assert "uploaded now that storage is back" in s3_through_proxy["worker"].log()


@pytest.fixture()
def db_through_proxy(settings: dict[str, str]) -> Iterator[dict[str, Any]]:
    """A PostgreSQL database of its own (in either test mode), migrated, reached through a proxy the
    test can take down; settings for it with a queue namespace of their own."""
    name = f"supertest_outage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    server = urlsplit(POSTGRES_ADMIN_URL)
    proxy = TcpProxy(server.hostname, server.port or 5432).up()
    own = {**settings, "DATABASE_URL": f"postgresql://127.0.0.1:{proxy.port}/{name}",
           "QUEUE_NAMESPACE": settings["QUEUE_NAMESPACE"] + "-db-proxy"}
    app = make_app(own)
    with app.app_context():
        upgrade()
    try:
        yield {"proxy": proxy, "settings": own, "app": app}
    finally:
        proxy.down()
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_with_the_database_down_requests_get_503_and_the_app_recovers(db_through_proxy: dict[str, Any]) -> None:
    proxy, client = db_through_proxy["proxy"], db_through_proxy["app"].test_client()
    assert client.get("/api/runs").status_code == 200

    proxy.down()
    for response in (client.get("/api/runs"), client.post("/api/test", json={"script": PASSING})):
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.get_json()["error"]["code"] == "database_unavailable"
    health = client.get("/api/health")
    assert health.status_code == 503 and health.get_json()["database"].startswith("error")
    page = client.get("/runs")
    assert page.status_code == 503 and "The database is unreachable" in page.get_data(as_text=True)

    proxy.up()
    assert client.get("/api/runs").status_code == 200
    assert client.get("/api/health").get_json()["database"] == "ok"


def test_a_worker_records_its_outcome_after_a_database_hiccup(db_through_proxy: dict[str, Any],
                                                              tmp_path: Path) -> None:
    proxy, own = db_through_proxy["proxy"], db_through_proxy["settings"]
    worker = start_worker(own, tmp_path / "worker.log")
    try:
        client = db_through_proxy["app"].test_client()
        run_id = start_run(client, WAITS_6_S, "outlives a database hiccup")["runId"]
        # Its test processes, not only its status: the claim reads the run back after setting it running.
        wait_until(lambda: run_processes(run_id), 60, "the run's test started")
        proxy.down()  # the test finishes while the database is away
        wait_until(lambda: "while recording a run's outcome" in worker.log(), 60, "the worker met the outage")
        proxy.up()
        run = wait_for_run(client, run_id, timeout=60)
        assert run["status"] == "passed" and run["attempt"] == 1, run  # recorded, not run again
    finally:
        worker.stop()
        # Shown by pytest when the test fails: what the worker said, without the reaper's tracebacks.
        print("\n".join(line for line in worker.log().splitlines() if line.startswith("[")))
