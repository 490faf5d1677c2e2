"""What happens when object storage or Redis cannot be reached: real closed ports, no mocks."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from supertest.stack import free_port
from tests.conftest import ProcfileProcess, make_app, start_worker
from tests.helpers import PASSING, start_run, wait_for_run


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
    assert response.get_json() == {"status": "ok", "database": "ok", "redis": "ok", "storage": "ok"}


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
