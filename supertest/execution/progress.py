"""A run's live progress: the reporter's lines become `begin` and `test` events for its viewers."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from supertest.outcomes import RETRYING, live_case_status, test_outcome

Publish = Callable[[str, dict[str, Any]], None]


class Progress:
    """Counts finished test cases and knows which of the run's tests (spec files) each belongs to.

    Called on the reader thread of the Playwright process, one reporter event at a time.
    """

    def __init__(self, files: dict[str, tuple[int, str | None]], publish: Publish) -> None:
        self.files = files  # file name → (position, saved test id)
        self.publish = publish
        self.total = 0
        self.done = 0
        self.per_file: dict[str, int] = {}  # how many cases each file holds
        self.finished: dict[str, dict[str, str]] = {}  # file → case id → final status

    def __call__(self, event: dict[str, Any]) -> None:
        name = event.get("event")
        if name == "begin":
            self.total = int(event.get("total", 0))
            self.per_file = {str(k): int(v) for k, v in (event.get("files") or {}).items()}
            self.publish("begin", {"total": self.total})
        elif name == "test":
            self.publish("test", self._test(event))

    def _test(self, event: dict[str, Any]) -> dict[str, Any]:
        file = str(event.get("file", ""))
        position, test_id = self.files.get(file, (None, None))
        status = live_case_status(bool(event.get("willRetry")), event.get("outcome"), event.get("status"))
        if status != RETRYING:
            self.done += 1
            self.finished.setdefault(file, {})[str(event.get("id"))] = status
        return {
            "title": event.get("title"), "file": file, "status": status,
            "durationMs": event.get("durationMs"), "retries": event.get("retry", 0), "error": event.get("error"),
            "testId": test_id, "position": position, "specStatus": self.test_status(file),
            "done": self.done, "total": self.total,
        }

    def test_status(self, file: str) -> str:
        """The test's status so far: running until all its cases are final, then the worst of them."""
        finished = self.finished.get(file, {})
        if len(finished) < self.per_file.get(file, 0):
            return "running"
        return test_outcome(finished.values())
