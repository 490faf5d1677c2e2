"""Bad input gets a 4xx JSON error in docs/api.md's shape, and creates no run."""
from __future__ import annotations

import json
import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from supertest.extensions import db
from supertest import models

SCRIPT = "import { test } from '@playwright/test'; test('t', async () => {});"


def counts(app: Flask) -> tuple[int, int]:
    with app.app_context():
        return (db.session.scalar(select(func.count()).select_from(models.Run)),
                db.session.scalar(select(func.count()).select_from(models.Test)))


@pytest.mark.parametrize(("body", "headers", "status", "code"), [
    pytest.param(b"", {"Content-Type": "application/json"}, 400, "invalid_json", id="no body"),
    pytest.param(b"script=x", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
                 "unsupported_media_type", id="form, not JSON"),
    pytest.param(b"{not json", {"Content-Type": "application/json"}, 400, "invalid_json", id="malformed JSON"),
    pytest.param(b'["a list"]', {"Content-Type": "application/json"}, 400, "invalid_json", id="not an object"),
    pytest.param(b"{}", {"Content-Type": "application/json"}, 422, "validation_error", id="missing script"),
    pytest.param(b'{"script": "   \\n "}', {"Content-Type": "application/json"}, 422, "validation_error",
                 id="blank script"),
    pytest.param(b'{"script": 42}', {"Content-Type": "application/json"}, 422, "validation_error",
                 id="script not a string"),
    pytest.param(b'{"script": "x", "title": ["t"]}', {"Content-Type": "application/json"}, 422,
                 "validation_error", id="title not a string"),
    pytest.param(b'{"script": "\\u0000"}', {"Content-Type": "application/json"}, 422, "validation_error",
                 id="NUL in script"),
    pytest.param(b'{"script": "caf\xe9"}', {"Content-Type": "application/json"}, 400, "invalid_encoding",
                 id="not UTF-8"),
    pytest.param(('{"script": "' + "x" * 300_000 + '"}').encode(), {"Content-Type": "application/json"}, 413,
                 None, id="over the size limit"),
])
def test_bad_playground_request_is_refused_and_saves_nothing(
    app: Flask, client: FlaskClient, body: bytes, headers: dict[str, str], status: int, code: str | None
) -> None:
    before = counts(app)
    response = client.post("/api/test", data=body, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["message"]
    if code:
        assert error["code"] == code
    assert counts(app) == before


def test_script_just_over_the_configured_limit_is_413(app: Flask, client: FlaskClient) -> None:
    limit = app.config["MAX_SCRIPT_BYTES"]
    before = counts(app)
    body = json.dumps({"script": "é" * (limit // 2 + 1)}, ensure_ascii=False).encode()  # 2 bytes a character
    response = client.post("/api/test", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]["details"] == {"field": "script"}
    assert counts(app) == before


@pytest.mark.parametrize("url", [
    f"/api/runs/{uuid.uuid4()}",
    "/api/runs/not-an-id",
    "/api/runs/' OR 1=1 --",
    f"/api/test-status/sse/{uuid.uuid4()}",
    "/api/test-status/sse/nope",
    f"/api/job-status/sse/{uuid.uuid4()}",
    f"/api/test-results/{uuid.uuid4()}/report/index.html",
    "/api/test-results/x/report/index.html",
    "/api/no-such-endpoint",
])
def test_unknown_and_malformed_ids_get_404_json(client: FlaskClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] in ("not_found",)


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "limit=1000", "cursor=garbage!", "status=weird",
                                   "testId=123"])
def test_bad_list_parameters_get_400(client: FlaskClient, query: str) -> None:
    response = client.get(f"/api/runs?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_parameter"


def test_wrong_method_is_json_too(client: FlaskClient) -> None:
    response = client.get("/api/test")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_blank_script_in_the_playground_form_explains_itself(app: Flask, client: FlaskClient) -> None:
    before = counts(app)
    response = client.post("/playground/runs", data={"script": "  ", "title": ""}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    assert "script must not be empty" in response.get_data(as_text=True)
    assert counts(app) == before
