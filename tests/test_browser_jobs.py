"""Jobs and runs in the real UI (headless Chromium, gunicorn, a real worker): a test saved from the
playground, a job made in the form with tests added and reordered, its run page turning each
test's row as that test finishes without a reload, and a run cancelled from its page."""
from __future__ import annotations

import re

from flask import Flask
from playwright.sync_api import Page, expect

from tests.helpers import FAILING, expect_status, passing_script, save_test, screenshot, start_run, wait_for_run

# Takes a few seconds, so the other tests visibly finish while the run is still going.
SLOW = """import { test, expect } from '@playwright/test';

test('takes its time', async ({ page }) => {
  await page.setContent('<p>slow</p>');
  await page.waitForTimeout(4000);
  await expect(page.locator('p')).toHaveText('slow');
});
"""

# Records, on every change to the run panel, the run's status and each test's status.
WATCH_ROWS = """() => {
  window.__noReload = 1;
  window.__seen = [];
  const record = () => {
    const run = document.querySelector('#run-status [data-status]');
    const specs = [...document.querySelectorAll('#run .run-test-head [data-status]')].map(b => b.dataset.status);
    const progress = document.getElementById('run-progress');
    window.__seen.push({run: run && run.dataset.status, specs, progress: progress && progress.textContent.trim()});
  };
  new MutationObserver(record).observe(document.body, {childList: true, subtree: true, characterData: true});
  record();
}"""


def test_build_a_job_in_the_ui_run_it_and_watch_rows_turn(page: Page, app: Flask) -> None:
    client = app.test_client()
    save_test(client, "browser slow one", SLOW)
    save_test(client, "browser failing one", FAILING)

    # A test saved from the playground lands on its own page.
    page.goto("/playground")
    expect(page.locator(".CodeMirror")).to_be_visible()
    page.evaluate("script => window.supertestEditor.setValue(script)", passing_script("quick one"))
    page.get_by_label("Test title").fill("browser quick one")
    page.get_by_role("button", name="Save as test").click()
    expect(page).to_have_url(re.compile(r"/tests/[0-9a-f-]{36}$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("browser quick one")

    page.get_by_role("link", name="Jobs", exact=True).click()
    page.get_by_role("link", name="New job").click()
    page.get_by_label("Name").fill("built in the browser")
    for title in ("browser quick one", "browser failing one", "browser slow one"):
        page.get_by_label("Test to add").select_option(label=title)
        page.get_by_role("button", name="Add test").click()
        expect(page.locator(".chosen-tests li").last).to_contain_text(title)
    page.get_by_role("button", name="Move browser slow one up").click()
    chosen = page.locator(".chosen-tests li span")
    expect(chosen).to_have_text(["browser quick one", "browser slow one", "browser failing one"])
    screenshot(page, "job-form")
    page.get_by_role("button", name="Save job").click()

    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    expect(page.locator(".job-tests li")).to_have_text(["browser quick one", "browser slow one", "browser failing one"])
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    page.evaluate(WATCH_ROWS)

    specs = page.locator("#run .run-test")
    expect(specs).to_have_count(3)
    expect_status(page, "failed")
    expect(specs.locator(".run-test-head .badge")).to_have_text(["passed", "passed", "failed"])
    expect(page.locator("iframe.report")).to_be_visible()
    screenshot(page, "job-run")

    seen = page.evaluate("window.__seen")
    assert page.evaluate("window.__noReload") == 1, "the page reloaded"
    # While the run was still going, some tests had already turned: rows change live.
    live = [snap for snap in seen if snap["run"] == "running" and {"passed", "failed"} & set(snap["specs"])]
    assert live, seen
    assert any(re.fullmatch(r"[12] of 3 done", snap["progress"] or "") for snap in seen), seen
    # And the report inside the page is the job's combined one.
    report = page.frame_locator("iframe.report")
    expect(report.get_by_text("takes its time").first).to_be_visible()
    expect(report.get_by_text("expects the wrong greeting").first).to_be_visible()


def test_the_cancel_button_stops_a_running_run(page: Page, app: Flask) -> None:
    client = app.test_client()
    run_id = start_run(client, SLOW.replace("4000", "60000"), "cancelled from its page")["runId"]
    page.goto(f"/runs/{run_id}")
    expect(page.locator("#run-status .badge")).to_have_text("running", timeout=60_000)
    page.get_by_role("button", name="Cancel run").click()
    expect_status(page, "cancelled")
    expect(page.locator("#run pre.run-error")).to_have_text("Cancelled by a user.")
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    assert wait_for_run(client, run_id)["status"] == "cancelled"
