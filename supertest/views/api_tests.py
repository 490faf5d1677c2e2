"""JSON endpoints for saved tests: /api/tests."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from supertest.models import Test
from supertest.services import history, tests
from supertest.services.serialize import test_json
from supertest.services.validation import test_fields
from supertest.views.responses import found, json_body, start_response

bp = Blueprint("api_tests", __name__, url_prefix="/api/tests")


def found_test(test_id: str) -> Test:
    return found(tests.get_saved, test_id, "saved test")


@bp.get("")
def list_tests():
    """Every saved test, by title."""
    return jsonify({"items": [test_json(test) for test in tests.list_saved()]})


@bp.post("")
def create_test():
    """Save a new test."""
    test = tests.create(test_fields(json_body(), current_app.config["MAX_SCRIPT_BYTES"]))
    return jsonify(test_json(test)), 201, {"Location": f"/api/tests/{test.id}"}


@bp.get("/<test_id>")
def get_test(test_id: str):
    """One saved test, with its pass, fail and flaky counts over its recent runs."""
    test = found_test(test_id)
    return jsonify({**test_json(test), "stats": history.test_stats(history.test_outcomes(test.id)).as_json()})


@bp.put("/<test_id>")
def update_test(test_id: str):
    """Change a test's title, script or description; fields left out keep their value."""
    test = found_test(test_id)
    fields = test_fields(json_body(), current_app.config["MAX_SCRIPT_BYTES"], tests.as_fields(test))
    return jsonify(test_json(tests.update(test, fields)))


@bp.delete("/<test_id>")
def delete_test(test_id: str):
    """Delete a test, its own runs and their reports; job runs that included it keep its result."""
    deleted = tests.delete(found_test(test_id))
    return jsonify({"deleted": test_id, "deletedRuns": deleted})


@bp.post("/<test_id>/run")
def run_test(test_id: str):
    """Queue a new run of the saved test."""
    return start_response(tests.start_run(found_test(test_id), trigger="api"))
