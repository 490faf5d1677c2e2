"""The app's connection to Redis, shared by everything that uses it: queue-side events, sign-in
rate limits, health, and the sandbox checks workers announce."""
from __future__ import annotations

import redis
from flask import current_app


def redis_client() -> redis.Redis:
    """The app's Redis connection pool, made once per app."""
    client = current_app.extensions.get("redis")
    if client is None:
        client = current_app.extensions["redis"] = redis.Redis.from_url(
            current_app.config["REDIS_URL"], socket_connect_timeout=3, socket_timeout=10, health_check_interval=30
        )
    return client
