"""Users and their API tokens: creating them, checking a password or a token, disabling and revoking."""
from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import threading
import time
from datetime import timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload
from werkzeug.security import check_password_hash, generate_password_hash

from supertest.extensions import db
from supertest.models import ApiToken, User, as_utc, utcnow
from supertest.services.validation import ValidationError

MIN_PASSWORD = 10
LAST_USED_PRECISION = timedelta(minutes=1)
# Both checked with fullmatch, never `match` with `$`, which lets a final newline through. No control
# characters in an email: PostgreSQL cannot even compare a string with a NUL in it.
EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
TOKEN = re.compile(r"st_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
# Asked by every API request (thousands of SSE streams opening at once): built once, and the user
# comes in the same query.
TOKEN_WITH_USER = select(ApiToken).options(joinedload(ApiToken.user)).where(ApiToken.lookup == bindparam("lookup"))
# How long this process takes a token it has checked to be good without asking the database again:
# thousands of streams opened with one token at once cost a lookup a second, not one each (and no
# database connection at all). So a token revoked, or its user disabled, by another web process
# may still be taken for this long; in the process that did it, not at all.
TOKEN_SECONDS = 1.0
_checked: dict[bytes, tuple[float, str]] = {}  # SHA-256 of a whole token → (monotonic deadline, its user's id)
MAX_CHECKED = 1000
_checked_lock = threading.Lock()
_forgotten = 0  # how many times _checked was cleared: a check under way across a clear is not kept


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the email is unknown, so a wrong email costs as long as a wrong password."""
    return generate_password_hash("not a password of anyone's")


def any_user() -> bool:
    return (db.session.scalar(select(func.count()).select_from(User)) or 0) > 0


def get_user(user_id: str) -> User | None:
    return db.session.get(User, user_id)


def by_email(email: str) -> User | None:
    """The user with that email; None for an email no account could have, without a query."""
    email = email.strip().lower()
    return db.session.scalar(select(User).where(User.email == email)) if EMAIL.fullmatch(email) else None


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.email)))


def create_user(email: str, password: str, admin: bool = False) -> User:
    email = email.strip().lower()
    if not EMAIL.fullmatch(email) or len(email) > 254:
        raise ValidationError("email must look like name@example.com", "email")
    if len(password) < MIN_PASSWORD:
        raise ValidationError(f"password must be at least {MIN_PASSWORD} characters long", "password")
    if by_email(email) is not None:
        raise ValidationError(f"{email} already has an account", "email", status=409, code="conflict")
    user = User(email=email, password_hash=generate_password_hash(password), is_admin=admin)
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:  # the same email, added a moment ago by someone else
        db.session.rollback()
        raise ValidationError(f"{email} already has an account", "email", status=409, code="conflict") from None
    return user


def check_password(email: str, password: str) -> User | None:
    """The active user with this email and password, or None (wrong either way, or disabled)."""
    user = by_email(email)
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return None
    if not check_password_hash(user.password_hash, password) or not user.active:
        return None
    user.last_login_at = utcnow()
    db.session.commit()
    return user


def set_active(user: User, active: bool) -> None:
    user.active = active
    db.session.commit()
    forget_checked_tokens()


def create_token(user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for `user`; the plain token is returned this once and never stored."""
    name = name.strip()
    if not name or len(name) > 100 or CONTROL.search(name):
        raise ValidationError("a token needs a name of 1 to 100 characters, without control characters", "name")
    lookup, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    token = ApiToken(user=user, name=name, lookup=lookup, secret_hash=_digest(secret))
    db.session.add(token)
    db.session.commit()
    return token, f"st_{lookup}_{secret}"


def user_for_token(presented: str) -> User | None:
    """The active user a live token belongs to, or None for a made-up, revoked or malformed one."""
    match = TOKEN.fullmatch(presented.strip())
    if match is None:
        return None
    token = db.session.scalar(TOKEN_WITH_USER, {"lookup": match[1]})
    if token is None or not hmac.compare_digest(token.secret_hash, _digest(match[2])):
        return None
    if token.revoked_at is not None or not token.user.active:
        return None
    now = utcnow()
    # To the minute: a CI job polling a run should not write to the database on every request.
    if token.last_used_at is None or now - as_utc(token.last_used_at) > LAST_USED_PRECISION:
        token.last_used_at = now
        db.session.commit()
    return token.user


def user_id_for_token(presented: str) -> str | None:
    """The id of user_for_token's user, from what this process checked less than TOKEN_SECONDS ago
    when it can (without a last use recorded: that is to the minute)."""
    # As user_for_token reads it: spaces around one token do not make it another to remember.
    key = hashlib.sha256(presented.strip().encode()).digest()
    now = time.monotonic()
    known = _checked.get(key)
    if known is not None and known[0] > now:
        return known[1]
    forgotten = _forgotten
    user = user_for_token(presented)
    if user is None:
        return None
    with _checked_lock:
        if forgotten != _forgotten:
            return user.id
        if len(_checked) >= MAX_CHECKED:  # only good tokens get in, but keep it small all the same
            for stale in [other for other, (deadline, _) in _checked.items() if deadline <= now]:
                del _checked[stale]
            if len(_checked) >= MAX_CHECKED:  # all still fresh: start again rather than look through them each time
                _checked.clear()
        _checked[key] = (now + TOKEN_SECONDS, user.id)
    return user.id


def forget_checked_tokens() -> None:
    """Check every token against the database again: one was revoked, or a user disabled."""
    global _forgotten
    with _checked_lock:
        _checked.clear()
        _forgotten += 1


def revoke_token(user: User, token_id: str) -> ApiToken | None:
    """Revoke one of `user`'s tokens (an admin may revoke anyone's); None when there is no such token."""
    token = db.session.get(ApiToken, token_id)
    if token is None or (token.user_id != user.id and not user.is_admin):
        return None
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        db.session.commit()
        forget_checked_tokens()
    return token


def _digest(secret: str) -> str:
    # A token's secret is 256 random bits: a fast hash is enough, unlike a password.
    return hashlib.sha256(secret.encode()).hexdigest()
