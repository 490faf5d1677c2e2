"""Alerts in the real UI (headless Chromium, gunicorn, a real worker): an administrator adds a webhook
channel, sees its secret once and what a test notification got back, gives a job a schedule and the
channel in the job form, the job fails on schedule (the clock's tick, at the slot's time), and the
alert shows on the Alerts page and reaches the webhook."""
from __future__ import annotations

import json
import re
from datetime import datetime

from flask import Flask
from playwright.sync_api import Page, expect

from supertest import clock
from tests.farend import WebhookServer
from tests.helpers import FAILING, save_job, save_test, screenshot, wait_until


def test_an_admin_adds_a_channel_gives_it_to_a_job_and_its_failure_shows_as_an_alert(
        page: Page, app: Flask, webhooks: WebhookServer) -> None:
    client = app.test_client()
    job_id = save_job(client, "alerted in the browser", [save_test(client, "browser fails", FAILING)])

    page.get_by_role("link", name="Channels").click()
    page.get_by_label("Name").fill("browser hook")
    page.get_by_label("Type").select_option("webhook")
    page.get_by_label("Target").fill(f"{webhooks.url}/ok/browser")
    page.get_by_role("button", name="Add").click()
    expect(page.locator("#new-secret")).to_have_text(re.compile(r"^[A-Za-z0-9_-]{40,}$"))
    row = page.locator("tr", has_text="browser hook")
    expect(row).to_contain_text(re.compile(r"http://127\.0\.0\.1$|http://127\.0\.0\.1\s"))
    row.get_by_role("button", name="Send a test notification").click()
    expect(row.locator(".test-result")).to_have_text("Delivered: HTTP 200 OK: thanks")
    screenshot(page, "channels")
    page.goto("/channels")
    expect(page.locator("#new-secret")).to_have_count(0)  # shown once

    page.goto(f"/jobs/{job_id}/edit")
    page.get_by_label("Cron expression").fill("* * * * *")
    page.get_by_label("browser hook").check()
    page.get_by_role("button", name="Save job").click()
    expect(page).to_have_url(re.compile(rf"/jobs/{job_id}$"))
    try:
        slot = client.get(f"/api/jobs/{job_id}").get_json()["nextRunAt"]
        with app.app_context():  # the clock's tick, at the slot's time rather than after waiting for it
            [run_id] = clock.tick(datetime.fromisoformat(slot.replace("Z", "+00:00"))).runs
    finally:
        client.put(f"/api/jobs/{job_id}", json={"schedule": None})  # no schedule left for /api/health elsewhere
    assert client.get(f"/api/runs/{run_id}").get_json()["trigger"] == "schedule"

    wait_until(lambda: any(json.loads(r.body)["event"] == "failed" for r in webhooks.at("/ok/browser")), 120,
               "the failed alert at the webhook")
    page.get_by_role("link", name="Alerts", exact=True).click()
    row = page.locator("table.alerts tr", has_text="alerted in the browser").first
    expect(row).to_contain_text("failed")
    expect(row).to_contain_text("sent")
    expect(row).to_contain_text("HTTP 200 OK: thanks")
    screenshot(page, "alerts")
