"""Alert rules and deliveries: a job's state flips (and only its flips) alert its channels; slot events
come in through alerts.slot_alert; deliveries go through the worker's `notifications` queue to real far
ends, with retries, and a far end that fails never changes a run's outcome."""
from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from supertest.extensions import db
from supertest.models import Delivery, Job, JobAlerts, Run
from supertest.services import alerts
from supertest.stack import free_port
from tests.conftest import TESTER_EMAIL, TESTER_PASSWORD
from tests.farend import MailServer, WebhookServer
from tests.helpers import FAILING, PASSING, save_job, save_test, start_job, wait_for_run, wait_until
from tests.test_auth import signed_in
from tests.test_channels import add_channel

NOWHERE = "http://127.0.0.1:9/nobody"  # the discard port: nothing listens, deliveries there just fail


def deliveries(client: FlaskClient, job_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/alerts?jobId={job_id}&limit=200")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["items"]


def settled(client: FlaskClient, job_id: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """The job's deliveries once there are `count` and none is pending, oldest first."""
    def done() -> bool:
        items = deliveries(client, job_id)
        return len(items) >= count and all(item["state"] != "pending" for item in items)
    wait_until(done, timeout, f"{count} deliveries of job {job_id} settled")
    return deliveries(client, job_id)[::-1]


def job_with_alerts(client: FlaskClient, script: str, channel_ids: list[str], **rule: Any) -> str:
    job_id = save_job(client, f"alerted {uuid.uuid4().hex[:6]}", [save_test(client, "checks", script)])
    response = client.put(f"/api/jobs/{job_id}", json={"alerts": {"channelIds": channel_ids, **rule}})
    assert response.status_code == 200, response.get_data(as_text=True)
    return job_id


@pytest.mark.parametrize(("alerts_value", "field"), [
    ({"channelIds": ["00000000-0000-4000-8000-000000000000"]}, "alerts.channelIds"),
    ({"channelIds": "all"}, "alerts.channelIds"),
    ({"channelIds": ["not-an-id"]}, "alerts.channelIds"),
    ({"afterFailures": 0}, "alerts.afterFailures"),
    ({"afterFailures": 6}, "alerts.afterFailures"),
    ({"afterFailures": True}, "alerts.afterFailures"),
    ({"onRecovery": "yes"}, "alerts.onRecovery"),
    ({"onMissed": 1}, "alerts.onMissed"),
    ({"everyFailure": None}, "alerts.everyFailure"),
    ({"remindHours": 0}, "alerts.remindHours"),
    ({"remindHours": 2.5}, "alerts.remindHours"),
    ({"often": True}, "alerts.often"),
    ([], "alerts"),
])
def test_bad_alert_rules_are_422_naming_the_field(client: FlaskClient, alerts_value: Any, field: str) -> None:
    response = client.post("/api/jobs", json={"name": "rule check", "alerts": alerts_value})
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["error"]["details"]["field"] == field


def test_a_job_keeps_its_rule_and_shows_the_defaults_without_one(client: FlaskClient) -> None:
    channel = add_channel(client, "webhook", NOWHERE)
    plain = client.post("/api/jobs", json={"name": "no rule"}).get_json()
    assert plain["alerts"] == {"channelIds": [], "afterFailures": 1, "onRecovery": True, "onMissed": True,
                               "everyFailure": False, "remindHours": None}
    made = client.post("/api/jobs", json={"name": "ruled", "alerts": {"channelIds": [channel["id"]],
                                                                      "afterFailures": 3, "remindHours": 12}})
    assert made.status_code == 201, made.get_data(as_text=True)
    assert made.get_json()["alerts"] == {"channelIds": [channel["id"]], "afterFailures": 3, "onRecovery": True,
                                         "onMissed": True, "everyFailure": False, "remindHours": 12}
    renamed = client.put(made.get_json()["url"], json={"name": "renamed"}).get_json()
    assert renamed["alerts"]["afterFailures"] == 3  # a PUT without alerts keeps the rule
    client.delete(channel["url"])
    assert client.get(made.get_json()["url"]).get_json()["alerts"]["channelIds"] == []


LATER = "failed, 2 h after the last alert"


@pytest.mark.parametrize(("rule", "statuses", "expected"), [
    ({}, ["failed", "failed", "passed", "passed", "failed"], ["failed", None, "recovered", None, "failed"]),
    ({"afterFailures": 2}, ["failed", "failed", "failed", "passed"], [None, "failed", None, "recovered"]),
    ({"afterFailures": 2}, ["failed", "passed", "failed", "passed"], [None, None, None, None]),
    ({"everyFailure": True}, ["failed", "failed", "passed"], ["failed", "failed", "recovered"]),
    ({"onRecovery": False}, ["failed", "passed", "failed"], ["failed", None, "failed"]),
    ({}, ["error", "timeout", "cancelled", "passed"], ["failed", None, None, "recovered"]),
    ({"remindHours": 1}, ["failed", "failed", LATER, "failed"], ["failed", None, "failed", None]),
])
def test_a_job_alerts_when_its_state_flips_and_not_while_it_holds(
        app: Flask, client: FlaskClient, rule: dict[str, Any], statuses: list[str], expected: list[str | None]) -> None:
    channel = add_channel(client, "webhook", NOWHERE)
    job_id = client.post("/api/jobs", json={"name": "states", "alerts": {"channelIds": [channel["id"]], **rule}}
                         ).get_json()["id"]
    seen: list[str | None] = []
    with app.app_context():
        for status in statuses:
            if status == LATER:
                state = db.session.get(JobAlerts, job_id)
                state.alerted_at -= timedelta(hours=2)
                db.session.commit()
            run = Run(kind="job", job_id=job_id, status=status.split(",")[0], timeout_ms=1000, trigger="api")
            db.session.add(run)
            db.session.commit()
            made = alerts.after_run(run)
            assert len(made) in (0, 1)
            seen.append(made[0].event if made else None)
    assert seen == expected


def test_slot_events_alert_when_the_rule_says_so(app: Flask, client: FlaskClient) -> None:
    channel = add_channel(client, "webhook", NOWHERE)
    slot = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    watched = client.post("/api/jobs", json={"name": "watched", "alerts": {"channelIds": [channel["id"]]}}).get_json()
    quiet = client.post("/api/jobs", json={"name": "quiet", "alerts": {"channelIds": [channel["id"]],
                                                                       "onMissed": False}}).get_json()
    with app.app_context():
        made = alerts.slot_alert(db.session.get(Job, watched["id"]), "late", slot)
        assert [(item.event, item.channel_id) for item in made] == [("late", channel["id"])]
        assert alerts.slot_alert(db.session.get(Job, quiet["id"]), "missed", slot) == []
        with pytest.raises(ValueError):
            alerts.slot_alert(db.session.get(Job, watched["id"]), "failed", slot)
    [listed] = deliveries(client, watched["id"])
    assert listed["event"] == "late" and listed["scheduledFor"] == "2026-11-30T10:00:00Z"
    assert client.delete(watched["url"]).status_code == 200  # its rule and deliveries go with it
    assert deliveries(client, watched["id"]) == []


def test_an_attempt_whose_next_was_never_queued_queues_it_when_its_message_comes_again(
        app: Flask, client: FlaskClient, webhooks: WebhookServer) -> None:
    """The broker failed as attempt 1 queued attempt 2, so Dramatiq ran attempt 1's message again."""
    channel = add_channel(client, "webhook", f"{webhooks.url}/ok/requeued")
    job = client.post("/api/jobs", json={"name": "requeued", "alerts": {"channelIds": [channel["id"]]}}).get_json()
    with app.app_context():
        [made] = alerts.slot_alert(db.session.get(Job, job["id"]), "late", datetime(2026, 11, 30, 10, 0, tzinfo=UTC))
        db.session.execute(update(Delivery).where(Delivery.id == made.id).values(attempts=1))  # 1 made, 2 lost
        db.session.commit()
        sent_before = len(webhooks.at("/ok/requeued"))
        assert alerts.deliver(made.id, 1) == app.config["NOTIFY_BACKOFF_SECONDS"] * 1000  # queue 2 again, send nothing
        assert len(webhooks.at("/ok/requeued")) == sent_before
        assert alerts.deliver(made.id, 2) is None  # attempt 2 is made and succeeds
        assert alerts.deliver(made.id, 2) is None  # and a second copy of it does nothing
        delivery = db.session.get(Delivery, made.id)
        assert (delivery.state, delivery.attempts) == ("sent", 2)


@pytest.fixture(scope="module")
def flips(app: Flask, worker, webhooks: WebhookServer, mail: MailServer) -> dict[str, Any]:
    """A job alerting a webhook, an email list and an Apprise URL: it fails, fails again, then passes."""
    client = app.test_client()
    hook = add_channel(client, "webhook", f"{webhooks.url}/ok/flips")
    apprise = add_channel(client, "apprise", f"json://127.0.0.1:{webhooks.url.rsplit(':', 1)[1]}/ok/flips-apprise")
    email = add_channel(client, "email", "team@example.com")
    job_id = job_with_alerts(client, FAILING, [hook["id"], apprise["id"], email["id"]])
    runs = [wait_for_run(client, start_job(client, job_id)["runId"])]
    first = settled(client, job_id, 3)
    runs.append(wait_for_run(client, start_job(client, job_id)["runId"]))
    client.put(f"/api/jobs/{job_id}", json={"testIds": [save_test(client, "checks again", PASSING)]})
    runs.append(wait_for_run(client, start_job(client, job_id)["runId"]))
    return {"job_id": job_id, "hook": hook, "runs": runs, "first": first, "all": settled(client, job_id, 6)}


def test_failing_then_passing_alerts_once_each_way(flips: dict[str, Any]) -> None:
    assert [run["status"] for run in flips["runs"]] == ["failed", "failed", "passed"]
    assert {(item["event"], item["state"], item["attempts"]) for item in flips["first"]} == {("failed", "sent", 1)}
    events = [(item["event"], item["runId"]) for item in flips["all"]]
    first, _, last = (run["id"] for run in flips["runs"])
    assert sorted(events) == sorted([("failed", first)] * 3 + [("recovered", last)] * 3)  # none for the 2nd failure


def test_the_webhook_gets_the_signed_payload_with_links(flips: dict[str, Any], webhooks: WebhookServer) -> None:
    received = [request for request in webhooks.received if request.path == "/ok/flips"]
    assert len(received) == 2
    failed, recovered = received
    secret = flips["hook"]["secret"].encode()
    for request in received:
        assert request.headers["X-Supertest-Signature"] == \
            "sha256=" + hmac.new(secret, request.body, hashlib.sha256).hexdigest()
    body = json.loads(failed.body)
    run = flips["runs"][0]
    assert body["event"] == "failed" and body["job"] == {"id": flips["job_id"], "name": body["job"]["name"]}
    assert body["run"]["id"] == run["id"] and body["run"]["status"] == "failed" and body["scheduledFor"] is None
    assert body["links"] == {"run": f"http://supertest.test/runs/{run['id']}",
                             "report": f"http://supertest.test/api/test-results/{run['id']}/report/index.html"}
    assert json.loads(recovered.body)["event"] == "recovered"


def test_the_mail_and_the_apprise_message_say_it(flips: dict[str, Any], mail: MailServer,
                                                 webhooks: WebhookServer) -> None:
    subjects = [message["Subject"] for message in mail.messages if message["To"] == "team@example.com"]
    assert [subject.rsplit(" ", 2)[-2:] for subject in subjects] == [["is", "failing"], ["has", "recovered"]]
    failing = next(m for m in mail.messages if m["To"] == "team@example.com")
    assert f"/runs/{flips['runs'][0]['id']}" in failing.get_body(("plain",)).get_content()
    assert "Open the run</a>" in failing.get_body(("html",)).get_content()
    titles = [json.loads(request.body)["title"] for request in webhooks.at("/ok/flips-apprise")]
    assert len(titles) == 2 and titles[0].endswith("is failing") and titles[1].endswith("has recovered")


def test_the_pages_list_the_deliveries(app: Flask, flips: dict[str, Any]) -> None:
    browser, _ = signed_in(app, TESTER_EMAIL, TESTER_PASSWORD)
    job_page = browser.get(f"/jobs/{flips['job_id']}").get_data(as_text=True)
    assert "Recent alerts" in job_page and job_page.count(">recovered") == 3
    assert "HTTP 200 OK: thanks" in browser.get("/alerts").get_data(as_text=True)


def test_far_ends_that_fail_hang_or_refuse_are_retried_then_failed_and_the_run_is_unaffected(
        client: FlaskClient, worker, webhooks: WebhookServer) -> None:
    bad = [add_channel(client, "webhook", url)["id"] for url in
           (f"{webhooks.url}/fail/x", f"{webhooks.url}/hang/x", f"http://127.0.0.1:{free_port()}/refused")]
    job_id = job_with_alerts(client, FAILING, bad)
    run = wait_for_run(client, start_job(client, job_id)["runId"])
    assert run["status"] == "failed" and run["summary"]["failed"] == 1  # as its test decided
    by_channel = {item["channelId"]: item for item in settled(client, job_id, 3, timeout=90)}
    assert {(item["state"], item["attempts"]) for item in by_channel.values()} == {("failed", 3)}
    assert by_channel[bad[0]]["detail"].startswith("HTTP 500")
    assert by_channel[bad[1]]["detail"] == "no answer within 2 s"
    assert by_channel[bad[2]]["detail"].startswith("could not connect")
    assert len(webhooks.at("/fail/x")) == 3 and len(webhooks.at("/hang/x")) == 3
