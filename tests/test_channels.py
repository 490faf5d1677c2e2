"""Notification channels: the API, what the far ends receive from a test notification (a real HTTP
server, Apprise's json:// to it, a real SMTP server), and secrets at rest (encryption, the migration
that encrypts old values, key rotation)."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import text

from supertest.encryption import derived_key
from supertest.extensions import db
from supertest.models import Channel, Delivery
from supertest.services import notify, variables
from supertest.stack import free_port
from tests.conftest import make_app, scratch_database
from tests.farend import MailServer, WebhookServer
from tests.test_auth import new_user, signed_in


def add_channel(client: FlaskClient, kind: str, target: str, name: str | None = None) -> dict[str, Any]:
    response = client.post("/api/channels", json={"name": name or f"{kind} {uuid.uuid4().hex[:6]}", "type": kind,
                                                  "target": target})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def raw_column(app: Flask, table: str, column: str, row_id: str) -> str:
    with app.app_context():
        return db.session.execute(text(f"SELECT {column} FROM {table} WHERE id = :id"), {"id": row_id}).scalar_one()


@pytest.mark.parametrize(("body", "field"), [
    ({"type": "webhook", "target": "http://example.com/hook"}, "name"),
    ({"name": "x", "type": "pager", "target": "http://example.com"}, "type"),
    ({"name": "x", "target": "http://example.com"}, "type"),
    ({"name": "x", "type": "webhook", "target": "ftp://example.com/hook"}, "target"),
    ({"name": "x", "type": "webhook", "target": "javascript:alert(1)"}, "target"),
    ({"name": "x", "type": "webhook", "target": "https://"}, "target"),
    ({"name": "x", "type": "webhook"}, "target"),
    ({"name": "x", "type": "webhook", "target": "http://127.0.0.1:99999/hook"}, "target"),  # no such port
    ({"name": "x", "type": "webhook", "target": "http://[::1/hook"}, "target"),  # was a 500
    ({"name": "x", "type": "email", "target": "not an address"}, "target"),
    ({"name": "x", "type": "email", "target": "ops@example.com, nobody"}, "target"),
    ({"name": "x", "type": "email", "target": " , "}, "target"),
    ({"name": "x", "type": "apprise", "target": "nosuchservice://token"}, "target"),
    ({"name": "x", "type": "apprise", "target": 42}, "target"),
])
def test_bad_channel_input_is_422_naming_the_field(client: FlaskClient, body: dict[str, Any], field: str) -> None:
    response = client.post("/api/channels", json=body)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["error"]["details"]["field"] == field


def test_a_webhook_channel_shows_its_secret_once_and_its_target_never(app: Flask, client: FlaskClient) -> None:
    created = add_channel(client, "webhook", "https://hooks.example.com/a/very/secret/path?key=abc", "deploys")
    assert len(created["secret"]) >= 40 and created["target"] is None
    assert created["targetHint"] == "https://hooks.example.com"
    again = client.get(created["url"]).get_json()
    assert "secret" not in again and again["target"] is None and again["name"] == "deploys"
    listed = {item["id"]: item for item in client.get("/api/channels").get_json()["items"]}
    assert created["id"] in listed and "secret/path" not in json.dumps(listed)
    # Renamed, same target; then a new target; the type stays.
    assert client.put(created["url"], json={"name": "releases"}).get_json()["name"] == "releases"
    assert client.put(created["url"], json={"target": "http://other.example.com/x"}).get_json()["targetHint"] == \
        "http://other.example.com"
    assert client.put(created["url"], json={"type": "email"}).status_code == 422
    # At rest: neither the target nor the secret is in the row as written.
    for column, plain in (("target", "other.example.com"), ("secret", created["secret"])):
        stored = raw_column(app, "channels", column, created["id"])
        assert plain not in stored and stored.startswith("gAAAA")
    email = add_channel(client, "email", "oncall@example.com,  lead@example.org")
    assert "secret" not in email and email["targetHint"] == "o…@example.com, l…@example.org"
    assert client.delete(created["url"]).status_code == 200
    assert client.get(created["url"]).status_code == 404


def test_only_administrators_change_channels(app: Flask) -> None:
    member, csrf = signed_in(app, new_user(app))
    headers = {"X-CSRFToken": csrf}
    assert member.get("/api/channels").status_code == 200
    assert member.post("/api/channels", json={"name": "x", "type": "webhook", "target": "http://example.com"},
                       headers=headers).status_code == 403
    assert member.get("/channels").status_code == 403
    assert member.get("/alerts").status_code == 200


def test_a_test_notification_reaches_a_webhook_signed_and_says_what_it_answered(
        client: FlaskClient, webhooks: WebhookServer) -> None:
    channel = add_channel(client, "webhook", f"{webhooks.url}/ok/signed")
    answer = client.post(f"{channel['url']}/test").get_json()
    assert answer == {"delivered": True, "detail": "HTTP 200 OK: thanks"}
    [request] = webhooks.at("/ok/signed")
    assert request.headers["Content-Type"] == "application/json"
    expected = hmac.new(channel["secret"].encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Supertest-Signature"] == f"sha256={expected}"
    body = json.loads(request.body)
    assert body["event"] == "test" and body["run"] is None and set(body) == {"event", "job", "run", "scheduledFor",
                                                                             "links"}
    failing = add_channel(client, "webhook", f"{webhooks.url}/fail/now")
    assert client.post(f"{failing['url']}/test").get_json() == {"delivered": False, "detail": "HTTP 500 "
                                                                "Internal Server Error: it broke"}
    refused = add_channel(client, "webhook", f"http://127.0.0.1:{free_port()}/nobody")
    answer = client.post(f"{refused['url']}/test").get_json()
    assert answer["delivered"] is False and "could not connect" in answer["detail"]


def test_a_webhook_whose_body_never_ends_is_not_waited_for(client: FlaskClient, webhooks: WebhookServer) -> None:
    channel = add_channel(client, "webhook", f"{webhooks.url}/trickle/for-ever")
    started = time.monotonic()
    answer = client.post(f"/api/channels/{channel['id']}/test").get_json()
    # NOTIFY_TIMEOUT_SECONDS is 2 here: the body's start is read until then, not for the minute it lasts.
    assert time.monotonic() - started < 8
    assert answer["delivered"] is True and answer["detail"].startswith("HTTP 200 OK: ...")


def test_a_webhook_url_that_requests_cannot_parse_is_not_quoted_in_the_detail() -> None:
    """The detail shows on the Alerts page to every user; a webhook URL's path and password are its secret."""
    alert = notify.Alert({}, "subject", "text", "html")
    delivered, detail = notify.send("webhook", "http://user:hunter2@127.0.0.1:99999/hook/T0KEN", "s", alert,
                                    notify.Transport(timeout=1))
    assert not delivered and "hunter2" not in detail and "T0KEN" not in detail, detail


def test_a_test_notification_goes_through_apprise(client: FlaskClient, webhooks: WebhookServer) -> None:
    channel = add_channel(client, "apprise", f"json://127.0.0.1:{webhooks.url.rsplit(':', 1)[1]}/ok/apprise")
    assert "secret" not in channel and channel["targetHint"] == "json://…"
    answer = client.post(f"{channel['url']}/test").get_json()
    assert answer["delivered"] is True, answer
    [request] = webhooks.at("/ok/apprise")
    assert "sent a test notification" in json.loads(request.body)["title"]


def test_a_test_notification_is_mailed_as_plain_text_and_html(client: FlaskClient, mail: MailServer) -> None:
    channel = add_channel(client, "email", "oncall@example.com, lead@example.org")
    answer = client.post(f"{channel['url']}/test").get_json()
    assert answer["delivered"] is True and "accepted the mail for 2 recipient(s)" in answer["detail"], answer
    message = mail.messages[-1]
    assert message["To"] == "oncall@example.com, lead@example.org"
    assert "sent a test notification" in message["Subject"]
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and "sent a test notification" in plain.get_content()
    assert html is not None and "<h2>" in html.get_content()


@pytest.mark.parametrize("target", ["refused.one@example.com", "refused.one@example.com, ok@example.com"])
def test_refused_addresses_are_masked_in_what_the_far_end_said(client: FlaskClient, mail: MailServer,
                                                               target: str) -> None:
    """The detail is on the Alerts page for every user; the addresses are as masked there as in the hint."""
    channel = add_channel(client, "email", target)
    answer = client.post(f"{channel['url']}/test").get_json()
    assert answer["delivered"] is False and "r…@example.com" in answer["detail"], answer
    assert "refused.one" not in answer["detail"]


def test_a_channel_whose_last_deliveries_failed_is_marked_failing(app: Flask, client: FlaskClient) -> None:
    channel = add_channel(client, "webhook", "http://example.com/flaky")
    with app.app_context():
        db.session.add_all(Delivery(event="failed", channel_id=channel["id"], state=state, attempts=3)
                           for state in ("sent", "failed", "failed"))
        db.session.commit()
    assert client.get(channel["url"]).get_json()["failing"] is False
    with app.app_context():
        db.session.add(Delivery(event="failed", channel_id=channel["id"], state="failed", attempts=3))
        db.session.commit()
    assert client.get(channel["url"]).get_json()["failing"] is True
    assert 'title="Its last deliveries all failed">failing' in client.get("/channels").get_data(as_text=True)


def test_a_secret_variable_is_encrypted_at_rest(app: Flask, client: FlaskClient) -> None:
    name = f"TOKEN_{uuid.uuid4().hex[:6]}"
    assert client.post("/api/variables", json={"name": name, "value": "hunter2-hunter2", "secret": True}
                       ).status_code == 201
    with app.app_context():
        stored = db.session.execute(text("SELECT value FROM variables WHERE name = :n"), {"n": name}).scalar_one()
        assert "hunter2" not in stored
        assert dict(variables.for_run()[0])[name] == "hunter2-hunter2"


@pytest.fixture()
def fresh_database(tmp_path, settings: dict[str, str]) -> Iterator[str]:
    """An empty database of the session's kind, for migrating and rotating without touching the shared one."""
    with scratch_database("supertest_fresh", tmp_path) as url:
        yield url


def test_the_migration_encrypts_old_values_and_rotation_moves_them_to_the_new_key(
        settings: dict[str, str], fresh_database: str) -> None:
    old = make_app({**settings, "DATABASE_URL": fresh_database})
    with old.app_context():
        upgrade(revision="fc68189d3d9a")  # before channels: variable values were plain
        db.session.execute(text("INSERT INTO variables (id, name, value, secret, created_at, updated_at) VALUES "
                                "('v1', 'API_TOKEN', 'plain-secret-value', :t, :now, :now)"),
                           {"t": True, "now": "2026-11-01 00:00:00"})
        db.session.commit()
        upgrade()
        stored = db.session.execute(text("SELECT value FROM variables WHERE id = 'v1'")).scalar_one()
        assert "plain-secret-value" not in stored
        assert variables.get("API_TOKEN").value == "plain-secret-value"
        db.session.add(Channel(name="hook", type="webhook", target="http://example.com/x", secret="s3cret-s3cret"))
        db.session.commit()

    new_key = Fernet.generate_key().decode()
    rotated = make_app({**settings, "DATABASE_URL": fresh_database, "ENCRYPTION_KEY": new_key})
    result = rotated.test_cli_runner().invoke(args=["rotate-encryption-key"])
    assert result.exit_code == 0 and "Re-encrypted 3 value(s)" in result.output, result.output
    with rotated.app_context():
        rows = db.session.execute(text("SELECT value FROM variables UNION ALL SELECT target FROM channels "
                                       "UNION ALL SELECT secret FROM channels")).scalars().all()
    assert sorted(Fernet(new_key).decrypt(row.encode()).decode() for row in rows) == [
        "http://example.com/x", "plain-secret-value", "s3cret-s3cret"]
    # The old key (SECRET_KEY's) no longer opens them: it can be dropped.
    with pytest.raises(InvalidToken):
        Fernet(derived_key(settings["SECRET_KEY"])).decrypt(rows[0].encode())
    # A key that is not a Fernet key stops the app at start, naming the setting.
    with pytest.raises(ValueError, match="ENCRYPTION_KEY: key 2 is not a Fernet key"):
        make_app({**settings, "ENCRYPTION_KEY": f"{new_key},not-a-key"})
