"""Signing in and out, the first-run page, users (admins only) and API tokens."""
from __future__ import annotations

from flask import Blueprint, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from supertest.auth import admin_required, safe_next
from supertest.errors import NotFound, Problem
from supertest.services import accounts, ratelimit
from supertest.services.validation import ValidationError, is_id
from supertest.views.responses import found, go

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if not accounts.any_user():
        return redirect(url_for("auth.setup"))
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("account/login.html", next=target)
    email, address = request.form.get("email", ""), request.remote_addr or "unknown"
    wait = ratelimit.wait_seconds(email, address)
    if wait:
        message = f"Too many failed sign-ins. Try again in {(wait + 59) // 60} minute(s)."
        return render_template("account/login.html", next=target, email=email, error=message), 429, \
            {"Retry-After": str(wait)}
    user = accounts.check_password(email, request.form.get("password", ""))
    if user is None:
        ratelimit.failed(email, address)
        return render_template("account/login.html", next=target, email=email,
                               error="Wrong email or password, or the account is disabled."), 401
    ratelimit.succeeded(email, address)
    _sign_in(user)
    return redirect(target, 303)


@bp.post("/logout")
def logout():
    logout_user()
    _forget_session()
    return go(url_for("auth.login"))


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    """The first admin, for whoever starts a fresh install; gone as soon as any user exists."""
    if accounts.any_user():
        raise NotFound("This install has its first administrator already; sign in instead.")
    if request.method == "GET":
        return render_template("account/setup.html")
    email = request.form.get("email", "")
    try:
        user = accounts.create_user(email, request.form.get("password", ""), admin=True)
    except ValidationError as error:
        return render_template("account/setup.html", email=email, error=error.message), error.status
    _sign_in(user)
    return redirect(url_for("pages.home"), 303)


def _sign_in(user: accounts.User) -> None:
    _forget_session()  # nothing from before signing in carries over (a fixed session, an old CSRF token)
    login_user(user)


def _forget_session() -> None:
    session.clear()
    g.pop("csrf_token", None)  # Flask-WTF caches the token in g; that one belonged to the cleared session


@bp.route("/users", methods=["GET", "POST"])
@admin_required
def users():
    error, status, form = None, 200, {}
    if request.method == "POST":
        form = {"email": request.form.get("email", ""), "admin": bool(request.form.get("admin"))}
        try:
            accounts.create_user(form["email"], request.form.get("password", ""), admin=form["admin"])
            return go(url_for("auth.users"))
        except ValidationError as error_:
            error, status = error_.message, error_.status
    return render_template("account/users.html", users=accounts.list_users(), error=error, form=form), status


@bp.post("/users/<user_id>/active")
@admin_required
def set_active(user_id: str):
    user = found(accounts.get_user, user_id, "user")
    if user.id == current_user.id:
        raise Problem("You cannot disable your own account.", status=409, code="conflict")
    accounts.set_active(user, request.form.get("active") == "1")
    return go(url_for("auth.users"))


@bp.route("/tokens", methods=["GET", "POST"])
def tokens():
    """The signed-in user's tokens; a new one is shown on the page that creates it, and never again."""
    error, status, created = None, 200, None
    if request.method == "POST":
        try:
            _, created = accounts.create_token(current_user, request.form.get("name", ""))
            status = 201
        except ValidationError as error_:
            error, status = error_.message, error_.status
    return render_template("account/tokens.html", tokens=current_user.tokens, created=created, error=error), status


@bp.post("/tokens/<token_id>/revoke")
def revoke(token_id: str):
    if not is_id(token_id) or accounts.revoke_token(current_user, token_id) is None:
        raise NotFound("You have no such token.")
    return go(url_for("auth.tokens"))
