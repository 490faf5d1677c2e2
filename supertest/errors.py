"""What can go wrong with a request, each kind carrying the HTTP status and code that say so
(docs/api.md's error shape). Services and views raise these; views/errors.py answers every one of them
the same way: JSON under /api, a message page (or fragment) elsewhere."""
from __future__ import annotations

from typing import Any


class Problem(Exception):
    """A request that cannot be done. Subclasses fix `status` and `code`; one-off problems pass them."""

    status = 400
    code = "bad_request"
    title = "Not done"  # the heading of the page that explains it
    headers: dict[str, str] = {}  # for the response, beside the body (never changed in place)

    def __init__(self, message: str, details: dict[str, Any] | None = None, *, status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.status = status or self.status
        self.code = code or self.code

    def describe(self) -> str:
        """The message for a person or a client; a subclass may add what the raw message lacks."""
        return self.message


class NotFound(Problem):
    status, code, title = 404, "not_found", "Not found"


class Unavailable(Problem):
    """A service the request needs is down; `service` names it."""

    status, code, title = 503, "unavailable", "Unavailable"
    service = ""
    what = "A service"

    def __init__(self, message: str) -> None:
        super().__init__(message, {"service": self.service})

    def describe(self) -> str:
        return f"{self.what} is unreachable: {self.message}"
