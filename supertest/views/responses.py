"""What every view module shares: reading a JSON body, finding a row or answering 404, answering a
page or its fragment, redirecting after a form, and telling API requests from pages."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, jsonify, redirect, render_template, request
from htmx_flask import request as htmx_request

from supertest.errors import NotFound, Problem
from supertest.models import Run
from supertest.services import runs
from supertest.services.serialize import run_links
from supertest.services.validation import is_id, json_object

T = TypeVar("T")
PAGE_SIZE = 25  # runs on a page of runs
# Blueprints whose every answer is JSON (or a report's file), errors included.
JSON_BLUEPRINTS = frozenset({"api", "api_tests", "api_jobs", "api_variables", "events", "reports"})
JSON_ENDPOINTS = frozenset({"operations.metrics"})  # Prometheus's: a scraper, never a person


def wants_json() -> bool:
    """Whether this request gets its errors as JSON: the API, reports, and anything sent with a
    token (scripts send one; a person's browser never does)."""
    return (request.path.startswith("/api/") or request.blueprint in JSON_BLUEPRINTS
            or request.endpoint in JSON_ENDPOINTS or "Authorization" in request.headers)


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 4xx that says what is wrong with it."""
    raw = request.get_data(cache=True)  # within MAX_CONTENT_LENGTH, or Flask has answered 413 already
    if not raw:
        raise Problem("the request body is empty; send a JSON object", code="invalid_json")
    if not request.is_json:
        raise Problem("send the body as application/json", status=415, code="unsupported_media_type")
    return json_object(raw)


def found(get: Callable[[str], T | None], key: str, what: str, field: str | None = None,
          valid: Callable[[str], bool] = is_id) -> T:
    """The row `get` finds for a key, or a 404 naming what was not found (and the body's `field`
    that named it). A key that is not `valid` never reaches the database."""
    item = get(key) if valid(key) else None
    if item is None:
        raise NotFound(f"no {what} {'named' if valid is not is_id else 'with id'} {key!r}",
                       {"field": field} if field else None)
    return item


def page_or_fragment(page: str, fragment: str, /, **context: Any) -> tuple[str, int, dict[str, str]]:
    """The whole page, or just the fragment an HTMX request swaps in (the page includes it).

    Positional-only, so templates can still be given a `page` (of runs) in `context`.
    """
    template = fragment if htmx_request.htmx and not htmx_request.htmx.boosted else page
    return render_template(template, **context), 200, {"Vary": "HX-Request"}


def go(url: str) -> Response:
    """After a successful form post: a 303 for a plain form, HX-Redirect for HTMX (which would
    otherwise follow a redirect itself and swap the whole next page into its target)."""
    if htmx_request.htmx:
        return Response(status=204, headers={"HX-Redirect": url})
    return redirect(url, 303)  # type: ignore[return-value]


def start_response(run: Run):
    """202 with where to watch the run and read its report (docs/api.md)."""
    owner = {"jobId": run.job_id} if run.kind == "job" else {"testId": run.test_id}
    body = {**owner, "runId": run.id, "status": run.status, **run_links(run)}
    return jsonify(body), 202, {"Location": body["url"]}


def runs_page(**filters: str) -> runs.Page:
    """A page of runs, newest first, from the request's `cursor`."""
    try:
        return runs.list_runs(PAGE_SIZE, request.args.get("cursor") or None, **filters)
    except ValueError:
        raise Problem("That page of runs does not exist (a cursor this site did not give out).") from None
