"""Blueprints, one per resource; thin: parse, call a service, render a page, a fragment or JSON."""
from __future__ import annotations

from flask import Flask

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
    pages,
    reports,
    test_pages,
    variable_pages,
    vendor,
)


def init_app(app: Flask) -> None:
    errors.init_app(app)
    filters.init_app(app)
    for module in (api, api_tests, api_jobs, api_variables, events, reports, pages, test_pages, job_pages,
                   variable_pages, account_pages, api_channels, alert_pages, vendor, ci):
        app.register_blueprint(module.bp)
