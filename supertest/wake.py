"""Idle consumers that wait in Redis for a message instead of asking for one ten times a second.

Dramatiq's Redis consumer polls: after an empty fetch it sleeps, at most `dramatiq_worker_timeout`
ms (100 here, so that a run starts at once), and fetches again. With a consumer per queue and per
delay queue, an idle worker process asked Redis about 60 times a second: 4% of a core for the
worker, 1% for Redis, doing nothing. Here an empty fetch is followed by a wait on the queue's
wake list (BLPOP, up to WAKE_SECONDS), into which every enqueue pushes a token: one waiting
consumer, in whichever worker, wakes at once and fetches again. A token nobody waits for stays
(at most WAKE_TOKENS of them), so an enqueue that comes between the empty fetch and the wait is
not missed; a spare token costs one empty fetch.

A consumer does not wait while it cannot take a message anyway (the subclass says when: no run
slot free); one woken that can no longer take it (its slot went meanwhile) hands the token on to
another waiter. A delay queue's consumer does not wait while it holds delayed messages, which
Dramatiq moves to their queue between fetches when their time comes. Messages that Dramatiq's
maintenance hands back from a dead worker come with no token: a waiting consumer finds them when
its wait ends, within about a second.
"""
from __future__ import annotations

import logging
from typing import Any

import redis
from dramatiq.broker import Consumer
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import q_name

log = logging.getLogger(__name__)

WAKE_SECONDS = 1  # the longest an idle consumer waits before it fetches again (Redis's own timeout)
WAKE_TOKENS = 64  # tokens kept in a wake list that nobody waits on


class WakingRedisBroker(RedisBroker):
    """Dramatiq's Redis broker, whose consumers wait for an enqueue rather than poll."""

    def __init__(self, *, wake_seconds: float = WAKE_SECONDS, **parameters: Any) -> None:
        super().__init__(**parameters)
        self.wake_seconds = wake_seconds
        self._prefetch: dict[str, int] = {}  # queue → its consumer's prefetch, as Dramatiq set it

    def wake_key(self, queue_name: str) -> str:
        return f"{self.namespace}:wake:{queue_name}"

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        self._prefetch[queue_name] = prefetch
        return super().consume(queue_name, prefetch, timeout)

    def do_enqueue(self, queue_name: str, message_id: str, data: bytes) -> Any:
        answer = self._dispatch("enqueue")(queue_name, message_id, data)
        self._wake(queue_name, 1)
        return answer

    def do_requeue(self, queue_name: str, *message_ids: str) -> Any:
        """Messages handed back (by a stopping worker): a token each, for the workers still up."""
        answer = self._dispatch("requeue")(queue_name, *message_ids)
        self._wake(queue_name, len(message_ids))
        return answer

    def do_fetch(self, queue_name: str, count: int) -> list[bytes]:
        messages = self.fetch(queue_name, count)
        if messages or not self.may_wait(queue_name, count):
            return messages
        # The wait holds a connection of the pool (each consumer thread has its own in turn). A
        # socket timeout shorter than the wait (redis-py's is 5 s; a Redis that hangs) ends it as
        # an empty one: the next fetch says what is wrong. A token Redis gave as the client gave
        # up is lost, and its message found on a later fetch.
        try:
            if self.client.blpop([self.wake_key(queue_name)], timeout=self.wake_seconds) is None:
                return []
        except redis.TimeoutError:
            return []
        messages = self.fetch(queue_name, count)
        if not messages and not self.may_wait(queue_name, count):
            self._wake(queue_name, 1)  # woken, but its slot went meanwhile: wake a worker that can take it
        return messages

    def fetch(self, queue_name: str, count: int) -> list[bytes]:
        """Ask Redis for up to `count` messages of the queue."""
        return self._dispatch("fetch")(queue_name, count)

    def may_wait(self, queue_name: str, count: int) -> bool:
        """Whether this queue's consumer, having found nothing, may wait in Redis for an enqueue."""
        if q_name(queue_name) != queue_name:  # a delay queue: only while it holds no delayed message
            return count >= self._prefetch.get(queue_name, count)
        return True

    def _wake(self, queue_name: str, tokens: int) -> None:
        """Wake as many waiting consumers of the queue. The message is in Redis already: should this
        fail, a consumer finds it when its wait ends, within about a second."""
        if tokens < 1:
            return
        key = self.wake_key(queue_name)
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.lpush(key, *[b"1"] * min(tokens, WAKE_TOKENS))
            pipe.ltrim(key, 0, WAKE_TOKENS - 1)
            pipe.execute()
        except redis.RedisError as error:
            log.warning("queued on %s, but no worker could be woken for it (%s): one finds it when its "
                        "wait ends, within about %s s", queue_name, error, self.wake_seconds)
