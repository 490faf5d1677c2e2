"""Blueprints, one per resource; thin: parse, call a service, render a page, a fragment or JSON."""
from __future__ import annotations

from flask import Flask, request

from supertest import logs
from supertest.views import (
    account_pages,
    api,
    api_jobs,
    api_tests,
    api_variables,
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
    app.before_request(_name_the_run)
    app.teardown_request(lambda _error: logs.set_run(None))
    for module in (api, api_tests, api_jobs, api_variables, events, reports, pages, test_pages, job_pages,
                   variable_pages, account_pages, operations, vendor):
        app.register_blueprint(module.bp)


def _name_the_run() -> None:
    """A request about a run (or a job) names it on every line it logs (logs.py)."""
    args = request.view_args or {}
    if "run_id" in args or "job_id" in args:
        logs.set_run(args.get("run_id"), args.get("job_id"))
