"""The SSE stream itself: current state first, pings while nothing happens, close at the end."""
from __future__ import annotations

import threading
import time
import uuid

import redis
from flask import Flask

from supertest import events
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


def test_streams_past_max_streams_are_refused_while_other_requests_answer(app: Flask, settings: dict[str, str]) -> None:
    app = make_app({**settings, "MAX_STREAMS": "1"})
    with app.app_context():
        run_id = runs.create_playground_run(PASSING, "watched by too many", trigger="api").id  # stays pending
    client = app.test_client()
    first = client.get(f"/api/runs/{run_id}/events")  # not read yet: the stream stays open
    assert first.status_code == 200
    try:
        refused = client.get(f"/api/runs/{run_id}/events")
        assert refused.status_code == 503
        assert refused.headers["Retry-After"].isdigit()
        assert refused.get_json()["error"]["code"] == "too_many_streams"
        page_stream = client.get(f"/runs/{run_id}/live")  # the run page's stream counts alike
        assert page_stream.status_code == 503 and page_stream.headers["Retry-After"].isdigit()
        # Refused before anything else is looked at, the token included: a 503, not a 401.
        assert app.test_client(authorized=False).get(f"/api/runs/{run_id}/events").status_code == 503
        assert client.get("/api/health").status_code == 200
        assert client.get(f"/api/runs/{run_id}").status_code == 200
    finally:
        first.close()
    again = client.get(f"/api/runs/{run_id}/events")  # the slot came back when the first closed
    assert again.status_code == 200
    again.close()
    with app.app_context():
        runs.finish(run_id, CANCELLED, error_message="stopped by the test")


def test_run_panel_falls_back_to_polling(app: Flask) -> None:
    """The live panel fetches itself with poll=1 when its stream fails; that panel polls, no stream."""
    with app.app_context():
        run_id = runs.create_playground_run(PASSING, "polled", trigger="api").id
    client = app.test_client()
    live = client.get(f"/runs/{run_id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "sse-connect=" in live and "htmx:sseError from:#run" in live and "poll=1" in live
    polled = client.get(f"/runs/{run_id}?poll=1", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "sse-connect=" not in polled
    assert 'hx-trigger="every 2s"' in polled and "poll=1" in polled
    with app.app_context():
        runs.finish(run_id, CANCELLED, error_message="stopped by the test")
    ended = client.get(f"/runs/{run_id}?poll=1", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "every 2s" not in ended and "sse-connect=" not in ended


def test_streams_arriving_together_share_one_read_of_the_run_until_its_next_event(settings: dict[str, str]) -> None:
    """Thousands of viewers opening a run's stream at once cost one read of it, not one each; an
    event of the run, or CURRENT_SECONDS, or the last viewer leaving, makes the next stream read it again."""
    hub, client = events.Hub(settings["REDIS_URL"]), redis.Redis.from_url(settings["REDIS_URL"])
    run_id, reads = str(uuid.uuid4()), []

    def read() -> events.Event:
        reads.append(run_id)
        return "status", {"reads": len(reads)}

    first = hub.subscribe(run_id)
    second = hub.subscribe(run_id)
    try:
        assert hub.current(run_id, read).event == ("status", {"reads": 1})
        assert hub.current(run_id, read).event == ("status", {"reads": 1})  # the second stream: no read
        events.publish(run_id, "test", {"title": "one"}, client)
        assert first.get(timeout=5).event == ("test", {"title": "one"})
        assert hub.current(run_id, read).event == ("status", {"reads": 2})  # it may have changed the run
        time.sleep(events.CURRENT_SECONDS + 0.1)
        assert hub.current(run_id, read).event == ("status", {"reads": 3})  # a lost event would be forgotten
    finally:
        hub.unsubscribe(run_id, first)
        hub.unsubscribe(run_id, second)
    again = hub.subscribe(run_id)
    try:
        assert hub.current(run_id, read).event == ("status", {"reads": 4})  # nobody was watching meanwhile
    finally:
        hub.unsubscribe(run_id, again)
