"""Blueprints, one per resource; thin: parse, call a service, render a page, a fragment or JSON."""
from __future__ import annotations

from flask import Flask, request, request_started

from supertest import logs
from supertest.services.validation import is_id
from supertest.views import (
    account_pages,
    alert_pages,
    api,
    api_channels,
    api_jobs,
    api_tests,
    api_variables,
    ci,
    errors,
    events,
    filters,
    job_pages,
    operations,
    pages,
    reports,
    test_pages,
    variable_pages,
    vendor,
)


def init_app(app: Flask) -> None:
    errors.init_app(app)
    filters.init_app(app)
    # Before any other hook (authentication logs too), and kept until the next request starts, so
    # that the server's access log line, written once the request is over, names the run as well.
    request_started.connect(_name_the_run, app)
    for module in (api, api_tests, api_jobs, api_variables, events, reports, pages, test_pages, job_pages,
                   variable_pages, account_pages, api_channels, alert_pages, operations, vendor, ci):
        app.register_blueprint(module.bp)
    events.init_app(app)


def _name_the_run(_app: Flask, **_extra: object) -> None:
    """A request about a run (or a job) names it on every line it logs (logs.py); any other, none."""
    args = request.view_args or {}
    # Only ids: whatever else a URL holds (a newline, a made-up line) stays out of the log.
    logs.set_run(*(value if isinstance(value, str) and is_id(value) else None
                   for value in (args.get("run_id"), args.get("job_id"))))
