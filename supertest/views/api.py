"""JSON endpoints for curl and CI: start runs, read runs, health."""
from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import text

from supertest.connections import redis_client
from supertest.errors import Problem
from supertest.execution import preflight
from supertest.extensions import db
from supertest.models import Run
from supertest.outcomes import STATUSES
from supertest.services import runs, schedules, suites
from supertest.services.serialize import run_json
from supertest.services.validation import failed_only, is_id, script_and_title, wait_seconds
from supertest.views.responses import found, json_body, start_response

bp = Blueprint("api", __name__, url_prefix="/api")
MAX_PAGE = 100


def found_run(run_id: str) -> Run:
    return found(runs.get, run_id, "run")


@bp.post("/test")
def run_playground_test():
    """Queue a run of code typed in the playground."""
    script, title = script_and_title(json_body(), current_app.config["MAX_SCRIPT_BYTES"])
    run = runs.create_playground_run(script, title, trigger="api")
    runs.enqueue(run)
    return start_response(run)


@bp.post("/runs")
def run_suite():
    """Queue an ad-hoc run of a local suite: its specs, the files they import and its config."""
    config = current_app.config
    # Its own body limit: room for MAX_RUN_BYTES of files once JSON has escaped them, so that an
    # over-large suite gets the 413 that names MAX_RUN_BYTES rather than a bare one.
    request.max_content_length = 2 * config["MAX_RUN_BYTES"] + 64 * 1024
    suite = suites.suite_from(json_body(), config["MAX_RUN_FILES"], config["MAX_RUN_BYTES"],
                              config["MAX_SCRIPT_BYTES"])
    return start_response(suites.start(suite, trigger="ci"))


@bp.get("/runs/<run_id>")
def get_run(run_id: str):
    """One run with its per-test results; with `wait`, once it has ended or the wait is over."""
    wait = wait_seconds(request.args.get("wait"))  # a bad value is a 400 before anything is looked up
    run = found_run(run_id)
    if wait and not run.finished:
        run = runs.wait_for_end(run.id, wait) or found_run(run_id)  # deleted meanwhile: the 404
    return jsonify(run_json(run))


@bp.post("/runs/<run_id>/cancel")
def cancel_run(run_id: str):
    """Stop a run: a pending one never starts, a running one has its processes killed."""
    run = found_run(run_id)
    cancelled = None if run.finished else runs.cancel(run_id)
    if cancelled is None:
        status = found_run(run_id).status  # as it ended, perhaps a moment ago
        raise Problem(f"the run has already ended: {status}", {"status": status}, status=409,
                      code="already_finished")
    return jsonify(run_json(cancelled, with_tests=False)), 202


@bp.post("/runs/<run_id>/rerun")
def rerun(run_id: str):
    """Queue a new run of a finished run's tests (`failedOnly`: those that failed), as it ran them."""
    run = found_run(run_id)
    body = json_body() if request.get_data(cache=True) else {}  # no body at all: run them all again
    return start_response(runs.rerun(run, failed_only(body), trigger="api"))


@bp.get("/runs")
def list_runs():
    """Runs, newest first, a page at a time."""
    try:
        limit = int(request.args.get("limit", 25))
    except ValueError:
        raise Problem("limit must be a whole number", {"field": "limit"}, code="invalid_parameter") from None
    if not 1 <= limit <= MAX_PAGE:
        raise Problem(f"limit must be between 1 and {MAX_PAGE}", {"field": "limit"}, code="invalid_parameter")
    ids = {name: request.args.get(name) or None for name in ("testId", "jobId")}
    for name, value in ids.items():
        if value and not is_id(value):
            raise Problem(f"{name} must be an id", {"field": name}, code="invalid_parameter")
    status = request.args.get("status") or None
    if status and status not in STATUSES:
        raise Problem(f"status must be one of {', '.join(STATUSES)}", {"field": "status"}, code="invalid_parameter")
    try:
        page = runs.list_runs(limit, request.args.get("cursor") or None, status, ids["testId"], ids["jobId"])
    except ValueError:
        raise Problem("cursor is not one this API gave out", {"field": "cursor"}, code="invalid_parameter") from None
    return jsonify({"items": [run_json(run, with_tests=False) for run in page.items], "nextCursor": page.next_cursor})


def _sandbox_announced() -> None:
    """A worker that cannot run tests in its sandbox (preflight.py) has said so in Redis."""
    problems = preflight.announced(redis_client(), current_app.config["QUEUE_NAMESPACE"])
    if problems:
        raise RuntimeError(problems[0])


@bp.get("/health")
def health():
    """Whether the database, Redis and report storage can be used right now."""
    checks = {
        "database": lambda: db.session.execute(text("SELECT 1")),
        "redis": lambda: redis_client().ping(),
        "storage": lambda: current_app.extensions["reports"].check(),
        "sandbox": _sandbox_announced,
    }
    body: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
            body[name] = "ok"
        except Exception as error:  # a health check reports any failure rather than raising it
            body[name] = f"error: {error}".splitlines()[0][:300]
    try:
        body["clock"], ago = clock_health()
    except Exception as error:  # Redis or the database is down: already said above
        body["clock"], ago = f"error: {error}".splitlines()[0][:300], None
    healthy = all(value == "ok" for value in body.values())
    return jsonify({"status": "ok" if healthy else "unavailable", **body, "clockLastTickSecondsAgo": ago}), \
        200 if healthy else 503


def clock_health() -> tuple[str, float | None]:
    """"late" when the clock has not ticked for CLOCK_LATE_SECONDS while some schedule is enabled; with
    no enabled schedule no clock need run, so a deployment without one is not unhealthy for it."""
    raw = redis_client().get(f"{current_app.config['QUEUE_NAMESPACE']}:clock:last-tick")
    ago = round(time.time() - float(raw), 1) if raw else None
    overdue = ago is None or ago > current_app.config["CLOCK_LATE_SECONDS"]
    return ("late" if overdue and schedules.any_enabled() else "ok"), ago
