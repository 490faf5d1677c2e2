"""Run events: published by workers on Redis, fanned out to SSE clients by one listener per process."""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis
from flask import Flask

from supertest.connections import redis_client

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "supertest:run:"
# How long a run's state, read for one new stream, is handed to the next ones of this process (when
# no event of the run came meanwhile): thousands of viewers arriving at once cost a read a second,
# not a read each. Publishing is best effort, so a lost event is what this bounds.
CURRENT_SECONDS = 1.0
Event = tuple[str, dict[str, Any]]
Render = Callable[[str, dict[str, Any]], str]


class Live:
    """An event as the listener hands it to every stream of its run, with what each kind of stream
    made of it (by render function), so that thousands of viewers cost one rendering."""

    __slots__ = ("event", "_rendered")

    def __init__(self, event: Event) -> None:
        self.event = event
        self._rendered: dict[Render, str] = {}

    def render(self, render: Render) -> str:
        text = self._rendered.get(render)
        if text is None:
            text = self._rendered[render] = render(*self.event)
        return text


def channel(run_id: str) -> str:
    return CHANNEL_PREFIX + run_id


def publish(run_id: str, event: str, data: dict[str, Any], client: redis.Redis | None = None) -> None:
    """Tell live viewers of a run that something happened. Best effort: the database is the record.

    Pass `client` from threads that have no app context.
    """
    try:
        (client or redis_client()).publish(channel(run_id), json.dumps({"event": event, "data": data}))
    except redis.RedisError:
        log.warning("could not publish %s event for run %s", event, run_id, exc_info=True)


class Hub:
    """One Redis pattern subscription per process, fanned out to a queue per SSE client."""

    def __init__(self, redis_url: str) -> None:
        self._redis_url = redis_url
        self._lock = threading.Lock()
        self._clients: dict[str, set[queue.Queue[Live]]] = {}
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._streams = 0  # slots taken by reserve() and not yet released
        # Per run with subscribers: events delivered so far, and its state as last read, with the
        # count it was read at and when (see current()).
        self._delivered: dict[str, int] = {}
        self._current: dict[str, tuple[int, float, Live]] = {}

    @property
    def streams(self) -> int:
        """Streams open (or about to open) in this process."""
        return self._streams

    def reserve(self, limit: int) -> Callable[[], None] | None:
        """Take one of `limit` stream slots; None when all are taken. Call what it returns (once or
        more: only the first counts) when the stream is over, or was never started."""
        with self._lock:
            if self._streams >= limit:
                return None
            self._streams += 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if not released:
                    released = True
                    self._streams -= 1
        return release

    def subscribe(self, run_id: str) -> queue.Queue[Live]:
        inbox: queue.Queue[Live] = queue.Queue()
        with self._lock:
            self._clients.setdefault(run_id, set()).add(inbox)
            if self._thread is None or not self._thread.is_alive():
                # Started lazily so that a forking server starts it in each worker, not the master.
                self._thread = threading.Thread(target=self._listen, name="sse-hub", daemon=True)
                self._thread.start()
        # Wait for the subscription itself, so an event published right after this returns is seen.
        self._ready.wait(timeout=5)
        return inbox

    def current(self, run_id: str, read: Callable[[], Event]) -> Live:
        """The first event of a stream subscribed to `run_id` (call this after subscribe): the run's
        state as `read` makes it from the record, or as it was read for another stream of this
        process less than CURRENT_SECONDS ago, if no event of the run has been delivered since
        that stream subscribed (a later event reaches this stream's inbox too). Every stream of a
        process must make its first event with the same `read`."""
        with self._lock:
            mark = self._delivered.get(run_id, 0)
            known = self._current.get(run_id)
        now = time.monotonic()
        if known is not None and known[0] == mark and now - known[1] < CURRENT_SECONDS:
            return known[2]
        live = Live(read())  # so the streams that share it render it once too
        with self._lock:
            if run_id in self._clients and self._delivered.get(run_id, 0) == mark:
                self._current[run_id] = (mark, now, live)
        return live

    def unsubscribe(self, run_id: str, inbox: queue.Queue[Live]) -> None:
        with self._lock:
            inboxes = self._clients.get(run_id, set())
            inboxes.discard(inbox)
            if not inboxes:
                self._clients.pop(run_id, None)
                self._delivered.pop(run_id, None)
                self._current.pop(run_id, None)

    def _listen(self) -> None:
        while True:
            try:
                pubsub = redis.Redis.from_url(self._redis_url, health_check_interval=30).pubsub()
                pubsub.psubscribe(CHANNEL_PREFIX + "*")
                for message in pubsub.listen():
                    if message["type"] == "psubscribe":
                        self._ready.set()
                    elif message["type"] == "pmessage":
                        self._deliver(message["channel"].decode()[len(CHANNEL_PREFIX):], message["data"])
            except redis.RedisError:
                self._ready.clear()
                with self._lock:
                    self._current.clear()  # events may be lost while away: read the record again
                log.warning("SSE listener lost Redis; reconnecting", exc_info=True)
                time.sleep(1)

    def _deliver(self, run_id: str, raw: bytes) -> None:
        try:
            payload = json.loads(raw)
            event: Event = (payload["event"], payload["data"])
        except (ValueError, KeyError):
            return
        with self._lock:
            inboxes = list(self._clients.get(run_id, ()))
            if inboxes:
                self._delivered[run_id] = self._delivered.get(run_id, 0) + 1
                self._current.pop(run_id, None)
        # One Live for them all: each kind of stream renders the event once, not once a client.
        live = Live(event)
        for inbox in inboxes:
            inbox.put(live)


def wait_for(hub: Hub, run_id: str, ended: Callable[[], bool], is_final: Callable[[str, dict[str, Any]], bool],
             seconds: float, recheck_seconds: float = 10) -> None:
    """Return once a run has ended, or after `seconds`: woken by its events, not by polling.

    `ended()` looks at the record (the database) and must not keep a connection. It is called
    once after subscribing, so an end between the caller's own look and the subscription is not
    missed, and again every `recheck_seconds` without an event, because publishing is best effort
    (a Redis blip loses the final status); that slow look is the only polling.
    """
    deadline = time.monotonic() + seconds
    inbox = hub.subscribe(run_id)
    try:
        if ended():
            return
        while (left := deadline - time.monotonic()) > 0:
            try:
                live = inbox.get(timeout=min(left, recheck_seconds))
            except queue.Empty:
                if ended():
                    return
                continue
            if is_final(*live.event):
                return
    finally:
        hub.unsubscribe(run_id, inbox)


def init_app(app: Flask) -> None:
    app.extensions["sse_hub"] = Hub(app.config["REDIS_URL"])


def format_sse(event: str, data: str) -> str:
    """Frame one event; every line of data needs its own `data:` prefix."""
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {event}\n{lines}\n"


def stream(
    inbox: queue.Queue[Live],
    first: Live,
    render: Render,
    ping_seconds: float,
    is_final: Callable[[str, dict[str, Any]], bool],
    close: Callable[[], None],
) -> Iterator[str]:
    """Yield SSE text for one run: `first`, its state read after `inbox` was subscribed (so nothing
    that happened in between is missed), then live events until it ends; `close` (unsubscribe)
    when done. The caller calls `close` too when the stream is never started: it must be idempotent.
    """
    try:
        yield first.render(render)
        if is_final(*first.event):
            return
        while True:
            try:
                live = inbox.get(timeout=ping_seconds)
            except queue.Empty:
                yield ": ping\n\n"
                continue
            yield live.render(render)
            if is_final(*live.event):
                return
    finally:
        close()
