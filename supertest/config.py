"""Settings, read from the environment once, with defaults and strict parsing.

A bad value stops the app at start with a message naming the variable, rather
than surfacing as a confusing failure in the middle of a run.
"""
from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from supertest.encryption import keys_from

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = PROJECT_ROOT / "instance"
MAX_TIMEOUT_MS = 6 * 3600 * 1000  # the longest time limit a run may be given (a job's timeoutMs)
MAX_RETENTION_DAYS = 36_500  # a hundred years: longer is "keep everything", which unset already says


class ConfigError(ValueError):
    """A setting has a value we refuse to guess about."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _optional_int(env: Mapping[str, str], name: str, minimum: int, maximum: int) -> int | None:
    """A whole number within bounds, or None when unset (or empty)."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    value = _int(env, name, 0, minimum)
    if value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _url(env: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    value = env.get(name, "").strip() or default
    if value and urlparse(value).scheme.split("+")[0] not in schemes:
        raise ConfigError(f"{name} must be a URL starting with one of {', '.join(schemes)}; got {_shown(value)!r}")
    return value


def _shown(url: str) -> str:
    """A URL as an error message may show it: a password in it (SMTP_URL's, DATABASE_URL's) masked."""
    return re.sub(r"(//[^/@:]*:)[^/]*@", r"\1***@", url)


def _origin(env: Mapping[str, str], name: str) -> str:
    """scheme://host[:port], nothing after it: an origin, not a page."""
    value = _url(env, name, "", ("http", "https")).rstrip("/")
    parts = urlparse(value)
    if value and (not parts.netloc or parts.path or parts.query or parts.fragment):
        raise ConfigError(f"{name} must be an origin such as https://reports.example.com; got {value!r}")
    return value


def _database_url(env: Mapping[str, str]) -> str:
    url = _url(env, "DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'supertest.db'}", ("sqlite", "postgres", "postgresql"))
    # Heroku-style URLs say postgres://; SQLAlchemy wants a dialect and we use psycopg 3.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw not in ("", "0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    return default if raw == "" else raw in ("1", "true", "yes")


def _instance_secret_key() -> str:
    """Without SECRET_KEY (`make run`), one made on first start and kept in instance/, so that the web
    and worker processes agree on it and sessions outlive a restart."""
    path = INSTANCE_DIR / "secret-key"
    if not path.exists():
        INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
        draft = INSTANCE_DIR / f"secret-key.{os.getpid()}"
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
            file.write(secrets.token_hex(32))
        try:  # a link appears whole or not at all: no process reads a half-written key
            os.link(draft, path)
        except FileExistsError:
            pass  # another process made it first; use theirs
        finally:
            draft.unlink()
    return path.read_text().strip()


def _uid_range(env: Mapping[str, str], name: str, default: str) -> tuple[int, int]:
    """first-last: uids no account on this machine uses, one for each run at once."""
    if "SANDBOX_USER" in env:
        raise ConfigError("SANDBOX_USER was replaced by SANDBOX_UIDS, a range of uids (each run takes one)")
    raw = env.get(name, "").strip() or default
    first, dash, last = raw.partition("-")
    if not (dash and first.strip().isdigit() and last.strip().isdigit()):
        raise ConfigError(f"{name} must be a range of uids such as {default}, got {raw!r}")
    low, high = int(first), int(last)
    if not 1000 <= low <= high < 2**32 - 1:
        raise ConfigError(f"{name} must be uids from 1000 up, the first no larger than the last; got {raw!r}")
    return low, high


WEB_CONNECTIONS = 4000  # the Procfile's default for gunicorn's --worker-connections


def _max_streams(env: Mapping[str, str]) -> int:
    """MAX_STREAMS, by default three quarters of WEB_CONNECTIONS, and always some below it."""
    connections = _int(env, "WEB_CONNECTIONS", WEB_CONNECTIONS, minimum=10)
    value = _int(env, "MAX_STREAMS", connections * 3 // 4)
    if value > connections - 5:
        raise ConfigError(f"MAX_STREAMS must leave room for other requests: at most WEB_CONNECTIONS - 5 "
                          f"({connections - 5}), got {value}")
    return value


def _encryption_keys(env: Mapping[str, str], secret_key: str) -> tuple[str, ...]:
    try:
        return keys_from(env.get("ENCRYPTION_KEY", ""), secret_key)
    except ValueError as error:
        raise ConfigError(f"ENCRYPTION_KEY: {error}") from None


def _smtp_url(env: Mapping[str, str]) -> str:
    value = _url(env, "SMTP_URL", "", ("smtp", "smtps"))
    if value and not urlparse(value).hostname:
        raise ConfigError(f"SMTP_URL must name a host, such as smtp://user:password@mail.example.com:587; "
                          f"got {_shown(value)!r}")
    return value


def from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask config mapping from environment variables."""
    env = os.environ if env is None else env
    secret_key = env.get("SECRET_KEY") or _instance_secret_key()
    s3_endpoint = _url(env, "S3_ENDPOINT", "", ("http", "https"))
    max_script_bytes = _int(env, "MAX_SCRIPT_BYTES", 256 * 1024)
    return {
        "SECRET_KEY": secret_key,
        # Channel targets, webhook secrets and variables are stored encrypted with these (encryption.py).
        "ENCRYPTION_KEYS": _encryption_keys(env, secret_key),
        # Sessions: a cookie script cannot read, not sent along with other sites' requests.
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _flag(env, "SESSION_COOKIE_SECURE"),
        # CSRF is checked by supertest.auth (cookie sessions only; a bearer token needs none), and a
        # form's token lives as long as the session, so a page left open still posts.
        "WTF_CSRF_CHECK_DEFAULT": False,
        "WTF_CSRF_TIME_LIMIT": None,
        "SQLALCHEMY_DATABASE_URI": _database_url(env),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "REDIS_URL": _url(env, "REDIS_URL", "redis://127.0.0.1:6379/0", ("redis", "rediss", "unix")),
        "QUEUE_NAMESPACE": env.get("QUEUE_NAMESPACE", "").strip() or "supertest",
        "S3_ENDPOINT": s3_endpoint,
        "S3_TEST_BUCKET_NAME": env.get("S3_TEST_BUCKET_NAME", "").strip() or "playwright-test-artifacts",
        "S3_JOB_BUCKET_NAME": env.get("S3_JOB_BUCKET_NAME", "").strip() or "playwright-job-artifacts",
        "AWS_REGION": env.get("AWS_REGION", "").strip() or "us-east-1",
        "AWS_ACCESS_KEY_ID": env.get("AWS_ACCESS_KEY_ID", ""),
        "AWS_SECRET_ACCESS_KEY": env.get("AWS_SECRET_ACCESS_KEY", ""),
        "REPORTS_DIR": Path(env.get("REPORTS_DIR", "").strip() or INSTANCE_DIR / "reports"),
        "RUNS_DIR": Path(env.get("RUNS_DIR", "").strip() or INSTANCE_DIR / "runs"),
        "MAX_CONCURRENT_TESTS": _int(env, "MAX_CONCURRENT_TESTS", 3),
        # The most shards a job run may be split into (a job's shards setting, and "auto").
        "MAX_SHARDS": _int(env, "MAX_SHARDS", 8),
        # Runs at once on this machine, over all its worker processes (slots.py); 0 (unset): no limit
        # beyond each worker process's WORKER_THREADS.
        "MAX_RUNS_PER_MACHINE": _int(env, "MAX_RUNS_PER_MACHINE", 0),
        "TEST_EXECUTION_TIMEOUT_MS": _int(env, "TEST_EXECUTION_TIMEOUT_MS", 900_000, minimum=1000),
        "JOB_EXECUTION_TIMEOUT_MS": _int(env, "JOB_EXECUTION_TIMEOUT_MS", 1_800_000, minimum=1000),
        # A run whose worker has not shown it is alive for this long is handed to another worker,
        # up to MAX_RUN_ATTEMPTS attempts in all. Workers show it every HEARTBEAT_SECONDS.
        "WORKER_LOST_SECONDS": _int(env, "WORKER_LOST_SECONDS", 30, minimum=3),
        "HEARTBEAT_SECONDS": _int(env, "HEARTBEAT_SECONDS", 5),
        # A worker process's entry in Redis (the operations page, /api/workers) lives this long unless
        # its heartbeat renews it: a killed worker drops off the list this long after its death.
        "WORKER_TTL_SECONDS": _int(env, "WORKER_TTL_SECONDS", 3 * _int(env, "HEARTBEAT_SECONDS", 5), minimum=2),
        "MAX_RUN_ATTEMPTS": _int(env, "MAX_RUN_ATTEMPTS", 3),
        # How often a worker tries again to upload reports it kept on disk while S3 was down.
        "REPORT_RETRY_SECONDS": _int(env, "REPORT_RETRY_SECONDS", 60),
        # Finished runs older than this many days are deleted with their reports by the workers'
        # housekeeping (a job's retentionDays takes precedence for its runs); unset keeps everything.
        "RUN_RETENTION_DAYS": _optional_int(env, "RUN_RETENTION_DAYS", 1, MAX_RETENTION_DAYS),
        "MAX_SCRIPT_BYTES": max_script_bytes,
        # Room for JSON quoting and the title, so an over-long script gets our 413 that names the field.
        "MAX_CONTENT_LENGTH": max_script_bytes + 16 * 1024,
        # An ad-hoc run (POST /api/runs, the CI client): at most this many files, this many bytes
        # in all (each file also within MAX_SCRIPT_BYTES).
        "MAX_RUN_FILES": _int(env, "MAX_RUN_FILES", 500),
        "MAX_RUN_BYTES": _int(env, "MAX_RUN_BYTES", 5 * 1024 * 1024),
        "SSE_PING_SECONDS": _int(env, "SSE_PING_SECONDS", 15),
        # Live streams per web process; past it a new one gets 503 too_many_streams. Below
        # WEB_CONNECTIONS, so that ordinary requests keep the rest of the process's connections.
        "MAX_STREAMS": _max_streams(env),
        # Reports are served from this origin (another host name or port of the same web process), so
        # that their script cannot act with a user's session. Unset: reports are served sandboxed on
        # the app's origin, where the trace viewer cannot run. Links to it last REPORT_LINK_SECONDS.
        "REPORTS_ORIGIN": _origin(env, "REPORTS_ORIGIN"),
        "REPORT_LINK_SECONDS": _int(env, "REPORT_LINK_SECONDS", 1800, minimum=60),
        # Failed sign-ins allowed per account in 15 minutes (four times as many per client address).
        "LOGIN_MAX_ATTEMPTS": _int(env, "LOGIN_MAX_ATTEMPTS", 5),
        "CHROMIUM_PATH": env.get("CHROMIUM_PATH", "").strip(),
        "PLAYWRIGHT_BROWSERS_PATH": env.get("PLAYWRIGHT_BROWSERS_PATH", "").strip()
        or str(PROJECT_ROOT / ".playwright-browsers"),
        # How the code under test is contained (supertest/execution/sandbox.py, docs/isolation.md).
        "SANDBOX": _choice(env, "SANDBOX", "auto", ("auto", "bwrap", "none")),
        # private: a network namespace of the sandbox's own (pasta), without the worker's loopback;
        # host: the worker's network; auto: private where it works (bubblewrap, pasta, a root worker).
        "SANDBOX_NETWORK": _choice(env, "SANDBOX_NETWORK", "auto", ("auto", "private", "host")),
        # A root worker runs each test as a uid of its own from this range (execution/users.py).
        "SANDBOX_UIDS": _uid_range(env, "SANDBOX_UIDS", "900000000-900000999"),
        # Each run slot keeps a sandboxed Playwright runner started ahead of its run (execution/warm.py).
        "WARM_RUNNERS": _flag(env, "WARM_RUNNERS", default=True),
        "TEST_MEMORY_MB": _int(env, "TEST_MEMORY_MB", 4096, minimum=256),
        "TEST_MAX_PROCESSES": _int(env, "TEST_MAX_PROCESSES", 2048, minimum=64),
        "TEST_MAX_OPEN_FILES": _int(env, "TEST_MAX_OPEN_FILES", 4096, minimum=256),
        "TEST_MAX_FILE_MB": _int(env, "TEST_MAX_FILE_MB", 1024),
        # What a run may leave behind (execution/collect.py): past these, files are left out of its
        # report and the run says so. Redaction (when there are secrets) may unpack archives to
        # REDACT_MAX_MB and take REDACT_SECONDS; a file past either is dropped, never kept unredacted.
        "REPORT_MAX_MB": _int(env, "REPORT_MAX_MB", 2048),
        "REPORT_MAX_FILES": _int(env, "REPORT_MAX_FILES", 20_000),
        "REDACT_MAX_MB": _int(env, "REDACT_MAX_MB", 1024),
        "REDACT_SECONDS": _int(env, "REDACT_SECONDS", 60),
        # Alerts (services/alerts.py): links in them start with PUBLIC_URL; each attempt to deliver one
        # waits NOTIFY_TIMEOUT_SECONDS for the far end, and a failed one is tried NOTIFY_ATTEMPTS times
        # in all, NOTIFY_BACKOFF_SECONDS after the first failure, doubling each time.
        "PUBLIC_URL": _url(env, "PUBLIC_URL", "", ("http", "https")).rstrip("/"),
        "NOTIFY_TIMEOUT_SECONDS": _int(env, "NOTIFY_TIMEOUT_SECONDS", 10),
        "NOTIFY_ATTEMPTS": _int(env, "NOTIFY_ATTEMPTS", 5),
        "NOTIFY_BACKOFF_SECONDS": _int(env, "NOTIFY_BACKOFF_SECONDS", 30),
        # Email alerts: smtp://user:password@host:port (STARTTLS with ?starttls=true), smtps:// for TLS.
        "SMTP_URL": _smtp_url(env),
        "MAIL_FROM": env.get("MAIL_FROM", "").strip() or "supertest@localhost",
        # text: a readable line (with run=<id> job=<id> when it concerns a run); json: one object a line.
        "LOG_FORMAT": _choice(env, "LOG_FORMAT", "text", ("text", "json")),
        # A bearer token Prometheus scrapes /metrics with (an administrator's API token works too).
        "METRICS_TOKEN": env.get("METRICS_TOKEN", "").strip(),
        # Schedules (supertest/clock.py): a cron expression may not fire more often than this; the
        # clock ticks this often (and wakes for each slot); /api/health answers 503 when it has not
        # ticked for CLOCK_LATE_SECONDS while any schedule is enabled.
        "MIN_SCHEDULE_SECONDS": _int(env, "MIN_SCHEDULE_SECONDS", 60),
        "CLOCK_TICK_SECONDS": _int(env, "CLOCK_TICK_SECONDS", 5),
        "CLOCK_LATE_SECONDS": _int(env, "CLOCK_LATE_SECONDS", 60, minimum=5),
        "NODE_MODULES": Path(env.get("NODE_MODULES", "").strip() or PROJECT_ROOT / "node_modules"),
    }
