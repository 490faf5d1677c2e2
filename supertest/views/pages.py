"""Server-rendered pages. One URL serves the whole page, or only its fragment to HTMX."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from htmx_flask import request as htmx_request  # Flask's request; its HX-* headers are in `.htmx`

from supertest.events import format_sse
from supertest.models import Run
from supertest.outcomes import TERMINAL
from supertest.services import history, runs, tests
from supertest.services.serialize import cases_by_run_test, run_json
from supertest.services.validation import ValidationError, is_id, script_and_title
from supertest.views.events import sse_response
from supertest.views.responses import found, go, page_or_fragment, runs_page

bp = Blueprint("pages", __name__)
PAGE_SIZE = 25
EXAMPLE = """import { test, expect } from '@playwright/test';

test('greets and counts clicks', async ({ page }) => {
  await page.setContent(`
    <main>
      <h1>Hello from Supertest</h1>
      <button onclick="this.textContent = 'Clicked ' + (++window.clicks || (window.clicks = 1))">Click me</button>
    </main>`);
  await expect(page.getByRole('heading')).toHaveText('Hello from Supertest');
  await page.getByRole('button').click();
  await expect(page.getByRole('button')).toHaveText('Clicked 1');
});
"""


QUEUE_DOWN = "The run queue (Redis) is unreachable; the run was recorded as an error. Try again shortly."


@bp.get("/")
def home():
    """The dashboard: running now, queued now, failures in the last day, and the latest runs."""
    return page_or_fragment("home.html", "_dashboard.html", page=runs.list_runs(10), board=history.dashboard())


@bp.get("/playground")
def playground():
    """The editor, with a saved test to edit, an earlier run's script, or an example."""
    saved = tests.get_saved(request.args["test"]) if is_id(request.args.get("test", "")) else None
    source = runs.get(request.args["from"]) if is_id(request.args.get("from", "")) else None
    script, title = EXAMPLE, ""
    if saved is not None:
        script, title = saved.script, saved.title
    elif source is not None and source.run_tests:
        script, title = source.run_tests[0].script, source.run_tests[0].title
        saved = tests.get_saved(source.test_id or "") if source.kind == "test" else None
    return render_template("playground.html", script=script, title=title, saved=saved)


@bp.post("/playground/runs")
def start_playground_run():
    """Queue the editor's script and answer with the live run panel."""
    try:
        script, title = script_and_title(request.form.to_dict(), current_app.config["MAX_SCRIPT_BYTES"])
    except ValidationError as error:
        return render_template("runs/_invalid.html", message=error.message), 422
    saved = tests.get_saved(request.form.get("testId", "")) if is_id(request.form.get("testId", "")) else None
    run = runs.create_playground_run(script, title, trigger="playground", saved=saved)
    try:
        runs.enqueue(run)
    except runs.QueueUnavailable:
        return render_template("runs/_invalid.html", message=QUEUE_DOWN), 503
    if not htmx_request.htmx:
        return redirect(url_for("pages.run", run_id=run.id), 303)
    return render_template("runs/_run.html", **run_context(run), in_playground=True), 201


@bp.get("/runs")
def run_list():
    """Recent runs, newest first, a page at a time."""
    return page_or_fragment("runs/list.html", "runs/_table.html", page=runs_page())


@bp.get("/runs/<run_id>")
def run(run_id: str):
    """One run: live while it goes, with its report once it ends."""
    return page_or_fragment("runs/show.html", "runs/_run.html", **run_context(found(runs.get, run_id, "run")),
                            in_playground=request.args.get("panel") == "playground",
                            poll=request.args.get("poll") == "1")


def run_context(run: Run) -> dict[str, Any]:
    return {"run": run, "state": run_json(run), "cases": cases_by_run_test(run),
            "saved_ids": tests.saved_ids(run_test.test_id for run_test in run.run_tests)}


@bp.post("/runs/<run_id>/cancel")
def cancel_run(run_id: str):
    """The Cancel button. The run panel learns of the new status over its live stream."""
    runs.cancel(found(runs.get, run_id, "run").id)  # a run that has just ended stays as it ended
    if htmx_request.htmx:
        return Response(status=204)
    return redirect(url_for("pages.run", run_id=run_id), 303)


@bp.post("/runs/<run_id>/rerun")
def rerun(run_id: str):
    """The Rerun buttons: all the run's tests again, or (`failed` set) those that failed."""
    new = runs.rerun(found(runs.get, run_id, "run"), request.form.get("failed") == "1", trigger="ui")
    return go(url_for("pages.run", run_id=new.id))


@bp.get("/runs/<run_id>/live")
def run_live(run_id: str):
    """The run panel's pieces as HTML over SSE, for the htmx SSE extension."""
    return sse_response(run_id, render_html)


def render_html(event: str, data: dict[str, Any]) -> str:
    if event in ("begin", "test"):
        # The progress line, and out-of-band: the test's row and its status (runs/_live_test.html).
        return format_sse(event, render_template("runs/_live_test.html", event=event, data=data))
    if event == "shard":  # a shard's row on the run page, out of band (runs/_shard.html)
        return format_sse(event, render_template("runs/_shard.html", shard=data, oob=True))
    if event == "status":
        html = format_sse("status", render_template("runs/_status.html", state=data))
        # "done" tells the page to fetch the finished panel; the stream closes after it.
        return html + format_sse("done", "") if data["status"] in TERMINAL else html
    return ""
