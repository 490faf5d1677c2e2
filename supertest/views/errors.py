"""One way to answer what went wrong: a Problem (supertest/errors.py) or anything else becomes JSON
in docs/api.md's shape for the API (never an HTML page or a traceback there), and a message page, or its
fragment for HTMX, for a person."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from supertest.errors import Problem, Unavailable
from supertest.extensions import db
from supertest.views.responses import page_or_fragment, wants_json

log = logging.getLogger(__name__)


class DatabaseUnavailable(Unavailable):
    code, service, what = "database_unavailable", "database", "The database"

    def describe(self) -> str:
        return "The database is unreachable; try again shortly."


def answer(problem: Problem) -> Any:
    """The response that tells the client or person what went wrong."""
    if isinstance(problem, Unavailable):
        log.warning("%s unavailable on %s: %s", problem.service, request.path, problem.message)
    if wants_json():
        body: dict[str, Any] = {"error": {"code": problem.code, "message": problem.describe()}}
        if problem.details:
            body["error"]["details"] = problem.details
        return jsonify(body), problem.status, problem.headers
    html, _, headers = page_or_fragment("message.html", "_message.html", title=problem.title,
                                        message=problem.describe())
    return html, problem.status, {**headers, **problem.headers}


def init_app(app: Flask) -> None:
    app.register_error_handler(Problem, answer)

    @app.errorhandler(CSRFError)
    def csrf_refused(error: CSRFError) -> Any:
        return answer(Problem(f"The request was refused: {error.description} Reload the page and try again.",
                              code="csrf_failed"))

    @app.errorhandler(OperationalError)
    def database_unavailable(error: OperationalError) -> Any:
        db.session.rollback()
        return answer(DatabaseUnavailable(str(error)))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        if not wants_json():
            return error
        code = (error.name or "error").lower().replace(" ", "_")
        return answer(Problem(error.description or error.name, status=error.code or 500, code=code))

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Any:
        log.exception("unhandled error on %s", request.path)
        return answer(Problem("Something went wrong on our side; it has been logged.", status=500,
                              code="internal_error"))
