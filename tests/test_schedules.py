"""Schedules on jobs, the clock's tick with an injected now, slot states, and one real clock process."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Page, expect
from sqlalchemy import delete, select, update

from supertest import clock, cron
from supertest.extensions import db
from supertest.models import JobSchedule, Run
from supertest.outcomes import PASSED, RUNNING
from tests.conftest import ProcfileProcess, make_app, start_worker
from tests.farend import WebhookServer
from tests.helpers import PASSING, save_test, wait_for_run, wait_until
from tests.test_channels import add_channel

EVERY_MINUTE = {"cron": "* * * * *", "timezone": "UTC", "overlap": "queue"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- cron expressions, as pure functions -------------------------------------------------------

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(("expression", "timezone", "field", "words"), [
    ("", "UTC", "cron", "required"),
    ("* * *", "UTC", "cron", "five fields"),
    ("61 * * * *", "UTC", "cron", "not a valid cron"),
    ("a b c d e", "UTC", "cron", "not a valid cron"),
    ("0 0 30 2 *", "UTC", "cron", "day-of-month"),       # February never has a 30th
    ("* * * * *", "UTC", "cron", "shortest interval"),   # every minute, with a 5-minute minimum below
    ("0-4 9 * * *", "UTC", "cron", "shortest interval"),  # a burst once a day is still too frequent
    ("0 9 * * *", "Mars/Olympus", "timezone", "unknown time zone"),
    ("0 9 * * *", "", "timezone", "IANA"),
    ("0 9 * * *", "../../etc/passwd", "timezone", "IANA"),
])
def test_a_schedule_cron_refuses_what_cannot_be_run(expression: str, timezone: str, field: str, words: str) -> None:
    with pytest.raises(cron.CronError) as refused:
        cron.zone(timezone)
        cron.check(expression, timezone, 300, NOW)
    assert refused.value.field == field and words in str(refused.value)


@pytest.mark.parametrize("expression", ["0 0 * 2 1#5", "0 0 29 2 0#5", "0 0 1 1 1#5"])
def test_a_rare_schedule_is_checked_quickly_and_without_error(expression: str) -> None:
    """A Monday the 29th of February comes every 28 years: sampling 1500 of them walked past the year
    9999 (OverflowError, a 500) after most of a second of CPU, on each request of the form's preview."""
    started = time.perf_counter()
    assert cron.check(expression, "Pacific/Chatham", 300, NOW) == expression
    assert time.perf_counter() - started < 0.1
    assert cron.next_times(expression, "UTC", NOW, cron.GAP_SAMPLE)[-1].year <= 9999  # ends there, if it must


@pytest.mark.parametrize(("expression", "after", "expected"), [
    # Spring forward (02:00 → 03:00 on 29 March): 02:30 does not exist, so it runs once, at 03:00 CEST.
    ("30 2 * * *", "2026-03-28T12:00:00Z", ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]),
    # Fall back (03:00 → 02:00 on 25 October): 02:30 happens twice and runs once, the first time.
    ("30 2 * * *", "2026-10-24T12:00:00Z", ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]),
    # Every 30 minutes runs through the repeated hour: 02:00 and 02:30 in both summer and winter time.
    ("*/30 2 * * *", "2026-10-24T23:50:00Z", ["2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z",
                                              "2026-10-25T01:00:00Z", "2026-10-25T01:30:00Z"]),
])
def test_next_times_in_berlin_across_daylight_saving(expression: str, after: str, expected: list[str]) -> None:
    times = cron.next_times(expression, "Europe/Berlin", at(after), len(expected))
    assert [moment.isoformat().replace("+00:00", "Z") for moment in times] == expected


# --- the API ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def test_id(app: Flask) -> str:
    return save_test(app.test_client(), f"scheduled {uuid.uuid4().hex[:6]}", PASSING)


@pytest.fixture(autouse=True)
def _no_schedules_left(app: Flask) -> Iterator[None]:
    """Each test's schedules go with it: later tests (and /api/health elsewhere) see none enabled."""
    yield
    with app.app_context():
        db.session.execute(delete(JobSchedule))
        db.session.commit()


def scheduled_job(client: FlaskClient, test_id: str, **schedule: Any) -> dict[str, Any]:
    response = client.post("/api/jobs", json={"name": f"nightly {uuid.uuid4().hex[:6]}", "testIds": [test_id],
                                              "schedule": schedule})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


@pytest.mark.parametrize(("schedule", "field"), [
    ({"cron": "0 0 30 2 *"}, "schedule.cron"),
    ({"cron": "every day"}, "schedule.cron"),
    ({"cron": "0 9 * * *", "timezone": "Europe/Atlantis"}, "schedule.timezone"),
    ({"cron": "0 9 * * *", "overlap": "pile-up"}, "schedule.overlap"),
    ({"cron": "0 9 * * *", "graceSeconds": -1}, "schedule.graceSeconds"),
    ("0 9 * * *", "schedule"),
])
def test_a_bad_schedule_is_a_422_naming_the_field(client: FlaskClient, test_id: str, schedule: Any,
                                                  field: str) -> None:
    response = client.post("/api/jobs", json={"name": "refused", "testIds": [test_id], "schedule": schedule})
    assert response.status_code == 422 and response.get_json()["error"]["details"]["field"] == field, \
        response.get_json()


def test_a_too_frequent_schedule_is_refused_by_the_setting(app: Flask, client: FlaskClient, test_id: str) -> None:
    app.config["MIN_SCHEDULE_SECONDS"] = 600
    try:
        response = client.post("/api/jobs", json={"name": "x", "testIds": [test_id],
                                                  "schedule": {"cron": "*/5 * * * *"}})
    finally:
        app.config["MIN_SCHEDULE_SECONDS"] = 60
    assert response.status_code == 422 and response.get_json()["error"]["details"]["field"] == "schedule.cron"
    assert "600 s (MIN_SCHEDULE_SECONDS)" in response.get_json()["error"]["message"]


def test_a_job_shows_its_schedule_and_next_run(client: FlaskClient, test_id: str) -> None:
    job = scheduled_job(client, test_id, cron="0  9 * * 1-5", timezone="Europe/Berlin")
    assert job["schedule"] == {"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin", "enabled": True,
                               "overlap": "skip", "graceSeconds": 120}
    assert at(job["nextRunAt"]).astimezone(cron.zone("Europe/Berlin")).hour == 9
    plain = client.post("/api/jobs", json={"name": "unscheduled", "testIds": [test_id]}).get_json()
    assert plain["schedule"] is None and plain["nextRunAt"] is None
    listed = {item["id"] for item in client.get("/api/jobs?scheduled=true").get_json()["items"]}
    assert job["id"] in listed and plain["id"] not in listed
    paused = client.put(f"/api/jobs/{job['id']}", json={"schedule": {**job["schedule"], "enabled": False}}).get_json()
    assert paused["schedule"]["enabled"] is False and paused["nextRunAt"] is None
    renamed = client.put(f"/api/jobs/{job['id']}", json={"name": "renamed"}).get_json()
    assert renamed["schedule"] == paused["schedule"]  # left out: kept
    assert client.put(f"/api/jobs/{job['id']}", json={"schedule": None}).get_json()["schedule"] is None


def test_the_form_previews_a_schedule_as_you_type(client: FlaskClient) -> None:
    shown = client.get("/jobs/schedule-preview?cron=*/10+*+*+*+*&timezone=Europe/Berlin",
                       headers={"HX-Request": "true"})
    assert shown.status_code == 200
    text = shown.get_data(as_text=True)
    assert "Every 10th minute" in text and text.count("<li>") == 3
    bad = client.get("/jobs/schedule-preview?cron=0+0+30+2+*&timezone=UTC", headers={"HX-Request": "true"})
    assert bad.status_code == 200 and 'role="alert">schedule.cron: not a valid' in bad.get_data(as_text=True)


# --- the clock's tick, with an injected now -----------------------------------------------------

@pytest.fixture(scope="module")
def quiet(app: Flask, settings: dict[str, str]) -> Flask:
    """The app on a queue namespace no worker reads: runs the clock queues stay pending."""
    return make_app({**settings, "QUEUE_NAMESPACE": f"quiet-{uuid.uuid4().hex[:8]}"})


def tick(app: Flask, now: datetime) -> clock.Tick:
    with app.app_context():
        return clock.tick(now)


def slots(client: FlaskClient, job_id: str) -> list[dict[str, Any]]:
    return client.get(f"/api/jobs/{job_id}/slots?limit=50").get_json()["items"]


def test_a_due_slot_makes_one_queued_run(quiet: Flask, client: FlaskClient, test_id: str) -> None:
    job = scheduled_job(client, test_id, **EVERY_MINUTE)
    slot = at(job["nextRunAt"])
    assert tick(quiet, slot - timedelta(seconds=1)).runs == []
    done = tick(quiet, slot + timedelta(seconds=1))
    assert len(done.runs) == 1 and tick(quiet, slot + timedelta(seconds=2)).runs == []
    run = client.get(f"/api/runs/{done.runs[0]}").get_json()
    assert (run["trigger"], run["status"], at(run["scheduledFor"])) == ("schedule", "pending", slot)
    assert slots(client, job["id"]) == [{"scheduledFor": job["nextRunAt"], "state": "ran", "runId": run["id"],
                                         "reason": None, "lateAt": None, "alertedAt": None}]
    assert at(client.get(f"/api/jobs/{job['id']}").get_json()["nextRunAt"]) == slot + timedelta(minutes=1)
    shown = client.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert "<code>* * * * *</code> in UTC" in shown and f'href="/runs/{run["id"]}"' in shown


@pytest.mark.parametrize("overlap", ["skip", "queue"])
def test_a_slot_while_the_last_run_is_pending(quiet: Flask, client: FlaskClient, test_id: str, overlap: str) -> None:
    job = scheduled_job(client, test_id, **{**EVERY_MINUTE, "overlap": overlap})
    first = at(job["nextRunAt"])
    tick(quiet, first)
    second = tick(quiet, first + timedelta(minutes=1))
    newest = slots(client, job["id"])[0]
    if overlap == "skip":
        assert second.runs == [] and newest["state"] == "skipped" and "was still pending" in newest["reason"]
        assert newest["alertedAt"] is not None
    else:
        assert len(second.runs) == 1 and newest["state"] == "ran"


def test_after_downtime_the_latest_slot_runs_and_the_others_are_missed_once(
        quiet: Flask, client: FlaskClient, test_id: str) -> None:
    job = scheduled_job(client, test_id, **EVERY_MINUTE, graceSeconds=30)
    first = at(job["nextRunAt"])
    done = tick(quiet, first + timedelta(minutes=4, seconds=20))  # slept through five slots
    assert len(done.runs) == 1 and tick(quiet, first + timedelta(minutes=4, seconds=25)).slots == []
    states = [(at(slot["scheduledFor"]) - first, slot["state"]) for slot in slots(client, job["id"])]
    assert states == [(timedelta(minutes=4), "ran")] + [(timedelta(minutes=n), "missed") for n in (3, 2, 1, 0)]
    assert all(slot["alertedAt"] for slot in slots(client, job["id"])[1:])
    # Past its grace the latest slot is missed too: nothing runs long after its time.
    later = tick(quiet, first + timedelta(minutes=7, seconds=45))  # +5, +6, +7: the newest 45 s ago
    assert later.runs == [] and [state for _, _, state in later.slots] == ["missed"] * 3


def test_two_clocks_at_once_make_one_run_per_slot(quiet: Flask, client: FlaskClient, test_id: str) -> None:
    jobs = [scheduled_job(client, test_id, **EVERY_MINUTE)["id"] for _ in range(3)]
    with quiet.app_context():
        start = min(schedule.next_run_at for schedule in db.session.scalars(select(JobSchedule)))
    nows = [clock.as_utc(start) + timedelta(seconds=20 * step) for step in range(30)]  # ten minutes
    failures: list[BaseException] = []

    def clock_thread() -> None:
        try:
            for now in nows:
                tick(quiet, now)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=clock_thread) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures
    with quiet.app_context():
        made = Counter(db.session.execute(select(Run.job_id, Run.scheduled_for).where(Run.job_id.in_(jobs))).all())
    assert len(made) == 3 * 10 and set(made.values()) == {1}


def test_a_slot_whose_run_does_not_start_goes_late_once(quiet: Flask, client: FlaskClient, test_id: str) -> None:
    job = scheduled_job(client, test_id, **EVERY_MINUTE, graceSeconds=30)
    slot = at(job["nextRunAt"])
    run_id = tick(quiet, slot).runs[0]
    assert tick(quiet, slot + timedelta(seconds=29)).watched == []
    assert [state for _, _, state in tick(quiet, slot + timedelta(seconds=31)).watched] == ["late"]
    assert [w for w in tick(quiet, slot + timedelta(seconds=32)).watched if w[2] == "late"] == []
    late = slots(client, job["id"])[-1]
    assert late["state"] == "late" and late["alertedAt"] and "had not started 30 s" in late["reason"]
    with quiet.app_context():  # a worker takes it up at last
        db.session.execute(update(Run).where(Run.id == run_id).values(status=RUNNING, started_at=slot))
        db.session.commit()
    tick(quiet, slot + timedelta(seconds=33))
    started = slots(client, job["id"])[-1]
    assert started["state"] == "ran" and started["lateAt"] == late["lateAt"]  # it was late, and it says so


def test_a_run_past_its_time_limit_and_grace_is_stuck_once(quiet: Flask, client: FlaskClient, test_id: str) -> None:
    job = scheduled_job(client, test_id, **{**EVERY_MINUTE, "overlap": "skip"}, graceSeconds=10)
    slot = at(job["nextRunAt"])
    run_id = tick(quiet, slot).runs[0]
    with quiet.app_context():
        db.session.execute(update(Run).where(Run.id == run_id)
                           .values(status=RUNNING, started_at=slot, timeout_ms=60_000))
        db.session.commit()
    assert tick(quiet, slot + timedelta(seconds=69)).watched == []
    assert [state for _, _, state in tick(quiet, slot + timedelta(seconds=71)).watched] == ["stuck"]
    assert [w for w in tick(quiet, slot + timedelta(seconds=72)).watched if w[2] == "stuck"] == []
    assert slots(client, job["id"])[-1]["state"] == "stuck"


def test_health_says_the_clock_is_late_only_when_a_schedule_needs_it(quiet: Flask, test_id: str) -> None:
    web = quiet.test_client()
    assert web.get("/api/health").get_json()["clock"] == "ok"  # no schedule, no clock needed
    scheduled_job(web, test_id, cron="0 9 * * *")
    answer = web.get("/api/health")
    assert answer.status_code == 503 and answer.get_json()["clock"] == "late"
    with quiet.app_context():
        clock.record_tick(quiet, datetime.now(UTC).timestamp())
    answer = web.get("/api/health")
    assert answer.status_code == 200 and answer.get_json()["clock"] == "ok", answer.get_json()


# --- the real thing -----------------------------------------------------------------------------

def test_a_one_minute_schedule_fires_on_its_own(app: Flask, client: FlaskClient, worker: ProcfileProcess,
                                                settings: dict[str, str], test_id: str, tmp_path: Any) -> None:
    """The clock process, as the Procfile starts it, and the session's worker: no injected time."""
    running = ProcfileProcess("clock", {**settings, "CLOCK_TICK_SECONDS": "1"}, tmp_path / "clock.log",
                              lambda process: "clock started" in process.log())
    try:
        job = scheduled_job(client, test_id, cron="* * * * *")
        slot = at(job["nextRunAt"])

        def finished() -> bool:
            found = slots(client, job["id"])
            return bool(found) and client.get(f"/api/runs/{found[-1]['runId']}").get_json()["status"] == PASSED

        wait_until(finished, 150, "the scheduled run passed")
    finally:
        running.stop()
    first = slots(client, job["id"])[-1]
    run = client.get(f"/api/runs/{first['runId']}").get_json()
    assert (at(first["scheduledFor"]), first["state"], run["trigger"]) == (slot, "ran", "schedule")
    assert (at(run["startedAt"]) - slot).total_seconds() < 30


def test_the_job_form_previews_the_schedule_in_the_browser(page: Page) -> None:
    page.goto("/jobs/new")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_label("Cron expression").press_sequentially("0 9 * * 1-5")
    preview = page.locator("#schedule-preview")
    expect(preview).to_contain_text("At 09:00")
    expect(preview.locator("li")).to_have_count(3)
    expect(preview.locator("li").first).to_contain_text("09:00 CE")
    page.get_by_label("Cron expression").fill("0 0 30 2 *")
    page.get_by_label("Cron expression").press("End")
    expect(preview.get_by_role("alert")).to_contain_text("schedule.cron")


def test_the_clock_sleeps_until_the_next_slot_or_late_deadline_but_never_spins(
        quiet: Flask, client: FlaskClient, test_id: str) -> None:
    job = scheduled_job(client, test_id, **EVERY_MINUTE, graceSeconds=30)
    slot = at(job["nextRunAt"])
    with quiet.app_context():
        assert clock.seconds_until_next(slot - timedelta(seconds=2), 5) == pytest.approx(2, abs=0.05)
        assert clock.seconds_until_next(slot - timedelta(seconds=20), 5) == 5
        assert clock.seconds_until_next(slot + timedelta(seconds=1), 5) == 5  # overdue: a tick's pause
    tick(quiet, slot)  # its run stays pending: no worker reads this namespace
    with quiet.app_context():
        # Woken for the run's late deadline (slot + 30 s), before the next slot (slot + 60 s).
        assert clock.seconds_until_next(slot + timedelta(seconds=10), 60) == pytest.approx(20, abs=0.05)


# --- slots that alert -------------------------------------------------------------------------

def alerted_job(client: FlaskClient, test_id: str, target: str, **schedule: Any) -> dict[str, Any]:
    job = scheduled_job(client, test_id, **schedule)
    channel = add_channel(client, "webhook", target)
    response = client.put(f"/api/jobs/{job['id']}", json={"alerts": {"channelIds": [channel["id"]]}})
    assert response.status_code == 200, response.get_data(as_text=True)
    return {**job, "secret": channel["secret"]}


def alert_events(client: FlaskClient, job_id: str) -> list[tuple[str, datetime]]:
    items = client.get(f"/api/alerts?jobId={job_id}&limit=100").get_json()["items"]
    return sorted((item["event"], at(item["scheduledFor"])) for item in items)


def test_slots_slept_through_are_alerted_as_missed_once_each(quiet: Flask, client: FlaskClient, test_id: str) -> None:
    job = alerted_job(client, test_id, "http://127.0.0.1:9/nobody", **EVERY_MINUTE, graceSeconds=30)
    first = at(job["nextRunAt"])
    tick(quiet, first + timedelta(minutes=4, seconds=20))
    tick(quiet, first + timedelta(minutes=4, seconds=25))
    assert alert_events(client, job["id"]) == [("missed", first + timedelta(minutes=n)) for n in range(4)]


def test_with_every_worker_stopped_a_slot_goes_late_alerts_once_and_runs_when_a_worker_returns(
        settings: dict[str, str], client: FlaskClient, test_id: str, webhooks: WebhookServer, tmp_path: Any) -> None:
    """No worker reads this namespace while the slot comes and goes late; then one starts."""
    namespace = {**settings, "QUEUE_NAMESPACE": f"stopped-{uuid.uuid4().hex[:8]}"}
    stopped = make_app(namespace)
    path = f"/ok/late-{uuid.uuid4().hex[:6]}"
    job = alerted_job(client, test_id, webhooks.url + path, **EVERY_MINUTE, graceSeconds=30)
    slot = at(job["nextRunAt"])
    run_id = tick(stopped, slot).runs[0]
    tick(stopped, slot + timedelta(seconds=31))
    tick(stopped, slot + timedelta(seconds=40))
    assert alert_events(client, job["id"]) == [("late", slot)]
    worker = start_worker(namespace, tmp_path / "worker.log")
    try:
        assert wait_for_run(client, run_id)["status"] == PASSED
        wait_until(lambda: webhooks.at(path), 60, "the late alert at the webhook")
    finally:
        worker.stop()
    [received] = webhooks.at(path)
    assert received.headers["X-Supertest-Signature"] == \
        "sha256=" + hmac.new(job["secret"].encode(), received.body, hashlib.sha256).hexdigest()
    body = json.loads(received.body)
    assert (body["event"], at(body["scheduledFor"]), body["run"]["id"]) == ("late", slot, run_id)
    tick(stopped, slot + timedelta(seconds=50))
    assert slots(client, job["id"])[-1]["state"] == "ran"  # it was late, and then it ran
