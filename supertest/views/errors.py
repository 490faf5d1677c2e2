"""JSON errors for every /api path, in the shape docs/api.md gives; never an HTML page or a traceback."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, render_template, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from supertest.extensions import db
from supertest.services.jobs import EmptyJob
from supertest.services.runs import Busy, QueueUnavailable
from supertest.services.validation import ValidationError
from supertest.storage import StorageError

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None):
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details:
        body["error"]["details"] = details
    return jsonify(body), status


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        return error_response(error.status, error.code, error.message, error.details)

    @app.errorhandler(ValidationError)
    def validation_error(error: ValidationError):
        details = {"field": error.field, **error.details} if error.field else error.details
        return error_response(error.status, error.code, error.message, details)

    @app.errorhandler(QueueUnavailable)
    def queue_unavailable(error: QueueUnavailable):
        return error_response(503, "queue_unavailable", f"Redis (the run queue) is unreachable: {error}",
                              {"service": "redis"})

    @app.errorhandler(EmptyJob)
    def empty_job(error: EmptyJob):
        return error_response(422, "empty_job", str(error))

    @app.errorhandler(Busy)
    def busy(error: Busy):
        return error_response(409, "busy", str(error))

    @app.errorhandler(StorageError)
    def storage_unavailable(error: StorageError):
        log.warning("storage unavailable on %s: %s", request.path, error)
        return error_response(503, "storage_unavailable", f"Report storage is unreachable: {error}",
                              {"service": "storage"})

    @app.errorhandler(OperationalError)
    def database_unavailable(error: OperationalError):
        db.session.rollback()
        log.warning("database unavailable on %s: %s", request.path, error)
        message = "The database is unreachable; try again shortly."
        if not request.path.startswith("/api/"):
            return render_template("message.html", title="Database unreachable", message=message), 503
        return error_response(503, "database_unavailable", message, {"service": "database"})

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if not request.path.startswith("/api/"):
            return error
        code = (error.name or "error").lower().replace(" ", "_")
        return error_response(error.code or 500, code, error.description or error.name)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unhandled error on %s", request.path)
        if request.path.startswith("/api/"):
            return error_response(500, "internal_error", "Something went wrong on our side; it has been logged.")
        return "Something went wrong on our side; it has been logged.", 500
