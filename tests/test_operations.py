"""Operations: workers registered in Redis (and gone when killed), the queues, /metrics in Prometheus's
format, the operations page for administrators, and logs that name their run (LOG_FORMAT=json)."""
from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from supertest import execution, logs, models, registry
from supertest.extensions import db
from supertest.services import accounts, metrics
from tests.conftest import REDIS_URL, ProcfileProcess, make_app, running_workers
from tests.helpers import FAILING, start_run, wait_for_run, wait_until

METRICS_TOKEN = "metrics-" + uuid.uuid4().hex
TTL = 6  # seconds a worker's entry outlives its last heartbeat (one a second here)


def children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(child) for child in path.read_text().split()} if path.exists() else set()


def forget_namespace(namespace: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{namespace}:*", count=500))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="module")
def ops(app: Flask, settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two workers of their own, on a namespace of their own, logging JSON, beating every second."""
    own = {**settings, "QUEUE_NAMESPACE": f"supertest-ops-{uuid.uuid4().hex[:8]}", "HEARTBEAT_SECONDS": "1",
           "WORKER_TTL_SECONDS": str(TTL), "LOG_FORMAT": "json", "METRICS_TOKEN": METRICS_TOKEN}
    try:
        with running_workers(own, tmp_path_factory.mktemp("ops")) as workers:
            yield {"app": make_app(own), "workers": workers}
    finally:
        forget_namespace(own["QUEUE_NAMESPACE"])


@pytest.fixture(scope="module")
def member_token(app: Flask) -> str:
    """An API token of a user who is not an administrator."""
    with app.app_context():
        user = accounts.create_user(f"member-{uuid.uuid4().hex[:6]}@supertest.test", "a long enough password")
        return accounts.create_token(user, "member")[1]


def registered(client: FlaskClient) -> dict[str, dict[str, Any]]:
    response = client.get("/api/workers")
    assert response.status_code == 200, response.get_data(as_text=True)
    return {entry["id"]: entry for entry in response.get_json()}


def worker_pids(process: ProcfileProcess) -> set[int]:
    return children(process.process.pid) | {process.process.pid}


def metric(text: str, name: str, **labels: str) -> float:
    """A sample's value in an exposition (0 when it is not there)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def scrape(client: FlaskClient) -> str:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=")
    return response.get_data(as_text=True)


def test_two_workers_register_with_their_sandbox_and_versions(ops: dict[str, Any]) -> None:
    client = ops["app"].test_client()
    wait_until(lambda: len(registered(client)) == 2 and all(e["sandbox"] for e in registered(client).values()),
               60, "both workers registered with what they found")
    entries = registered(client)
    package = json.loads((Path(ops["app"].config["NODE_MODULES"]) / "@playwright/test/package.json").read_text())
    for process in ops["workers"]:
        [entry] = [e for e in entries.values() if e["pid"] in worker_pids(process)]
        assert entry["id"] == f"{entry['host']}:{entry['pid']}"
        assert entry["startedAt"] <= entry["heartbeatAt"] and entry["runs"] == []
        assert isinstance(entry["sandbox"]["bubblewrap"], bool) and isinstance(entry["sandbox"]["privateNetwork"], bool)
        assert entry["versions"]["playwright"] == package["version"]
        assert entry["versions"]["chromium"] and entry["versions"]["chromium"][0].isdigit()
    page = client.get("/operations")
    assert page.status_code == 200 and "<html" in page.get_data(as_text=True)
    fragment = client.get("/operations", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" not in fragment and 'hx-trigger="every 5s"' in fragment
    for worker_id in entries:
        assert f'data-worker="{worker_id}"' in fragment
    assert 'data-queue="test-execution"' in fragment and 'data-queue="job-execution"' in fragment


def test_metrics_count_the_runs_made_here_and_logs_name_their_run(ops: dict[str, Any]) -> None:
    app, client = ops["app"], ops["app"].test_client()
    before = scrape(client)
    passing = start_run(client, PASSING_TITLE_SCRIPT, "metrics passing")["runId"]
    failing = start_run(client, FAILING, "metrics failing")["runId"]
    # Rows with durations the database must bucket: 0.5 s, 7 s and 100 s, under a trigger of their own.
    now = models.utcnow()
    with app.app_context():
        made = [models.Run(kind="test", trigger="opstest", status="passed", timeout_ms=1000, title="made",
                           started_at=now - timedelta(seconds=seconds), finished_at=now, passed=1, total=1)
                for seconds in (0.5, 7, 100)]
        db.session.add_all(made)
        db.session.commit()
        made_ids = [run.id for run in made]
    try:
        assert wait_for_run(client, passing)["status"] == "passed"
        assert wait_for_run(client, failing)["status"] == "failed"
        after = scrape(client)
    finally:
        with app.app_context():
            db.session.query(models.Run).filter(models.Run.id.in_(made_ids)).delete()
            db.session.commit()

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    finished = "supertest_runs_finished_total"
    assert grew(finished, kind="test", trigger="api", status="passed") == 1
    assert grew(finished, kind="test", trigger="api", status="failed") == 1
    assert grew(finished, kind="test", trigger="opstest", status="passed") == 3
    assert grew("supertest_tests_total", kind="test", outcome="passed") == 4
    assert grew("supertest_tests_total", kind="test", outcome="failed") == 1
    assert grew("supertest_run_duration_seconds_count", kind="test") == 5
    # Cumulative buckets: 0.5 s ≤ 1; 7 s ≤ 10; 100 s ≤ 120; the real runs take a few seconds each.
    real = 2
    assert grew("supertest_run_duration_seconds_bucket", kind="test", le="1.0") == 1
    # (each real run, under 10 s on a quiet machine, may take longer on a loaded one)
    assert 2 <= grew("supertest_run_duration_seconds_bucket", kind="test", le="10.0") <= 2 + real
    assert grew("supertest_run_duration_seconds_bucket", kind="test", le="120.0") == 3 + real
    assert grew("supertest_run_duration_seconds_bucket", kind="test", le="+Inf") == 5
    assert grew("supertest_run_duration_seconds_sum", kind="test") >= 107.5
    assert metric(after, "supertest_workers_alive") == 2
    assert metric(after, "supertest_runs_running", kind="test") >= 0
    assert metric(after, "supertest_queue_waiting", queue="test-execution") == 0
    assert metric(after, "supertest_report_uploads_waiting") == 0

    # Each worker's lines about the run are JSON objects that carry its id, the run's own included.
    lines = [line for process in ops["workers"] for line in process.log().splitlines() if passing in line]
    assert lines, "the workers said nothing about the run"
    entries = [json.loads(line) for line in lines]
    assert all(entry["runId"] == passing and entry["level"] and entry["logger"] and entry["time"]
               for entry in entries), lines
    assert any("attempt 1 ended passed" in entry["message"] for entry in entries), lines


def test_metrics_keep_the_sums_of_runs_that_ended_before_the_boundary(app: Flask) -> None:
    """A scrape adds up the runs since the settled boundary, and those not finished, to the sums kept of
    the runs before it: together, what adding up every run gives. Sums once made are kept until the
    boundary moves (a run that ended before it and came later is counted then)."""
    now = models.utcnow()
    boundary = metrics.settled_boundary(now)
    kind = "settling"  # a kind of its own: nothing else in the database adds to its figures

    def run(finished: timedelta | None, seconds: float, status: str = "passed") -> models.Run:
        end = boundary + finished if finished is not None else None
        return models.Run(kind=kind, trigger="api", status=status, timeout_ms=1000, title="settling", passed=1,
                          total=1, started_at=(end or now) - timedelta(seconds=seconds), finished_at=end)

    def own(figures: metrics.Figures) -> tuple[Any, ...]:
        return ({key: value for key, value in figures.counts.items() if key[0] == kind},
                figures.buckets.get(kind), round(figures.seconds.get(kind, 0.0), 2))  # SQLite: julianday's precision

    with app.app_context():
        app.extensions.pop(metrics.SETTLED_KEY, None)
        made = [run(timedelta(days=-2), 0.5), run(timedelta(seconds=-1), 7, "failed"), run(timedelta(0), 100),
                run(now - boundary, 2000), run(None, 3, "running")]
        db.session.add_all(made)
        db.session.commit()
        try:
            gathered = metrics.gathered(now)
            assert own(gathered) == own(metrics.figures())
            assert own(gathered)[0] == {(kind, "api", "passed"): [3, 3, 0, 0, 0],
                                        (kind, "api", "failed"): [1, 1, 0, 0, 0],
                                        (kind, "api", "running"): [1, 1, 0, 0, 0]}
            assert own(gathered)[1:] == ([1, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0], 2107.5)
            assert app.extensions[metrics.SETTLED_KEY][0] == boundary

            late = run(timedelta(minutes=-5), 7)
            db.session.add(late)
            db.session.commit()
            made.append(late)
            assert own(metrics.gathered(now))[0][(kind, "api", "passed")][0] == 3  # the kept sums, as made
            later = metrics.gathered(now + metrics.SETTLED_PERIOD)
            assert own(later)[0][(kind, "api", "passed")][0] == 4 and own(later) == own(metrics.figures())
        finally:
            db.session.query(models.Run).filter(models.Run.id.in_([row.id for row in made])).delete()
            db.session.commit()


PASSING_TITLE_SCRIPT = """import { test, expect } from '@playwright/test';

test('counted by the metrics', async ({ page }) => {
  await page.setContent('<h1>Counted</h1>');
  await expect(page.getByRole('heading')).toHaveText('Counted');
});
"""


def test_a_killed_worker_drops_off_and_a_stopped_one_unregisters_at_once(ops: dict[str, Any]) -> None:
    client = ops["app"].test_client()
    killed, stopped = ops["workers"]
    entries = registered(client)
    [victim] = [e for e in entries.values() if e["pid"] in worker_pids(killed)]
    os.kill(victim["pid"], signal.SIGKILL)
    wait_until(lambda: victim["id"] not in registered(client), TTL + 10, "the killed worker dropped off")
    [survivor] = [e for e in registered(client).values() if e["pid"] in worker_pids(stopped)]
    assert f'data-worker="{victim["id"]}"' not in client.get("/operations").get_data(as_text=True)
    stopped.stop()  # SIGTERM, as a deployment stops it: it says goodbye rather than expire
    assert survivor["id"] not in registered(client)


def test_queues_count_what_waits_and_what_workers_hold(app: Flask, settings: dict[str, str]) -> None:
    """A namespace no worker consumes: two messages queued, one of them fetched as a worker would."""
    namespace = f"supertest-queues-{uuid.uuid4().hex[:8]}"
    quiet = make_app({**settings, "QUEUE_NAMESPACE": namespace, "METRICS_TOKEN": METRICS_TOKEN})
    client = quiet.test_client()
    try:
        with quiet.app_context():
            runs_waiting = execution.queue_backlog()  # what a worker's warm runners ask (no head start then)
        assert not runs_waiting()
        actor = quiet.extensions["actors"]["execute_test_run"]
        actor.send("never-run-1")
        actor.send("never-run-2")
        assert runs_waiting()
        broker = actor.broker
        broker.slots.size = 1  # as a worker with one thread sizes it
        consumer = broker.consume("test-execution", prefetch=1, timeout=1000)
        assert next(consumer) is not None
        time.sleep(1.1)
        by_name = {queue["name"]: queue for queue in client.get("/api/queues").get_json()}
        assert set(by_name) == {"test-execution", "job-execution", "notifications"}
        assert by_name["test-execution"]["waiting"] == 1 and by_name["test-execution"]["running"] == 1
        assert by_name["test-execution"]["oldestWaitingSeconds"] >= 1.0
        assert by_name["job-execution"] == {"name": "job-execution", "waiting": 0, "oldestWaitingSeconds": None,
                                            "running": 0}
        text = scrape(client)
        assert metric(text, "supertest_queue_waiting", queue="test-execution") == 1
        assert metric(text, "supertest_queue_oldest_waiting_seconds", queue="test-execution") >= 1.0
        assert metric(text, "supertest_queue_running", queue="test-execution") == 1
        consumer.close()
    finally:
        forget_namespace(namespace)


@pytest.mark.parametrize(("authorization", "status"), [
    (None, 401),
    ("Bearer not-a-token", 401),
    (f"Basic {METRICS_TOKEN}", 401),
    (f"Bearer {METRICS_TOKEN}", 200),
    ("admin", 200),
    ("member", 403),
])
def test_metrics_need_the_metrics_token_or_an_administrator(app: Flask, settings: dict[str, str], member_token: str,
                                                            authorization: str | None, status: int) -> None:
    guarded = make_app({**settings, "METRICS_TOKEN": METRICS_TOKEN})
    client = guarded.test_client(authorized=authorization == "admin")
    headers = {"Authorization": f"Bearer {member_token}"} if authorization == "member" else \
        {"Authorization": authorization} if authorization and authorization != "admin" else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_without_a_metrics_token_setting_no_bearer_token_opens_metrics(app: Flask) -> None:
    assert app.config["METRICS_TOKEN"] == ""
    assert app.test_client(authorized=False).get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401


def test_operations_are_for_administrators_only(app: Flask, member_token: str) -> None:
    member = app.test_client(authorized=False)
    for path in ("/operations", "/api/workers", "/api/queues", "/metrics"):
        assert member.get(path, headers={"Authorization": f"Bearer {member_token}"}).status_code == 403, path
        assert member.get(path).status_code in (302, 401), path  # a person is sent to sign in; a script gets 401
    admin = app.test_client()
    assert admin.get("/api/queues").status_code == 200
    link = 'href="/operations"'
    assert link in admin.get("/").get_data(as_text=True)
    assert link not in member.get("/", headers={"Authorization": f"Bearer {member_token}"}).get_data(as_text=True)


def test_the_page_shows_restarted_runs_storage_and_kept_reports(app: Flask) -> None:
    """Rows as the reaper and a worker cut off from S3 leave them: a run on its second attempt, and a
    report kept on local disk (S3 is configured here, so it waits to be uploaded)."""
    client = app.test_client()
    before = metric(client.get("/metrics").get_data(as_text=True), "supertest_report_uploads_waiting")
    with app.app_context():
        restarted = models.Run(kind="test", trigger="api", status="passed", timeout_ms=1000, title="came back",
                               attempt=2, restarted_because="restarted after worker loss", report_store="local")
        db.session.add(restarted)
        db.session.commit()
        run_id = restarted.id
    try:
        html = client.get("/operations", headers={"HX-Request": "true"}).get_data(as_text=True)
        assert f'href="/runs/{run_id}"' in html and "restarted after worker loss" in html
        assert "reachable" in html and "unreachable" not in html
        after = metric(client.get("/metrics").get_data(as_text=True), "supertest_report_uploads_waiting")
        assert after == before + 1
    finally:
        with app.app_context():
            db.session.query(models.Run).filter(models.Run.id == run_id).delete()
            db.session.commit()


def test_a_request_about_a_run_names_it_in_its_log_lines(app: Flask) -> None:
    """The same thread serves the test client's request, so the run it named is still set after it."""
    client = app.test_client()
    run_id, job_id = str(uuid.uuid4()), str(uuid.uuid4())
    for path, expected in ((f"/api/runs/{run_id}", (run_id, None)), (f"/api/jobs/{job_id}", (None, job_id)),
                           ("/api/runs/%0Afake%20line", (None, None)), ("/api/health", (None, None))):
        client.get(path)
        assert logs.current() == expected, path


def test_an_entry_left_to_expire_leaves_the_index_too() -> None:
    client, namespace = redis.Redis.from_url(REDIS_URL), f"supertest-registry-{uuid.uuid4().hex[:8]}"
    try:
        registry.register(client, namespace, {"id": "h:1"}, 1)
        registry.register(client, namespace, {"id": "h:2"}, 30)
        assert [entry["id"] for entry in registry.registered(client, namespace)] == ["h:1", "h:2"]
        time.sleep(1.2)
        assert [entry["id"] for entry in registry.registered(client, namespace)] == ["h:2"]
        assert client.smembers(registry.index(namespace)) == {b"h:2"}
        registry.unregister(client, namespace, "h:2")
        assert registry.registered(client, namespace) == [] and not client.exists(registry.index(namespace))
    finally:
        forget_namespace(namespace)
