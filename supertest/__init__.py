"""Supertest: write, queue, run and watch Playwright tests, and read their reports."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from supertest import auth, broker, cli, config, events, logs, storage, views
from supertest.extensions import db, htmx, migrate


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from the environment, with `overrides` (tests) taking precedence."""
    app = Flask(__name__, template_folder="../templates", static_folder="../static",
                instance_path=str(config.INSTANCE_DIR))
    app.config.update(config.from_env())
    app.config.update(overrides or {})
    logs.configure(app.config["LOG_FORMAT"])
    db.init_app(app)
    migrate.init_app(app, db, directory=str(config.PROJECT_ROOT / "migrations"))
    htmx.init_app(app)
    storage.init_app(app)
    events.init_app(app)
    broker.init_app(app)
    auth.init_app(app)
    views.init_app(app)
    app.cli.add_command(cli.users)
    app.cli.add_command(cli.tokens)
    app.cli.add_command(cli.new_encryption_key)
    app.cli.add_command(cli.rotate_encryption_key)
    return app


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """SQLite (the `make run` default) is shared by the web and worker processes: WAL and a busy wait."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
