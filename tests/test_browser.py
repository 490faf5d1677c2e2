"""The real UI in headless Chromium: the playground runs a test live over HTMX and SSE without a
reload, shows failures and syntax errors readably, embeds the Playwright report, whose trace viewer
works through our report proxy, and the runs page lists what ran. Without JavaScript the form still
runs the test and lands on the run's page.

The app is served by the Procfile's gunicorn (the `web` fixture) and runs go through a real worker.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, expect

from tests.conftest import sign_in, token_of_tester
from tests.helpers import (
    FAILING,
    PASSING,
    RUN_TIMEOUT,
    SYNTAX_ERROR,
    expect_status,
    screenshot,
    start_run,
    wait_for_run,
)


@pytest.fixture(scope="module")
def finished(app: Flask, worker: object) -> dict[str, dict[str, Any]]:
    """A passed run and, queued after it, a failed one, started through the API."""
    client = app.test_client()
    passing = start_run(client, PASSING, "greets the visitor")
    failing = start_run(client, FAILING, "expects the wrong greeting")
    return {"passed": wait_for_run(client, passing["runId"]), "failed": wait_for_run(client, failing["runId"])}


def run_in_playground(page: Page, script: str | None = None, button: str = "Run") -> str:
    """Put `script` in the editor (or keep what is there), press `button`; returns the new run's id."""
    if script is not None:
        page.evaluate("script => window.supertestEditor.setValue(script)", script)
    before = page.locator("#run").get_attribute("data-run-id") if page.locator("#run").count() else None
    page.get_by_role("button", name=button, exact=True).click()
    expect(page.locator("#run")).to_be_attached()
    if before is not None:
        expect(page.locator("#run")).not_to_have_attribute("data-run-id", before)
    return page.locator("#run").get_attribute("data-run-id") or ""


def test_playground_runs_the_example_live_and_shows_its_report(page: Page) -> None:
    page.goto("/")
    screenshot(page, "home")
    page.get_by_role("link", name="Open the playground").click()
    expect(page).to_have_url(re.compile(r"/playground$"))
    editor = page.locator(".CodeMirror")
    expect(editor).to_be_visible()
    expect(editor.locator(".CodeMirror-linenumber").first).to_be_visible()
    expect(editor).to_contain_text("test('greets and counts clicks'")

    # A marker that a reload would wipe, and a record of every status badge the page shows.
    page.evaluate("""() => {
        window.__noReload = 1;
        window.__statuses = [];
        new MutationObserver(() => {
            const badge = document.querySelector('#run-status [data-status]');
            const status = badge && badge.dataset.status;
            if (status && window.__statuses.at(-1) !== status) window.__statuses.push(status);
        }).observe(document.getElementById('run-slot'), {childList: true, subtree: true});
    }""")
    live: list[str] = []
    page.on("request", lambda request: request.url.endswith("/live") and live.append(urlsplit(request.url).path))
    first = run_in_playground(page)
    assert first
    badge = page.locator("#run-status .badge")
    expect(badge).to_have_text(re.compile(r"^(pending|running|passed)$"))
    expect(badge).to_have_text(re.compile(r"^(running|passed)$"), timeout=RUN_TIMEOUT)
    expect_status(page, "passed")
    statuses = page.evaluate("window.__statuses")
    assert statuses[-1] == "passed" and set(statuses) <= {"pending", "running", "passed"}, statuses

    row = page.locator("#run .test-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("greets and counts clicks")
    expect(row.locator(".badge")).to_have_text("passed")
    expect(page.locator("iframe.report")).to_be_visible()
    report = page.frame_locator("iframe.report")
    expect(report.get_by_text("greets and counts clicks").first).to_be_visible()
    screenshot(page, "playground")

    second = run_in_playground(page, button="Run again")
    assert second and second != first
    expect_status(page, "passed")
    expect(page.locator("#run .test-row")).to_have_count(1)
    expect(page.frame_locator("iframe.report").get_by_text("greets and counts clicks").first).to_be_visible()
    assert page.evaluate("window.__noReload") == 1, "the page reloaded"
    # One live stream per run, no reconnects (a missing sse-close shows up as a console error instead).
    assert live == [f"/runs/{first}/live", f"/runs/{second}/live"], live


def run_fresh_playground(page: Page, script: str, status: str) -> None:
    """Open the playground, run `script` and wait for the run to end with `status`."""
    page.goto("/playground")
    expect(page.locator(".CodeMirror")).to_be_visible()
    run_in_playground(page, script)
    expect_status(page, status)


def test_failed_assertion_shows_playwrights_message_without_colour_codes(page: Page) -> None:
    run_fresh_playground(page, FAILING, "failed")
    row = page.locator("#run .test-row")
    expect(row).to_contain_text("expects the wrong greeting")
    expect(row.locator(".badge")).to_have_text("failed")
    error = row.locator(".error-text")
    expect(error).to_contain_text("toHaveText")
    expect(error).to_contain_text('Expected: "Goodbye, tester"')
    expect(error).to_contain_text('Received: "Hello, tester"')
    assert "\x1b" not in (error.text_content() or "")
    expect(page.locator("iframe.report")).to_be_visible()  # a failed run keeps its report
    screenshot(page, "failed")


def test_syntax_error_shows_status_error_with_the_line(page: Page) -> None:
    run_fresh_playground(page, SYNTAX_ERROR, "error")
    message = page.locator("#run pre.run-error")
    expect(message).to_contain_text("SyntaxError")
    expect(message).to_contain_text(re.compile(r"\.spec\.ts:4:\d+"))
    expect(page.locator("#run .test-row")).to_have_count(0)
    assert "\x1b" not in (message.text_content() or "")
    screenshot(page, "error")


def test_trace_viewer_loads_the_trace_through_the_proxy(page: Page, finished: dict[str, dict[str, Any]],
                                                        web: str) -> None:
    run = finished["passed"]
    assert run["status"] == "passed", run
    page.goto(run["reportUrl"])
    page.get_by_role("link", name="greets the visitor").first.click()
    trace_link = page.locator('a[href*="trace/index.html?trace="]').first
    expect(trace_link).to_be_visible()
    trace_link.click()
    # On the reports origin, through a signed link: the trace viewer's service worker works there.
    expect(page).to_have_url(re.compile(r"/r/[\w.-]+/trace/index\.html\?trace="))
    assert urlsplit(page.url).netloc != urlsplit(web).netloc
    # The action list only fills in once the service worker has fetched and unzipped the trace.
    actions = page.locator(".action-title")
    expect(actions.filter(has_text="Set content")).to_be_visible(timeout=30_000)
    expect(actions.filter(has_text="Expect")).not_to_have_count(0)
    # The DOM snapshot is served by the service worker, from inside the trace.
    actions.filter(has_text="Set content").click()
    expect(page.frame_locator("iframe.snapshot-visible").get_by_text("Hello, tester")).to_be_visible()
    screenshot(page, "trace")


def test_runs_page_lists_runs_newest_first_and_links_to_each(page: Page,
                                                             finished: dict[str, dict[str, Any]]) -> None:
    passed, failed = finished["passed"], finished["failed"]
    page.goto("/runs")
    rows = page.locator("table.runs tbody tr")
    expect(rows.first).to_be_visible()
    ids = [re.sub(r".*/runs/", "", href or "") for href in
           rows.locator("td a").evaluate_all("links => links.map(a => a.getAttribute('href'))")]
    assert ids.index(failed["id"]) < ids.index(passed["id"]), ids
    started = [datetime.fromisoformat(moment) for moment in
               rows.locator("time").evaluate_all("times => times.map(t => t.getAttribute('datetime'))")]
    assert len(started) == len(ids) and started == sorted(started, reverse=True), started
    for run in (passed, failed):
        row = rows.filter(has=page.locator(f'a[href$="/runs/{run["id"]}"]'))
        expect(row.locator(".badge")).to_have_text(run["status"])
    screenshot(page, "runs")

    rows.filter(has=page.locator(f'a[href$="/runs/{passed["id"]}"]')).get_by_role("link").click()
    expect(page).to_have_url(re.compile(rf"/runs/{passed['id']}$"))
    expect(page.locator("#run")).to_have_attribute("data-run-id", passed["id"])
    expect_status(page, "passed")
    expect(page.frame_locator("iframe.report").get_by_text("greets the visitor").first).to_be_visible()

    page.get_by_role("link", name="Supertest").click()  # the home page lists the latest runs too
    expect(page.locator("table.runs tbody tr").first).to_contain_text(failed["title"])
    screenshot(page, "home-with-runs")


def test_without_javascript_the_form_still_runs_and_shows_the_run_page(browser: Browser, web: str,
                                                                      app: Flask) -> None:
    context = browser.new_context(base_url=web, java_script_enabled=False)
    page = context.new_page()
    try:
        token_of_tester(app)  # the tester's account exists
        sign_in(page)  # the login page is a plain form too
        page.goto("/playground")
        expect(page.locator("textarea#script")).to_be_visible()  # no CodeMirror without JavaScript
        page.get_by_role("button", name="Run", exact=True).click()
        expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
        expect(page.get_by_role("link", name="Runs")).to_be_visible()  # a whole page, not a fragment
        expect(page.locator("#run-status .badge")).to_have_text(re.compile(r"^(pending|running|passed)$"))
        wait_for_run(app.test_client(), page.url.rsplit("/", 1)[1])
        page.reload()
        expect(page.locator("#run-status .badge")).to_have_text("passed")
        expect(page.locator("iframe.report")).to_be_visible()
    finally:
        context.close()
