"""The SSE stream itself: current state first, pings while nothing happens, close at the end."""
from __future__ import annotations

import threading
import time

from flask import Flask

from supertest.outcomes import CANCELLED
from supertest.services import runs
from tests.conftest import make_app
from tests.helpers import PASSING, read_sse, wait_for_run


def test_stream_pings_while_waiting_and_closes_on_the_terminal_status(app: Flask, settings: dict[str, str]) -> None:
    app = make_app({**settings, "SSE_PING_SECONDS": "1"})  # same (migrated) database, quicker pings
    with app.app_context():
        run_id = runs.create_playground_run(PASSING, "waits for nobody", trigger="api").id  # not queued: stays pending

    def end_it_later() -> None:
        time.sleep(2.5)
        with app.app_context():
            runs.finish(run_id, CANCELLED, error_message="stopped by the test")

    ender = threading.Thread(target=end_it_later)
    ender.start()
    started = time.monotonic()
    events = read_sse(app.test_client(), f"/api/test-status/sse/{run_id}", timeout=30)
    ender.join()

    assert events[0] == ("status", events[0][1]) and events[0][1]["status"] == "pending"
    assert ("comment", "ping") in events
    assert events[-1][0] == "status" and events[-1][1]["status"] == "cancelled"
    assert events[-1][1]["errorMessage"] == "stopped by the test"
    assert time.monotonic() - started < 10  # it closed, rather than waiting on


def test_page_stream_sends_html_and_a_done_event(app: Flask, started) -> None:
    """The run page's own stream (for the htmx SSE extension) renders fragments, not JSON."""
    run_id = started["passing"]["runId"]
    client = app.test_client()
    wait_for_run(client, run_id)
    events = read_sse(client, f"/runs/{run_id}/live", timeout=10)
    names = [name for name, _ in events]
    assert names == ["status", "done"]
    assert 'data-status="passed"' in events[0][1]
