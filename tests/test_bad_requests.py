"""Bad input gets a 4xx JSON error in docs/api.md's shape, and creates no run."""
from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from supertest import models
from supertest.extensions import db
from supertest.services.validation import json_depth
from tests.test_auth import csrf_of, new_user, signed_in

SCRIPT = "import { test } from '@playwright/test'; test('t', async () => {});"
# Moved by merely using a token or signing in; everything else in the database must stay as it was.
MOVES_ON_USE = {"last_used_at", "last_login_at"}
# json.loads recursed once per level of these, and ended in RecursionError: a 500 on every JSON endpoint.
DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 5_000 + b"1" + b"}" * 5_000


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


@pytest.mark.parametrize(("text", "depth"), [
    (b"{}", 1),
    (b'{"a": [1, {"b": []}], "c": {}}', 4),
    (b'{"script": "[[[{{{ \\" ]]] \\\\"}', 1),  # brackets and escaped quotes inside a string
    (b'["\\\\", ["]"]]', 2),  # a string that ends in an escaped backslash
    (b'{"a": "\xc3\xa9[", "b": [[]]}', 3),
    (DEEP_ARRAY, 100_000),
    (b"[" * 100_000, 100_000),  # unclosed: refused as too deep, and it is not JSON either
    # An unclosed string runs to the end; a string pattern that could fail was retried from every later
    # quote, and took minutes over these.
    (b'"\\' * 100_000, 0),
    (b"[" * 65 + b'"\\' * 100_000, 65),
    (b'{"a": "' + b'\\"[' * 100_000, 1),
])
@pytest.mark.timeout(30)  # linear: each of these takes milliseconds; a quadratic pattern took minutes
def test_json_depth_counts_brackets_outside_strings(text: bytes, depth: int) -> None:
    assert json_depth(text) == depth


def test_a_surrogate_pair_is_text(app: Flask, client: FlaskClient) -> None:
    body = b'{"script": "x", "title": "\\ud83d\\ude00 \xf0\x9f\x98\x80"}'  # an emoji escaped, and as UTF-8
    response = client.post("/api/tests", data=body, content_type="application/json")
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["title"] == "\U0001F600 \U0001F600"
    assert client.delete(f"/api/tests/{response.get_json()['id']}").status_code == 200


def test_a_null_description_is_an_empty_one(client: FlaskClient) -> None:
    created = client.post("/api/tests", json={"script": SCRIPT, "description": None})
    assert created.status_code == 201 and created.get_json()["description"] == ""
    assert client.delete(f"/api/tests/{created.get_json()['id']}").status_code == 200


def test_a_script_full_of_brackets_is_not_too_deep(app: Flask, client: FlaskClient) -> None:
    script = SCRIPT + "\n// " + "{[" * 5_000
    response = client.post("/api/tests", json={"script": script, "title": "brackets in a string"})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert client.delete(f"/api/tests/{response.get_json()['id']}").status_code == 200


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


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize("query", [
    "limit=0", "limit=abc", "limit=1000", "limit=1e3", "limit=2.5", "limit=-1", "limit=" + "9" * 5_000, "limit=%00",
    "cursor=garbage!", "cursor=%00", "cursor=%ED%A0%80",
    "cursor=" + cursor("2024-01-01T00:00:00+00:00|x\x00y"),  # a NUL in the id: a 500 on PostgreSQL
    "cursor=" + cursor(f"2024-01-01T00:00:00+00:00|{uuid.uuid4()}\n"),
    "cursor=" + cursor(f"not a time|{uuid.uuid4()}"),
    "status=weird", "status=%00", "testId=123", "jobId=%00",
])
def test_bad_list_parameters_get_400(client: FlaskClient, query: str) -> None:
    response = client.get(f"/api/runs?{query}")
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert (error["code"], error["details"]["field"]) == ("invalid_parameter", query.split("=")[0])


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


def stored(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (but the columns in MOVES_ON_USE): what "nothing was stored" compares."""
    with app.app_context():
        return {table.name: sorted((tuple(row) for row in db.session.execute(
                    select(*[column for column in table.columns if column.name not in MOVES_ON_USE]))), key=repr)
                for table in db.metadata.sorted_tables}


@pytest.fixture(scope="module")
def existing(app: Flask) -> dict[str, str]:
    """A saved test, a job running it, a plain variable and a secret: what the PUT rows try to change."""
    client = app.test_client()
    test = client.post("/api/tests", json={"title": "kept as it is", "script": SCRIPT, "description": "kept"})
    job = client.post("/api/jobs", json={"name": "kept as it is", "description": "kept",
                                         "testIds": [test.get_json()["id"]]})
    suffix = uuid.uuid4().hex[:6].upper()
    for name, secret in ((f"PLAIN_{suffix}", False), (f"SECRET_{suffix}", True)):
        assert client.post("/api/variables", json={"name": name, "value": "kept-value", "secret": secret}
                           ).status_code == 201
    return {"test": test.get_json()["id"], "job": job.get_json()["id"], "plain": f"PLAIN_{suffix}",
            "secret": f"SECRET_{suffix}"}




def nested(levels: int) -> list[Any]:
    """A list nested `levels` deep (1: [])."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


# method, path ({test}, {job}, {plain}, {secret} name the rows of `existing`), body (a dict is sent as
# JSON, bytes as they are, None for no body), and the status, error code and details.field expected.
BAD_INPUT = [
    pytest.param("POST", "/api/variables", {"name": "ABC\n", "value": "x"}, 422, "validation_error", "name",
                 id="variable name with a final newline"),
    pytest.param("POST", "/api/variables", {"name": "\nABC", "value": "x"}, 422, "validation_error", "name",
                 id="variable name with a leading newline"),
    *(pytest.param(method, path, body, 400, "invalid_json", None, id=f"deeply nested {kind}: {method} {path}")
      for method, path in [("POST", "/api/test"), ("POST", "/api/tests"), ("PUT", "/api/tests/{test}"),
                           ("POST", "/api/jobs"), ("PUT", "/api/jobs/{job}"), ("POST", "/api/jobs/run"),
                           ("POST", "/api/variables"), ("PUT", "/api/variables/{plain}")]
      for kind, body in [("arrays", DEEP_ARRAY), ("objects", DEEP_OBJECT)]),
    pytest.param("POST", "/api/test", b'{"script": "' + b'\\"' * 100_000, 400, "invalid_json", None,
                 id="a string never closed, full of escaped quotes"),
    pytest.param("POST", "/api/tests", {"script": SCRIPT, "title": nested(64)}, 400, "invalid_json", None,
                 id="65 levels (the body's object and 64 lists)"),
    pytest.param("POST", "/api/tests", {"script": SCRIPT, "title": nested(63)}, 422, "validation_error", "title",
                 id="64 levels are parsed, and the field is refused for itself"),
    pytest.param("POST", "/api/jobs", b'{"name": "j", "retries": NaN}', 400, "invalid_json", None,
                 id="NaN is not JSON"),
    pytest.param("POST", "/api/jobs", b'{"name": "j", "timeoutMs": -Infinity}', 400, "invalid_json", None,
                 id="-Infinity is not JSON"),
    # A lone surrogate parsed, then could not be encoded as UTF-8 to be stored: a 500.
    pytest.param("POST", "/api/test", b'{"script": "x\\ud800"}', 400, "invalid_encoding", "script",
                 id="lone surrogate in a playground script"),
    pytest.param("POST", "/api/test", b'{"script": "x", "title": "\\udc00 t"}', 400, "invalid_encoding", "title",
                 id="lone low surrogate in a title"),
    pytest.param("POST", "/api/tests", b'{"script": "x", "description": "\\ud83d"}', 400, "invalid_encoding",
                 "description", id="half an emoji in a description"),
    pytest.param("PUT", "/api/tests/{test}", b'{"title": "\\ude00\\ud83d"}', 400, "invalid_encoding", "title",
                 id="an emoji's halves in the wrong order"),
    pytest.param("POST", "/api/jobs", b'{"name": "j\\ud800"}', 400, "invalid_encoding", "name",
                 id="lone surrogate in a job name"),
    pytest.param("POST", "/api/jobs", b'{"name": "j", "testIds": ["\\ud800"]}', 400, "invalid_encoding",
                 "testIds[0]", id="lone surrogate in a list"),
    pytest.param("POST", "/api/jobs/run", b'{"jobId": "\\ud800"}', 400, "invalid_encoding", "jobId",
                 id="lone surrogate in an id"),
    pytest.param("POST", "/api/variables", b'{"name": "SURROGATE", "value": "\\udfff"}', 400, "invalid_encoding",
                 "value", id="lone surrogate in a variable's value"),
    pytest.param("PUT", "/api/variables/{secret}", b'{"value": "long enough \\ud800"}', 400, "invalid_encoding",
                 "value", id="lone surrogate in a secret"),
    pytest.param("POST", "/api/test", b'{"script": "x", "\\ud800": {"a": 1}}', 400, "invalid_encoding",
                 "\\ud800", id="lone surrogate in a key nobody reads"),
    pytest.param("POST", "/api/test", b'{"script": "x", "extra": {"deeper": [1, "\\ud800"]}}', 400,
                 "invalid_encoding", "extra.deeper[1]", id="lone surrogate deep in a field nobody reads"),
    # A secret of spaces was accepted, then blanked every indent of that width in error snippets.
    pytest.param("POST", "/api/variables", {"name": "BLANK", "value": " " * 8, "secret": True}, 422,
                 "validation_error", "value", id="secret of 8 spaces"),
    pytest.param("POST", "/api/variables", {"name": "BLANK", "value": " \t\n\r\u00a0\u2003\u3000 " * 20,
                                            "secret": True}, 422, "validation_error", "value",
                 id="secret of 160 whitespace characters of all kinds"),
    pytest.param("POST", "/api/variables", {"name": "MOSTLY_BLANK", "value": "a1" + " " * 30 + "b2c3d", "secret": True},
                 422, "validation_error", "value", id="secret of 7 characters among spaces"),
    pytest.param("PUT", "/api/variables/{secret}", {"value": "\n" * 40}, 422, "validation_error", "value",
                 id="secret replaced with blank lines"),
    pytest.param("PUT", "/api/variables/{plain}", {"value": "        ", "secret": True}, 422, "validation_error",
                 "value", id="made secret with a blank value"),
    # description: false was stored as "" (`or ""`) where title: false was refused. null is an empty description.
    *(pytest.param(method, path, {**body, "description": wrong}, 422, "validation_error", "description",
                   id=f"description {json.dumps(wrong)}: {method} {path}")
      for method, path, body in [("POST", "/api/tests", {"script": SCRIPT}), ("PUT", "/api/tests/{test}", {}),
                                 ("POST", "/api/jobs", {"name": "j"}), ("PUT", "/api/jobs/{job}", {})]
      for wrong in (False, 0, [], {})),
    # The same type checks on every other field; each of these was already refused, and must stay so.
    *(pytest.param(method, path, body, 422, "validation_error", field,
                   id=f"{field} {json.dumps(body[field])}: {method} {path}")
      for method, path, field, body in [
          ("POST", "/api/test", "title", {"script": SCRIPT, "title": False}),
          ("POST", "/api/test", "script", {"script": True}),
          ("PUT", "/api/tests/{test}", "title", {"title": 0}),
          ("PUT", "/api/tests/{test}", "script", {"script": None}),
          ("POST", "/api/jobs", "name", {"name": False}),
          ("PUT", "/api/jobs/{job}", "name", {"name": 0}),
          ("POST", "/api/jobs", "retries", {"name": "j", "retries": True}),
          ("POST", "/api/jobs", "retries", {"name": "j", "retries": "1"}),
          ("POST", "/api/jobs", "retries", {"name": "j", "retries": 1.0}),
          ("POST", "/api/jobs", "retries", {"name": "j", "retries": 10**30}),
          ("POST", "/api/jobs", "retries", {"name": "j", "retries": -1}),
          ("PUT", "/api/jobs/{job}", "retries", {"retries": None}),
          ("POST", "/api/jobs", "timeoutMs", {"name": "j", "timeoutMs": 1500.5}),
          ("POST", "/api/jobs", "timeoutMs", {"name": "j", "timeoutMs": "60000"}),
          ("POST", "/api/jobs", "timeoutMs", {"name": "j", "timeoutMs": False}),
          ("POST", "/api/jobs", "testIds", {"name": "j", "testIds": None}),
          ("POST", "/api/jobs", "testIds", {"name": "j", "testIds": [1]}),
          ("POST", "/api/jobs", "testIds", {"name": "j", "testIds": "abc"}),
          ("POST", "/api/jobs/run", "jobId", {"jobId": False}),
          ("POST", "/api/variables", "name", {"name": 5, "value": "x"}),
          ("POST", "/api/variables", "name", {"name": ["A"], "value": "x"}),
          ("POST", "/api/variables", "value", {"name": "NOT_TEXT", "value": False}),
          ("POST", "/api/variables", "value", {"name": "NOT_TEXT", "value": None}),
          ("POST", "/api/variables", "secret", {"name": "NOT_BOOL", "value": "x", "secret": "true"}),
          ("POST", "/api/variables", "secret", {"name": "NOT_BOOL", "value": "x", "secret": 1}),
          ("PUT", "/api/variables/{plain}", "value", {"value": 12345678}),
      ]),
    # Numbers no field can hold: 1e400 parses as infinity, a 5,000-digit integer is past Python's limit.
    pytest.param("POST", "/api/jobs", b'{"name": "j", "retries": 1e400}', 422, "validation_error", "retries",
                 id="retries 1e400"),
    pytest.param("POST", "/api/jobs", b'{"name": "j", "timeoutMs": -1e400}', 422, "validation_error", "timeoutMs",
                 id="timeoutMs -1e400"),
    pytest.param("POST", "/api/jobs", b'{"name": "j", "retries": 1' + b"0" * 5_000 + b"}", 400, "invalid_json", None,
                 id="retries of 5,001 digits"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code", "field"), BAD_INPUT)
def test_bad_input_is_refused_and_stores_nothing(
    app: Flask, client: FlaskClient, existing: dict[str, str], method: str, path: str,
    body: dict[str, Any] | bytes | None,
    status: int, code: str, field: str | None,
) -> None:
    before = stored(app)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    response = client.open(path.format(**existing), method=method, data=data,
                           content_type="application/json" if data is not None else None)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert (error["code"], error.get("details", {}).get("field")) == (code, field), error
    assert error["message"]
    assert stored(app) == before


NUL_CURSOR = base64.urlsafe_b64encode(b"2024-01-01T00:00:00+00:00|x\x00y").decode()


# The pages' forms, sent by a signed-in administrator (or, for /login, by nobody): path, form (None for
# a GET), and the status expected. Each of these was a 500 on PostgreSQL or on both databases.
BAD_FORMS = [
    pytest.param("/tokens", {"name": "ci\x00token"}, 422, id="token name with a NUL"),
    pytest.param("/tokens", {"name": "ci\ttoken"}, 422, id="token name with a tab"),
    pytest.param("/users", {"email": "nul\x00@example.com", "password": "long enough password"}, 422,
                 id="email with a NUL"),
    pytest.param("/login", {"email": "nul\x00@example.com", "password": "long enough password"}, 401,
                 id="signing in with a NUL in the email"),
    pytest.param("/jobs/new", {"name": "j", "retries": "0", "minutes": "inf"}, 422, id="job time limit inf"),
    pytest.param("/jobs/new", {"name": "j", "retries": "0", "minutes": "1e400"}, 422, id="job time limit 1e400"),
    pytest.param("/jobs/new", {"name": "j", "retries": "0", "minutes": "nan"}, 422, id="job time limit nan"),
    # A move button with a position that is no position: the form comes back as it was, nothing saved.
    pytest.param("/jobs/new", {"name": "j", "action": "up:\u00b2", "testIds": [str(uuid.uuid4())]}, 200,
                 id="moving the test at position superscript two"),
    pytest.param("/jobs/new", {"name": "j", "action": "down:" + "9" * 5_000, "testIds": [str(uuid.uuid4())]}, 200,
                 id="moving the test at a position of 5,000 digits"),
    pytest.param("/variables", {"name": "BLANK_SECRET", "value": " " * 12, "secret": "1"}, 422,
                 id="secret of spaces"),
    pytest.param(f"/runs?cursor={NUL_CURSOR}", None, 400, id="runs page with a NUL in the cursor's id"),
    pytest.param(f"/jobs/{{job}}?cursor={NUL_CURSOR}", None, 400, id="a job's runs with a NUL in the cursor's id"),
    pytest.param("/tests?cursor=garbage!", None, 400, id="tests page with a cursor that is no cursor"),
    pytest.param("/tests?cursor=" + cursor(f"{uuid.uuid4()}|a title with a NUL" + "\x00"), None, 400,
                 id="tests page with a NUL in the cursor's title"),
    pytest.param("/tests?q=%00", None, 400, id="tests page searching for a NUL"),
]


@pytest.mark.parametrize(("path", "form", "status"), BAD_FORMS)
def test_bad_form_input_is_refused_and_stores_nothing(
    app: Flask, existing: dict[str, str], path: str, form: dict[str, Any] | None, status: int,
) -> None:
    if path == "/login":
        browser = app.test_client(authorized=False)
        csrf = csrf_of(browser.get("/login").get_data(as_text=True))
    else:
        browser, csrf = signed_in(app, new_user(app, admin=True))
    before = stored(app)
    if form is None:
        response = browser.get(path.format(**existing))
    else:
        response = browser.post(path, data={**form, "csrf_token": csrf}, headers={"HX-Request": "true"})
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    assert stored(app) == before
