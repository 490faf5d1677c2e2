"""Live worker processes, as each tells Redis about itself: a key per process with a time to live,
refreshed by its heartbeat and deleted when it stops cleanly. A process that dies (SIGKILL, a lost
machine) stops refreshing its key, and Redis forgets it on its own once the time is up."""
from __future__ import annotations

import json
from typing import Any

import redis


def key(namespace: str, worker_id: str) -> str:
    return f"{namespace}:workers:{worker_id}"


def register(client: redis.Redis, namespace: str, entry: dict[str, Any], ttl_seconds: int) -> None:
    """Say (again) that this worker is alive, for `ttl_seconds`; `entry` has its `id`."""
    client.set(key(namespace, entry["id"]), json.dumps(entry), ex=ttl_seconds)


def unregister(client: redis.Redis, namespace: str, worker_id: str) -> None:
    client.delete(key(namespace, worker_id))


def registered(client: redis.Redis, namespace: str) -> list[dict[str, Any]]:
    """Every live worker's entry, by id. SCAN over the workers' keys only, then one MGET."""
    keys = sorted(client.scan_iter(match=key(namespace, "*"), count=500))
    values: list[bytes | None] = client.mget(keys) if keys else []  # type: ignore[assignment]
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
