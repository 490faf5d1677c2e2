"""What waits in Dramatiq's Redis queues, read from its layout (dramatiq/brokers/redis/dispatch.lua):

- `<namespace>:<queue>`: a list of the ids of the messages waiting, oldest first (enqueued with
  RPUSH, fetched with LPOP; a message handed back goes to the end again);
- `<namespace>:<queue>.msgs`: a hash of id → message, for the messages waiting *and* those a
  worker has fetched and not yet acknowledged.

So waiting = LLEN, held by workers = HLEN − LLEN, and the oldest waiting message is among the first
few of the list (a handed-back one may sit behind younger ones): a few reads, whatever the length.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import redis

LOOK_AT = 10  # messages at the head of a queue whose age is read


@dataclass(frozen=True)
class QueueState:
    name: str
    waiting: int
    held: int  # fetched by a worker and not yet acknowledged: running
    oldest_enqueued_ms: int | None  # when the oldest waiting message was first enqueued

    def oldest_waiting_seconds(self, now_ms: int) -> float | None:
        if self.oldest_enqueued_ms is None:
            return None
        return round(max(0, now_ms - self.oldest_enqueued_ms) / 1000, 3)


def oldest_timestamp(messages: Iterable[bytes | str | None]) -> int | None:
    """The earliest `message_timestamp` (ms) among encoded Dramatiq messages; None when there is none.
    A message gone meanwhile (None) or unreadable is passed over."""
    stamps = []
    for message in messages:
        if message is None:
            continue
        try:
            stamp = json.loads(message).get("message_timestamp")
        except (ValueError, AttributeError):
            continue
        if isinstance(stamp, int) and not isinstance(stamp, bool):
            stamps.append(stamp)
    return min(stamps) if stamps else None


def any_waiting(client: redis.Redis, namespace: str, names: Iterable[str]) -> bool:
    """Whether a message waits in any of these queues, in one round trip."""
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(f"{namespace}:{name}")
    return any(pipe.execute())


def inspect(client: redis.Redis, namespace: str, names: Iterable[str]) -> list[QueueState]:
    """Each queue's state, in two round trips to Redis whatever the queues' lengths."""
    names = list(names)
    pipe = client.pipeline(transaction=False)
    for name in names:
        full = f"{namespace}:{name}"
        pipe.llen(full)
        pipe.hlen(f"{full}.msgs")
        pipe.lrange(full, 0, LOOK_AT - 1)
    counts = pipe.execute()
    pipe = client.pipeline(transaction=False)
    for index, name in enumerate(names):
        heads = counts[3 * index + 2]
        if heads:
            pipe.hmget(f"{namespace}:{name}.msgs", heads)
    heads_messages = iter(pipe.execute())
    states = []
    for index, name in enumerate(names):
        waiting, stored, heads = counts[3 * index: 3 * index + 3]
        oldest = oldest_timestamp(next(heads_messages)) if heads else None
        states.append(QueueState(name, waiting, max(0, stored - waiting), oldest))
    return states
