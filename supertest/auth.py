"""Who is asking: a browser session (Flask-Login, with CSRF on every change) or an API token.

Every request needs one or the other, except the few endpoints in PUBLIC. Checked once, before any
view runs, so a new view cannot forget it.
"""
from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, g, redirect, request, url_for
from flask_login import AnonymousUserMixin, LoginManager, current_user
from flask_wtf.csrf import CSRFProtect, generate_csrf
from markupsafe import Markup, escape
from werkzeug.local import LocalProxy

from supertest.errors import Problem
from supertest.services import accounts, report_links

login_manager = LoginManager()
csrf = CSRFProtect()
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Reached without signing in; each still has CSRF checked on a change where a session could be involved.
PUBLIC = frozenset({"static", "vendor.vendor_file", "ci.client", "api.health", "auth.login", "auth.setup"})
REPORT_ORIGIN_ONLY = "reports.signed_file"  # the signed link is its own permission
METRICS = "operations.metrics"  # also METRICS_TOKEN's, and never a login page: Prometheus gets a 401


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    csrf.init_app(app)
    login_manager.user_loader(_active_user)
    app.before_request(authenticate)
    # A plain form's CSRF field; htmx requests send the same token in a header (see base.html).
    app.jinja_env.globals["csrf_field"] = lambda: Markup(
        f'<input type="hidden" name="csrf_token" value="{escape(generate_csrf())}">')


def _active_user(user_id: str) -> Any:
    user = accounts.get_user(user_id)
    return user if user is not None and user.active else None  # a disabled user's session ends at once


def authenticate() -> Any:
    # The reports origin serves signed report links and nothing else, and the app's origin never
    # serves them: a report's script must not share an origin with the app's pages.
    if report_links.on_reports_origin() != (request.endpoint == REPORT_ORIGIN_ONLY):
        abort(404)
    if request.endpoint == REPORT_ORIGIN_ONLY:
        return None
    if request.endpoint is None:  # no such page (404) or method (405): nothing to protect
        return None
    if request.endpoint in PUBLIC:  # signing in is a change too: a forged login would sign you in as someone else
        if request.method not in SAFE_METHODS:
            csrf.protect()
        return None
    header = request.headers.get("Authorization")
    if request.endpoint == METRICS and _metrics_token(header):
        g.metrics_token = True  # Prometheus's own token: /metrics and nothing else
        return None
    if header is not None:
        scheme, _, token = header.partition(" ")
        user_id = accounts.user_id_for_token(token) if scheme.lower() == "bearer" else None
        if user_id is None:
            return _refuse("invalid_token", "The API token is not valid: made up, revoked, or its user is disabled.")
        # Flask-Login's user for this request only: a token never starts a session. Browsers do not
        # add this header on their own, so a token request cannot be forged by another site: no CSRF.
        # Read from the database only if the request looks at it (a stream or a report file does not).
        g._login_user = LocalProxy(functools.cache(lambda: accounts.get_user(user_id) or AnonymousUserMixin()))
        g.by_token = True
        return None
    if not current_user.is_authenticated:
        return _refuse("unauthenticated", "Sign in, or send Authorization: Bearer <api token>.")
    if _from_another_site():
        abort(403, "A request from another site (or a report) cannot use your session.")
    if request.method not in SAFE_METHODS:
        csrf.protect()
    return None


def _metrics_token(header: str | None) -> bool:
    """Whether the request carries METRICS_TOKEN as its bearer token (never when that is unset)."""
    expected = current_app.config["METRICS_TOKEN"]
    scheme, _, token = (header or "").partition(" ")
    return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), expected.encode())


def _from_another_site() -> bool:
    """Fetch metadata (sent by current browsers): a session only serves requests that this site's own
    pages make, and plain link-following. Reports live on another origin of the same site, so
    `same-site` is refused as well: their script can neither read the app nor act with the session."""
    site = request.headers.get("Sec-Fetch-Site")
    if site in (None, "same-origin", "none"):
        return False
    navigating = request.headers.get("Sec-Fetch-Mode") == "navigate" and request.method in SAFE_METHODS \
        and request.headers.get("Sec-Fetch-Dest") == "document"
    return not navigating


class Unauthenticated(Problem):
    status, title = 401, "Sign in"
    headers = {"WWW-Authenticate": 'Bearer realm="supertest"'}


def _refuse(code: str, message: str) -> Any:
    """401 JSON for the API and for any bad token (only scripts send one); the login page for a person."""
    if request.path.startswith("/api/") or code == "invalid_token" or request.endpoint == METRICS:
        raise Unauthenticated(message, code=code)
    login = url_for("auth.login", next=request.full_path.rstrip("?"))
    if request.headers.get("HX-Request"):
        return "", 401, {"HX-Redirect": login}
    return redirect(login)


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)
    return guarded


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only, never another site (an open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target \
            and not urlsplit(target).netloc:
        return target
    return url_for("pages.home")
