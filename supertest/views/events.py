"""Live run status over Server-Sent Events, as JSON (docs/api.md)."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, stream_with_context

from supertest import events
from supertest.extensions import db
from supertest.models import Run
from supertest.outcomes import TERMINAL
from supertest.services import runs
from supertest.services.serialize import run_json
from supertest.views.responses import found

bp = Blueprint("events", __name__, url_prefix="/api")


def is_final(event: str, data: dict[str, Any]) -> bool:
    return event == "status" and data.get("status") in TERMINAL


def sse_response(run_id: str, render: Callable[[str, dict[str, Any]], str],
                 current_event: Callable[[Run], events.Event]) -> Response:
    """Stream a run's events; the database session is closed before the stream starts."""
    found(runs.get, run_id, "run")  # 404 JSON for unknown ids, before any stream begins

    def current() -> events.Event:
        try:
            return current_event(found(runs.get, run_id, "run"))
        finally:
            db.session.remove()

    db.session.remove()
    body = events.stream(current_app.extensions["sse_hub"], run_id, current, render,
                         current_app.config["SSE_PING_SECONDS"], is_final)
    return Response(stream_with_context(body), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def render_json(event: str, data: dict[str, Any]) -> str:
    return events.format_sse(event, json.dumps(data))


@bp.get("/test-status/sse/<run_id>")
@bp.get("/job-status/sse/<run_id>")
@bp.get("/runs/<run_id>/events")
def run_events(run_id: str) -> Response:
    """The run's current state, then every change until it ends."""
    return sse_response(run_id, render_json, lambda run: ("status", run_json(run, with_tests=False)))
