"""Failed sign-ins counted in Redis, so every web process shares the count and it outlives a restart."""
from __future__ import annotations

import hashlib

import redis
from flask import current_app
from werkzeug.exceptions import ServiceUnavailable

from supertest.connections import redis_client

WINDOW_SECONDS = 15 * 60
# One address may try a few accounts (an office behind one NAT), one account only a few passwords.
PER_ADDRESS_FACTOR = 4


def _keys(email: str, address: str) -> list[tuple[str, int]]:
    limit = current_app.config["LOGIN_MAX_ATTEMPTS"]
    prefix = f"{current_app.config['QUEUE_NAMESPACE']}:login-failures"
    # Hashed: the keys should not spell out who tried to sign in.
    by_email = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return [(f"{prefix}:email:{by_email}", limit), (f"{prefix}:address:{address}", limit * PER_ADDRESS_FACTOR)]


def wait_seconds(email: str, address: str) -> int:
    """0 if this sign-in may be tried now, else how long until it may."""
    try:
        client = redis_client()
        waits = [client.ttl(key) for key, limit in _keys(email, address) if int(client.get(key) or 0) >= limit]
    except redis.RedisError as error:
        # Failing closed: without the count, password guessing would be unlimited.
        raise ServiceUnavailable(f"Sign-in is unavailable while Redis is unreachable: {error}") from error
    return max([max(wait, 1) for wait in waits], default=0)


def failed(email: str, address: str) -> None:
    try:
        with redis_client().pipeline() as pipe:
            for key, _ in _keys(email, address):
                pipe.incr(key)
                pipe.expire(key, WINDOW_SECONDS, nx=True)
            pipe.execute()
    except redis.RedisError as error:
        raise ServiceUnavailable(f"Sign-in is unavailable while Redis is unreachable: {error}") from error


def succeeded(email: str, address: str) -> None:
    """A right password clears its account's count (not its address's: that one guards every account)."""
    try:
        redis_client().delete(_keys(email, address)[0][0])
    except redis.RedisError:
        pass  # the count simply expires later
