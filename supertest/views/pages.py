"""Server-rendered pages. One URL serves the whole page, or only its fragment to HTMX."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from htmx_flask import request as htmx_request  # Flask's request; its HX-* headers are in `.htmx`

from supertest.events import format_sse
from supertest.models import TERMINAL, Run
from supertest.services import runs, tests
from supertest.services.serialize import run_json
from supertest.services.validation import ValidationError, is_id, script_and_title
from supertest.views.events import sse_response

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


def page_or_fragment(page: str, fragment: str, /, **context: Any) -> tuple[str, int, dict[str, str]]:
    """The full page, or just the fragment when HTMX asks (and caches must keep the two apart).

    Positional-only, so templates can still be given a `page` (of runs) in `context`.
    """
    template = fragment if htmx_request.htmx and not htmx_request.htmx.boosted else page
    return render_template(template, **context), 200, {"Vary": "HX-Request"}


def run_or_404(run_id: str) -> Run:
    run = runs.get(run_id) if is_id(run_id) else None
    if run is None:
        abort(404)
    return run


@bp.get("/")
def home():
    """Where to start: the playground, and the latest runs."""
    return render_template("home.html", page=runs.list_runs(10))


@bp.get("/playground")
def playground():
    """The editor, prefilled with an example or with the script of an earlier run."""
    script, title = EXAMPLE, ""
    source = runs.get(request.args["from"]) if is_id(request.args.get("from", "")) else None
    if source is not None and source.test is not None:
        script, title = source.test.script, source.test.title
    return render_template("playground.html", script=script, title=title)


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
        return render_template("runs/_invalid.html", message="The run queue (Redis) is unreachable; "
                               "the run was recorded as an error. Try again shortly."), 503
    if not htmx_request.htmx:
        return redirect(url_for("pages.run", run_id=run.id), 303)
    return render_template("runs/_run.html", run=run, state=run_json(run), in_playground=True), 201


@bp.get("/runs")
def run_list():
    """Recent runs, newest first, a page at a time."""
    try:
        page = runs.list_runs(PAGE_SIZE, request.args.get("cursor") or None)
    except ValueError:
        abort(400)
    return page_or_fragment("runs/list.html", "runs/_table.html", page=page)


@bp.get("/runs/<run_id>")
def run(run_id: str):
    """One run: live while it goes, with its report once it ends."""
    found = run_or_404(run_id)
    return page_or_fragment("runs/show.html", "runs/_run.html", run=found, state=run_json(found),
                            in_playground=request.args.get("panel") == "playground")


@bp.get("/runs/<run_id>/live")
def run_live(run_id: str):
    """The run panel's pieces as HTML over SSE, for the htmx SSE extension."""
    return sse_response(run_id, render_html, lambda found: ("status", run_json(found, with_tests=False)))


def render_html(event: str, data: dict[str, Any]) -> str:
    if event == "test":
        row = {**data, "status": "flaky" if data.get("outcome") == "flaky" else data.get("status")}
        return format_sse("test", render_template("runs/_test_row.html", result=row))
    if event == "status":
        html = format_sse("status", render_template("runs/_status.html", state=data))
        # "done" tells the page to fetch the finished panel; the stream closes after it.
        return html + format_sse("done", "") if data["status"] in TERMINAL else html
    return ""
