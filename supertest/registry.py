"""Live worker processes, as each tells Redis about itself: a key per process with a time to live,
refreshed by its heartbeat and deleted when it stops cleanly. A process that dies (SIGKILL, a lost
machine) stops refreshing its key, and Redis forgets it on its own once the time is up."""
from __future__ import annotations

import json
from typing import Any

import redis


def key(namespace: str, worker_id: str) -> str:
    return f"{namespace}:workers:{worker_id}"


def index(namespace: str) -> str:
    """A set of the ids of the workers that have registered: what to look up, without a SCAN of
    all of Redis's keys. The entries' time to live is the truth; readers drop ids whose entry is gone."""
    return f"{namespace}:workers"


def register(client: redis.Redis, namespace: str, entry: dict[str, Any], ttl_seconds: int) -> None:
    """Say (again) that this worker is alive, for `ttl_seconds`; `entry` has its `id`."""
    pipe = client.pipeline()  # MULTI: the entry exists whenever its id is in the index
    pipe.set(key(namespace, entry["id"]), json.dumps(entry), ex=ttl_seconds)
    pipe.sadd(index(namespace), entry["id"])
    pipe.execute()


def unregister(client: redis.Redis, namespace: str, worker_id: str) -> None:
    pipe = client.pipeline()
    pipe.delete(key(namespace, worker_id))
    pipe.srem(index(namespace), worker_id)
    pipe.execute()


def registered(client: redis.Redis, namespace: str) -> list[dict[str, Any]]:
    """Every live worker's entry, by id: the index, then one MGET; ids whose entry has expired
    (a worker that died) leave the index. A worker dropped by mistake is back at its next beat."""
    ids = sorted(member.decode() for member in client.smembers(index(namespace)))  # type: ignore[union-attr]
    values: list[bytes | None] = client.mget([key(namespace, worker_id) for worker_id in ids]) if ids else []  # type: ignore[assignment]
    gone = [worker_id for worker_id, value in zip(ids, values, strict=True) if value is None]
    if gone:
        client.srem(index(namespace), *gone)
    return [entry for entry in (parse(value) for value in values) if entry is not None]


def parse(value: bytes | str | None) -> dict[str, Any] | None:
    """An entry as stored; None for a key that expired between SCAN and MGET, or is not ours."""
    if value is None:
        return None
    try:
        entry = json.loads(value)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("id"), str) else None
