"""Live run status over Server-Sent Events, as JSON (docs/api.md)."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, stream_with_context

from supertest import events
from supertest.errors import Problem
from supertest.extensions import db
from supertest.outcomes import TERMINAL
from supertest.services import runs
from supertest.services.serialize import run_json
from supertest.views.responses import found

bp = Blueprint("events", __name__, url_prefix="/api")


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
        raise TooManyStreams("This server is streaming to as many clients as it can; poll "
                             f"GET /api/runs/{run_id} instead, or try again later.")
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
