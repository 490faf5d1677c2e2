"""Access control: every route needs a session or a token (the table walks the app's own URL map, so a
new route is covered the day it is added), CSRF on every change made with a session, tokens, users,
the first-run page, the command line and the sign-in rate limit."""
from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import select, update

from supertest import config
from supertest.auth import PUBLIC, REPORT_ORIGIN_ONLY
from supertest.extensions import db
from supertest.models import ApiToken, User, utcnow
from supertest.services import accounts
from supertest.stack import process_env
from tests.conftest import make_app
from tests.helpers import PASSING, save_test

PASSWORD = "correct horse battery"
MADE_UP = "st_0123456789abcdef_" + "A" * 43
SAMPLE_ARGS = {"path": "index.html", "name": "htmx.js", "filename": "app.css", "index": 0}


def new_user(app: Flask, admin: bool = False, password: str = PASSWORD) -> str:
    email = f"user-{uuid.uuid4().hex[:8]}@example.com"
    with app.app_context():
        accounts.create_user(email, password, admin=admin)
    return email


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match[1]


def signed_in(app: Flask, email: str, password: str = PASSWORD) -> tuple[FlaskClient, str]:
    """A browser-like client: no token, a session cookie from the login form; and its CSRF token."""
    client = app.test_client(authorized=False)
    page = client.get("/login")
    response = client.post("/login", data={"email": email, "password": password,
                                           "csrf_token": csrf_of(page.get_data(as_text=True))})
    assert response.status_code == 303, response.get_data(as_text=True)
    return client, csrf_of(client.get("/tokens").get_data(as_text=True))


def new_token(app: Flask, email: str) -> str:
    with app.app_context():
        return accounts.create_token(accounts.by_email(email), "a test token")[1]


def every_protected_request(app: Flask) -> list[tuple[str, str, str]]:
    """(method, url, endpoint) for every rule of the app outside PUBLIC, with ids that exist nowhere."""
    requests = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC or rule.endpoint == REPORT_ORIGIN_ONLY:  # that one: test_report_isolation
            continue
        args = {name: SAMPLE_ARGS.get(name, str(uuid.uuid4())) for name in rule.arguments}
        with app.test_request_context():
            url = app.url_for(rule.endpoint, **args)
        requests += [(method, url, rule.endpoint) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return requests


def test_every_route_refuses_no_credentials_a_made_up_token_and_a_revoked_one(app: Flask) -> None:
    table = every_protected_request(app)
    endpoints = {endpoint for _, _, endpoint in table}
    # The table is the URL map itself; make sure it holds what matters most.
    assert {"events.run_events", "reports.report_file", "api.run_playground_test", "pages.home",
            "auth.tokens", "auth.users", "auth.logout"} <= endpoints, endpoints
    revoked = new_token(app, new_user(app))
    with app.app_context():
        token = db.session.scalar(select(ApiToken).where(ApiToken.lookup == revoked.split("_")[1]))
        accounts.revoke_token(token.user, token.id)

    anonymous = app.test_client(authorized=False)
    for method, url, _endpoint in table:
        for headers in ({}, {"Authorization": f"Bearer {MADE_UP}"}, {"Authorization": f"Bearer {revoked}"},
                        {"Authorization": "Basic dXNlcjpwYXNz"}):
            response = anonymous.open(url, method=method, headers=headers)
            where = f"{method} {url} with {headers or 'no credentials'}"
            if url.startswith("/api/") or headers or url == "/metrics":  # Prometheus: 401, never a login page
                assert response.status_code == 401, where
                assert response.get_json()["error"]["code"] in ("unauthenticated", "invalid_token"), where
            else:
                assert response.status_code == 302, where
                assert response.headers["Location"].startswith("/login?next="), where
    assert len(table) > 40, len(table)


def test_public_routes_answer_without_credentials(app: Flask) -> None:
    anonymous = app.test_client(authorized=False)
    assert anonymous.get("/api/health").status_code == 200
    assert anonymous.get("/login").status_code == 200
    assert anonymous.get("/static/app.css").status_code == 200
    assert anonymous.get("/vendor/htmx.js").status_code == 200
    assert anonymous.get("/").headers["Location"] == "/login?next=/"


def test_a_page_asked_by_htmx_without_a_session_sends_htmx_to_login(app: Flask) -> None:
    response = app.test_client(authorized=False).get("/runs", headers={"HX-Request": "true"})
    assert response.status_code == 401 and response.headers["HX-Redirect"].startswith("/login")


def test_tokens_made_in_the_ui_work_until_revoked_and_show_when_used(app: Flask) -> None:
    client, csrf = signed_in(app, new_user(app))
    page = client.post("/tokens", data={"name": "CI on main", "csrf_token": csrf})
    assert page.status_code == 201
    token = re.search(r'id="new-token">(st_[^<]+)<', page.get_data(as_text=True))[1]
    assert "never" in client.get("/tokens").get_data(as_text=True)  # not used yet
    assert token not in client.get("/tokens").get_data(as_text=True)  # shown once

    api = app.test_client(authorized=False)
    assert api.get("/api/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    listing = client.get("/tokens").get_data(as_text=True)
    assert "just now" in listing.split("CI on main")[1].split("</tr>")[0]  # last used

    with app.app_context():  # kept hashed: neither the token nor its secret is in the database
        row = db.session.scalar(select(ApiToken).where(ApiToken.name == "CI on main"))
        assert token.split("_")[2] not in (row.secret_hash, row.lookup) and len(row.secret_hash) == 64
        token_id = row.id
    assert client.post(f"/tokens/{token_id}/revoke", data={"csrf_token": csrf}).status_code == 303
    response = api.get("/api/runs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "invalid_token"


def test_a_token_revoked_by_another_process_stops_once_its_check_is_stale(app: Flask) -> None:
    token = new_token(app, new_user(app))
    api = app.test_client(authorized=False)
    headers = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/runs", headers=headers).status_code == 200  # checked, and remembered a while
    with app.app_context():  # as another web process would: this one is not told
        db.session.execute(update(ApiToken).where(ApiToken.lookup == token.split("_")[1]).values(revoked_at=utcnow()))
        db.session.commit()
    time.sleep(accounts.TOKEN_SECONDS + 0.1)
    response = api.get("/api/runs", headers=headers)
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "invalid_token"


def test_what_a_process_remembers_of_good_tokens_stays_small(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """One good token sent with ever other spaces around it (the header allows them) is one token,
    not one more to remember each time."""
    token = new_token(app, new_user(app))
    monkeypatch.setattr(accounts, "TOKEN_SECONDS", 3600)  # nothing goes stale while this runs
    accounts.forget_checked_tokens()
    try:
        with app.app_context():
            user_id = accounts.user_id_for_token(token)
            assert user_id is not None
            for spaces in range(1, accounts.MAX_CHECKED + 100):
                assert accounts.user_id_for_token(" " * spaces + token) == user_id
            assert len(accounts._checked) == 1
    finally:
        accounts.forget_checked_tokens()

def test_a_session_with_a_bad_token_is_still_refused(app: Flask) -> None:
    client, _ = signed_in(app, new_user(app))
    assert client.get("/api/runs").status_code == 200
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {MADE_UP}"}).status_code == 401


def test_changes_with_a_session_need_the_csrf_token(app: Flask) -> None:
    client, csrf = signed_in(app, new_user(app))
    test_id = save_test(app.test_client(), "csrf target", PASSING)
    for refused in (client.post(f"/tests/{test_id}/delete"),
                    client.post(f"/tests/{test_id}/delete", data={"csrf_token": "forged"}),
                    client.post("/api/tests", json={"title": "x", "script": PASSING}),
                    client.post("/logout")):
        assert refused.status_code == 400, refused.get_data(as_text=True)
    assert "CSRF" in client.post(f"/tests/{test_id}/delete").get_data(as_text=True)
    api_refusal = client.post("/api/tests", json={"title": "x", "script": PASSING}).get_json()
    assert api_refusal["error"]["code"] == "csrf_failed"
    assert app.test_client().get(f"/api/tests/{test_id}").status_code == 200  # nothing happened

    # The same requests with the token: in the form, or in the header htmx sends.
    created = client.post("/api/tests", json={"title": "x", "script": PASSING}, headers={"X-CSRFToken": csrf})
    assert created.status_code == 201
    deleted = client.post(f"/tests/{test_id}/delete", headers={"X-CSRFToken": csrf, "HX-Request": "true"})
    assert deleted.status_code == 204 and app.test_client().get(f"/api/tests/{test_id}").status_code == 404
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    assert client.get("/runs").status_code == 302  # signed out


def test_signing_in_needs_its_csrf_token_too(app: Flask) -> None:
    email = new_user(app)
    response = app.test_client(authorized=False).post("/login", data={"email": email, "password": PASSWORD})
    assert response.status_code == 400


def test_sign_in_is_rate_limited_per_account(app: Flask) -> None:
    email = new_user(app)
    client = app.test_client(authorized=False)
    csrf = csrf_of(client.get("/login").get_data(as_text=True))
    for _ in range(app.config["LOGIN_MAX_ATTEMPTS"]):
        wrong = client.post("/login", data={"email": email, "password": "wrong password", "csrf_token": csrf})
        assert wrong.status_code == 401 and "Wrong email or password" in wrong.get_data(as_text=True)
    blocked = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf})
    assert blocked.status_code == 429, "the right password must wait too, or guessing goes on"
    assert 800 < int(blocked.headers["Retry-After"]) <= 900
    assert "Too many failed sign-ins" in blocked.get_data(as_text=True)
    signed_in(app, new_user(app))  # another account from the same address still signs in


def test_passwords_are_hashed_and_a_wrong_one_or_a_disabled_account_cannot_sign_in(app: Flask) -> None:
    admin_email, member_email = new_user(app, admin=True), new_user(app)
    with app.app_context():
        stored = accounts.by_email(member_email).password_hash
    assert PASSWORD not in stored and stored.split(":")[0] in ("scrypt", "pbkdf2")

    member, member_csrf = signed_in(app, member_email)
    token = new_token(app, member_email)
    assert member.get("/users").status_code == 403  # members do not manage users

    admin, csrf = signed_in(app, admin_email)
    with app.app_context():
        member_id = accounts.by_email(member_email).id
    assert admin.post(f"/users/{member_id}/active", data={"active": "0", "csrf_token": csrf}).status_code == 303
    assert "disabled" in admin.get("/users").get_data(as_text=True)
    # Disabled: the open session ends, the token stops, and signing in fails.
    assert member.get("/runs").status_code == 302
    assert app.test_client(authorized=False).get(
        "/api/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    with pytest.raises(AssertionError):
        signed_in(app, member_email)
    assert admin.post(f"/users/{member_id}/active", data={"active": "1", "csrf_token": csrf}).status_code == 303
    signed_in(app, member_email)

    with app.app_context():
        admin_id = accounts.by_email(admin_email).id
    assert admin.post(f"/users/{admin_id}/active", data={"active": "0", "csrf_token": csrf}).status_code == 409


def test_admins_add_users_in_the_ui(app: Flask) -> None:
    admin, csrf = signed_in(app, new_user(app, admin=True))
    email = f"new-{uuid.uuid4().hex[:6]}@example.com"
    short = admin.post("/users", data={"email": email, "password": "short", "csrf_token": csrf})
    assert short.status_code == 422 and "at least 10 characters" in short.get_data(as_text=True)
    assert admin.post("/users", data={"email": email, "password": PASSWORD, "csrf_token": csrf}).status_code == 303
    again = admin.post("/users", data={"email": email.upper(), "password": PASSWORD, "csrf_token": csrf})
    assert again.status_code == 409 and "already has an account" in again.get_data(as_text=True)
    signed_in(app, email)


def test_after_signing_in_only_a_local_page_is_next(app: Flask) -> None:
    email = new_user(app)
    for target, expected in (("/runs?status=failed", "/runs?status=failed"), ("//evil.example/x", "/"),
                             ("https://evil.example/", "/"), ("/\\evil.example", "/")):
        client = app.test_client(authorized=False)
        csrf = csrf_of(client.get("/login").get_data(as_text=True))
        response = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf,
                                               "next": target})
        assert response.headers["Location"] == expected, target


@pytest.fixture()
def empty_install(tmp_path: Path, settings: dict[str, str]) -> tuple[Flask, dict[str, str]]:
    """A deployment nobody has used yet: a database of its own with no users."""
    own = {**settings, "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
    app = make_app(own)
    with app.app_context():
        upgrade()
    return app, own


def test_the_first_run_page_makes_the_first_admin_and_then_is_gone(empty_install) -> None:
    app, _ = empty_install
    client = app.test_client(authorized=False)
    assert client.get("/").headers["Location"].startswith("/login")
    assert client.get("/login").headers["Location"] == "/setup"
    csrf = csrf_of(client.get("/setup").get_data(as_text=True))
    weak = client.post("/setup", data={"email": "first@example.com", "password": "short", "csrf_token": csrf})
    assert weak.status_code == 422
    made = client.post("/setup", data={"email": "first@example.com", "password": PASSWORD, "csrf_token": csrf})
    assert made.status_code == 303
    assert "first@example.com" in client.get("/").get_data(as_text=True)  # signed in
    with app.app_context():
        assert db.session.scalar(select(User)).is_admin
    assert client.get("/setup").status_code == 404
    late = app.test_client(authorized=False)
    assert late.post("/setup", data={"email": "second@example.com", "password": PASSWORD}).status_code in (400, 404)
    with app.app_context():
        assert accounts.by_email("second@example.com") is None


def test_the_command_line_makes_an_admin_and_a_token(empty_install) -> None:
    app, own = empty_install
    env = {**process_env(own), "FLASK_APP": "wsgi"}
    flask = [str(Path(os.environ.get("VIRTUAL_ENV", ".venv")) / "bin" / "flask"), "--app", "wsgi"]
    created = subprocess.run([*flask, "users", "create", "Ops@Example.com", "--admin", "--password-stdin"],
                             input=PASSWORD + "\n", env=env, capture_output=True, text=True, cwd=config.PROJECT_ROOT)
    assert created.returncode == 0, created.stderr
    assert PASSWORD not in created.stdout + created.stderr
    duplicate = subprocess.run([*flask, "users", "create", "ops@example.com", "--password-stdin"],
                               input=PASSWORD + "\n", env=env, capture_output=True, text=True, cwd=config.PROJECT_ROOT)
    assert duplicate.returncode != 0 and "already has an account" in duplicate.stderr

    issued = subprocess.run([*flask, "tokens", "create", "ops@example.com", "--name", "CI"],
                            env=env, capture_output=True, text=True, cwd=config.PROJECT_ROOT)
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip().splitlines()[-1]
    api = app.test_client(authorized=False)
    assert api.get("/api/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    signed_in(app, "ops@example.com")


def test_an_unknown_api_path_is_404_json_with_or_without_credentials(app: Flask) -> None:
    for client in (app.test_client(), app.test_client(authorized=False)):
        response = client.post("/api/no-such-thing", json={})
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
