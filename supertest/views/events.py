"""Live run status over Server-Sent Events, as JSON (docs/api.md)."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, stream_with_context
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import get_host

from supertest import events, logs
from supertest.errors import Problem
from supertest.extensions import db
from supertest.outcomes import TERMINAL
from supertest.services import runs
from supertest.services.serialize import run_json
from supertest.services.validation import is_id
from supertest.views.responses import found

bp = Blueprint("events", __name__, url_prefix="/api")
STREAM_ENDPOINTS = frozenset({"events.run_events", "pages.run_live"})  # the views that call sse_response


def is_final(event: str, data: dict[str, Any]) -> bool:
    return event == "status" and data.get("status") in TERMINAL


class TooManyStreams(Problem):
    """This web process has MAX_STREAMS live streams open: one more would crowd out other requests."""

    status, code, title = 503, "too_many_streams", "Too many live streams"
    # Clients (and the run page, which falls back to polling) come back after this many seconds.
    headers = {"Retry-After": "10"}


def current_status(run_id: str) -> events.Event:
    """A stream's first event: the run as it is (404 JSON for an unknown id)."""
    return "status", run_json(found(runs.get, run_id, "run"), with_tests=False)


class RefuseStreamsWhenFull:
    """WSGI middleware: once this process has MAX_STREAMS streams open, a request for one more is
    refused here, before Flask makes a request of it, opens its session or checks its token, so
    that when thousands of viewers arrive at once those that cannot be served are told so at once
    and cheaply. Other requests pass straight on: the URL is only looked at when the process is
    full. sse_response still takes the slot itself (and refuses when it is gone meanwhile)."""

    def __init__(self, app: Flask) -> None:
        self.app, self.wsgi_app = app, app.wsgi_app
        self.hub: events.Hub = app.extensions["sse_hub"]
        self.limit: int = app.config["MAX_STREAMS"]
        # The reports origin serves signed report links and nothing else: a 404 there, as before.
        self.reports_host = urlsplit(app.config["REPORTS_ORIGIN"]).netloc if app.config["REPORTS_ORIGIN"] else None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        run_id = self.hub.streams >= self.limit and self._stream_of(environ)
        if not run_id:
            return self.wsgi_app(environ, start_response)
        logs.set_run(run_id if is_id(run_id) else None)  # the access log line names it, as Flask's would
        # JSON as every refusal of a stream (docs/api.md); the run page's stream is the htmx SSE
        # extension's, which shows no body: it falls back to polling on any error.
        problem = TooManyStreams(_full(run_id))
        body = {"error": {"code": problem.code, "message": problem.describe()}}
        return Response(json.dumps(body), problem.status, problem.headers, mimetype="application/json")(
            environ, start_response)

    def _stream_of(self, environ: dict[str, Any]) -> str | None:
        """The run whose stream the request asks for; None for any other request."""
        if self.reports_host and get_host(environ) == self.reports_host:
            return None
        try:
            endpoint, args = self.app.url_map.bind_to_environ(environ).match()
        except HTTPException:  # no such page or method, or a redirect (RequestRedirect is one)
            return None
        return args["run_id"] if endpoint in STREAM_ENDPOINTS else None


def init_app(app: Flask) -> None:
    app.wsgi_app = RefuseStreamsWhenFull(app)  # type: ignore[method-assign]


def _full(run_id: str) -> str:
    return (f"This server is streaming to as many clients as it can; poll GET /api/runs/{run_id} instead, "
            "or try again later.")


def sse_response(run_id: str, render: Callable[[str, dict[str, Any]], str],
                 in_request_context: bool = True) -> Response:
    """Stream a run's events, the first being current_status; the database session is closed
    before the stream starts.

    A `render` that needs no request context (no templates, no url_for) passes
    `in_request_context=False`: the request's context is then let go as the view returns rather
    than kept (and pushed again for every event) for as long as the stream lasts.

    Past MAX_STREAMS streams in this process a new one is refused at once, before the database is
    asked anything, so that ordinary requests keep the connections gunicorn has left."""
    hub: events.Hub = current_app.extensions["sse_hub"]
    release = hub.reserve(current_app.config["MAX_STREAMS"])
    if release is None:
        raise TooManyStreams(_full(run_id))
    try:
        return _stream_response(hub, run_id, render, release, in_request_context)
    except BaseException:
        release()
        raise


def _stream_response(hub: events.Hub, run_id: str, render: Callable[[str, dict[str, Any]], str],
                     release: Callable[[], None], in_request_context: bool) -> Response:
    # Subscribed before the run is read, so that nothing that happens in between is missed; one
    # query (or none, when another stream of this process has just read it: Hub.current) both
    # answers an unknown id with 404 JSON and gives the stream its first event.
    inbox = hub.subscribe(run_id)

    def close() -> None:
        hub.unsubscribe(run_id, inbox)
        release()

    try:
        first = hub.current(run_id, lambda: current_status(run_id))
    except BaseException:
        close()
        raise
    finally:
        db.session.remove()  # no database connection is held while the stream lasts
    body = events.stream(inbox, first, render, current_app.config["SSE_PING_SECONDS"], is_final, close)
    response = Response(stream_with_context(body) if in_request_context else body, mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response.call_on_close(close)  # the server closes every response, streamed to the end or not
    return response


def render_json(event: str, data: dict[str, Any]) -> str:
    return events.format_sse(event, json.dumps(data))


@bp.get("/test-status/sse/<run_id>")
@bp.get("/job-status/sse/<run_id>")
@bp.get("/runs/<run_id>/events")
def run_events(run_id: str) -> Response:
    """The run's current state, then every change until it ends."""
    return sse_response(run_id, render_json, in_request_context=False)
