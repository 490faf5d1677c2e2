"""Variables and secrets: managed in the API and the UI, given to tests as environment variables,
a secret never shown again and absent from every stored file of a run that used it."""
from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import start_run, wait_for_run
from tests.s3server import S3Server
from tests.test_auth import new_user, signed_in
from tests.test_redact import leaks_in, opened

# With characters that reports escape (quotes, a backslash, an ampersand, non-ASCII), none that the
# page would parse as markup (the text shown would then be another string). Never in a script.
SECRET = f'pa55 "w0rd"\\ &é€-{uuid.uuid4().hex[:8]}'
PREFIX = SECRET.split(" ")[0]

USES_THEM = """import { test, expect } from '@playwright/test';

test('signs in with the secret', async ({ page }, testInfo) => {
  const password = process.env.SUPER_PASSWORD;
  expect(process.env.GREETING).toBe('hello from a variable');
  expect(password.length).toBe(%d);
  console.log('the password is ' + password);
  await page.setContent(`<h1>${process.env.GREETING}</h1><p id="password">${password}</p>`);
  await testInfo.attach('note', { body: 'password: ' + password, contentType: 'text/plain' });
  await test.step('sign in with ' + password, async () => {
    await expect(page.locator('#password'), 'the password is ' + password).toHaveText('wrong', { timeout: 500 });
  });
});
""" % len(SECRET)  # noqa: UP031 (braces are the script's own)


@pytest.mark.parametrize("body, field", [
    ({"name": "1ST", "value": "x"}, "name"),
    ({"name": "has-dash", "value": "x"}, "name"),
    ({"name": "PATH", "value": "/tmp"}, "name"),
    ({"name": "NODE_OPTIONS", "value": "--require=/tmp/x.js"}, "name"),
    ({"name": "home", "value": "x"}, "name"),
    ({"name": "SHORT_SECRET", "value": "1234567", "secret": True}, "value"),
    ({"name": "NOT_TEXT", "value": 42}, "value"),
    ({"name": "NOT_BOOL", "value": "x", "secret": "yes"}, "secret"),
    ({"value": "x"}, "name"),
])
def test_bad_variables_are_refused_and_nothing_is_saved(client: FlaskClient, body: dict[str, Any], field: str) -> None:
    response = client.post("/api/variables", json=body)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["error"]["details"]["field"] == field
    if isinstance(body.get("name"), str):
        assert client.get(f"/api/variables/{body['name']}").status_code == 404


def test_a_secret_is_never_shown_again_nor_made_plain(client: FlaskClient) -> None:
    name = f"TOKEN_{uuid.uuid4().hex[:6].upper()}"
    created = client.post("/api/variables", json={"name": name, "value": "s3cret-value-1", "secret": True})
    assert created.status_code == 201 and created.get_json()["value"] is None
    assert client.get(f"/api/variables/{name}").get_json() == {**created.get_json(), "value": None}
    listed = [item for item in client.get("/api/variables").get_json()["items"] if item["name"] == name]
    assert listed[0]["value"] is None and listed[0]["secret"] is True
    assert client.post("/api/variables", json={"name": name, "value": "other"}).status_code == 409
    refused = client.put(f"/api/variables/{name}", json={"secret": False})
    assert refused.status_code == 422 and refused.get_json()["error"]["details"]["field"] == "secret"
    assert client.put(f"/api/variables/{name}", json={"value": "s3cret-value-2"}).get_json()["value"] is None
    assert "s3cret-value" not in client.get("/api/variables").get_data(as_text=True)
    assert client.delete(f"/api/variables/{name}").get_json() == {"deleted": name}
    assert client.get(f"/api/variables/{name}").status_code == 404


def test_the_variables_page_adds_replaces_and_deletes_without_showing_a_secret(app: Flask) -> None:
    browser, csrf = signed_in(app, new_user(app))
    name = f"UI_SECRET_{uuid.uuid4().hex[:6].upper()}"
    added = browser.post("/variables", data={"name": name, "value": "shown-once-only", "secret": "1",
                                             "csrf_token": csrf})
    assert added.status_code == 303
    page = browser.get("/variables").get_data(as_text=True)
    assert name in page and "shown-once-only" not in page
    short = browser.post(f"/variables/{name}", data={"value": "short", "csrf_token": csrf})
    assert short.status_code == 422 and "at least 8 characters" in short.get_data(as_text=True)
    assert browser.post(f"/variables/{name}", data={"value": "replaced-value", "csrf_token": csrf}).status_code == 303
    assert "replaced-value" not in browser.get("/variables").get_data(as_text=True)
    assert browser.post(f"/variables/{name}", data={"action": "delete", "csrf_token": csrf}).status_code == 303
    assert name not in browser.get("/variables").get_data(as_text=True)


def test_a_secret_used_by_a_test_is_in_no_stored_file_of_its_run(
        app: Flask, client: FlaskClient, worker: object, s3: S3Server, settings: dict[str, str]) -> None:
    for body in ({"name": "GREETING", "value": "hello from a variable"},
                 {"name": "SUPER_PASSWORD", "value": SECRET, "secret": True}):
        assert client.post("/api/variables", json=body).status_code == 201
    try:
        run = wait_for_run(client, start_run(client, USES_THEM, "uses a secret")["runId"])
    finally:
        for name in ("GREETING", "SUPER_PASSWORD"):
            client.delete(f"/api/variables/{name}")
    # Failed where it was meant to: the variables arrived (the checks before it passed).
    assert run["status"] == "failed", run
    error = run["tests"][0]["error"]
    assert "[secret]" in error and "the password is [secret]" in error, error

    bucket = settings["S3_TEST_BUCKET_NAME"]
    keys = s3.keys(bucket, f"{run['id']}/")
    assert any(key.endswith(".zip") for key in keys) and any(key.endswith("index.html") for key in keys), keys
    objects = s3.client()
    files = [item for key in keys
             for item in opened(key, objects.get_object(Bucket=bucket, Key=key)["Body"].read())]
    assert any(b"[secret]" in data for _, data in files), "redaction left its mark somewhere"
    assert leaks_in(files, SECRET, PREFIX) == []
    stored_text = client.get(f"/api/runs/{run['id']}").get_data(as_text=True)
    assert leaks_in([("the run", stored_text.encode())], SECRET, PREFIX) == []
    assert re.search(r"\[secret\]", stored_text)
