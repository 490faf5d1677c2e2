"""Short-lived signed links to a run's report on the reports origin (REPORTS_ORIGIN).

A report is whatever the tested code produced, script included. Served from an origin of its own,
that script cannot read the app's pages or act with the user's session, while the report keeps what
the trace viewer needs (a real origin for its service worker). The link itself is the permission,
so the reports origin never looks at cookies; the signature sits in the path, so the report's
relative links (attachments, traces) carry it along.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SALT = "report-link"


class LinkExpired(Exception):
    """The link was good once; a fresh one comes with the run's page."""


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def origin() -> str:
    return current_app.config["REPORTS_ORIGIN"]


def on_reports_origin() -> bool:
    """Whether this request came to the reports origin rather than the app's."""
    return bool(origin()) and request.host == urlsplit(origin()).netloc


def url(run_id: str, path: str) -> str:
    """The reports-origin URL of `path` (relative to the report folder, e.g. index.html) of a run."""
    return f"{origin()}/r/{_signer().dumps(run_id)}/{path}"


def run_id_of(signature: str) -> str | None:
    """The run a link is for; None for a forged one, LinkExpired for an old one."""
    try:
        return _signer().loads(signature, max_age=current_app.config["REPORT_LINK_SECONDS"])
    except SignatureExpired:
        raise LinkExpired() from None
    except BadSignature:
        return None
