"""Fixtures against the real services: PostgreSQL or SQLite, Redis, SeaweedFS as S3, a Dramatiq
worker running the real `playwright test` in Chromium. A missing service fails the session."""
from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from playwright.sync_api import Browser, Page, sync_playwright

from supertest import config, create_app
from supertest.execution.workspace import CHROMIUM_ARGS, find_chromium
from supertest.services import accounts
from supertest.stack import answers_health, free_port, process_env, procfile, spawn, stop_process_group, wait_for
from tests.farend import MailServer, WebhookServer
from tests.helpers import ENV_PROBE, FAILING, PASSING, SYNTAX_ERROR, start_run
from tests.s3server import S3Server, start_s3_server

POSTGRES_ADMIN_URL = os.environ.get("SUPERTEST_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")
DATABASE_KIND = os.environ.get("SUPERTEST_TEST_DATABASE", "postgresql")
REDIS_URL = os.environ.get("SUPERTEST_TEST_REDIS", "redis://127.0.0.1:6379/0")


@contextmanager
def scratch_database(prefix: str, folder: Path) -> Iterator[str]:
    """An empty database of the session's kind (SQLite: a file in `folder`), dropped afterwards."""
    if DATABASE_KIND == "sqlite":
        yield f"sqlite:///{folder / f'{prefix}.db'}"
        return
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of our own for this session, dropped afterwards."""
    with scratch_database("supertest_test", tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_s3_server(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def settings(database_url: str, s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment shared by the app under test and its worker processes."""
    suffix = uuid.uuid4().hex[:8]
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "QUEUE_NAMESPACE": f"supertest-test-{suffix}",
        "S3_ENDPOINT": s3.endpoint,
        "AWS_REGION": s3.region,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "S3_TEST_BUCKET_NAME": f"test-artifacts-{suffix}",
        "S3_JOB_BUCKET_NAME": f"job-artifacts-{suffix}",
        "REPORTS_DIR": str(tmp_path_factory.mktemp("reports")),
        "RUNS_DIR": str(tmp_path_factory.mktemp("runs")),
        "TEST_EXECUTION_TIMEOUT_MS": "120000",
        "SECRET_KEY": "tests-" + suffix,
        # Alerts (tests/test_alerts.py): a far end gets 2 s, and three attempts a second or two apart.
        "NOTIFY_TIMEOUT_SECONDS": "2",
        "NOTIFY_ATTEMPTS": "3",
        "NOTIFY_BACKOFF_SECONDS": "1",
        "SMTP_URL": f"smtp://127.0.0.1:{free_port()}",  # the mail fixture listens there
        "PUBLIC_URL": "http://supertest.test",
    }


TESTER_EMAIL, TESTER_PASSWORD = "tester@supertest.test", "a long enough password"


class BearerClient(FlaskClient):
    """A test client that signs every request with an API token of the tester's account (made on
    first use, in whichever database the app has). `authorized=False` for a client with no credentials."""

    def __init__(self, *args: Any, authorized: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if authorized:
            self.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token_of_tester(self.application)}"


def token_of_tester(app: Flask) -> str:
    if "TEST_API_TOKEN" not in app.config:
        with app.app_context():
            user = accounts.by_email(TESTER_EMAIL) or accounts.create_user(TESTER_EMAIL, TESTER_PASSWORD, admin=True)
            app.config["TEST_API_TOKEN"] = accounts.create_token(user, "tests")[1]
    return app.config["TEST_API_TOKEN"]


def make_app(settings: dict[str, str]) -> Flask:
    app = create_app(config.from_env(settings))
    app.config["TESTING"] = True
    app.test_client_class = BearerClient
    return app


@pytest.fixture(scope="session")
def app(settings: dict[str, str]) -> Flask:
    """The app under test, on a freshly migrated database."""
    app = make_app(settings)
    with app.app_context():
        upgrade()
    return app


@pytest.fixture(autouse=True)
def _push_request_context() -> None:
    """Overrides pytest-flask's fixture of this name, which keeps one request context open around each
    test: every request the test made then shared one `g`, with Flask-Login's cached user and Flask-WTF's
    cached CSRF token in it, and could pass or fail for the wrong reason. Here each request has its own
    context, as in production; a test that needs one opens it."""


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class ProcfileProcess:
    """One of the Procfile's processes (`web`, `worker`), started as a deployment would start it."""

    def __init__(self, name: str, settings: dict[str, str], log_path: Path, ready: Callable[[ProcfileProcess], bool],
                 timeout: float = 60) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = spawn(procfile()[name], process_env(settings), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: ready(self), f"the {name} process", timeout, self.process)
        except RuntimeError as error:
            self.stop()
            raise RuntimeError(f"{error}:\n{self.log()[-3000:]}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process_group(self.process, timeout=40)


def start_worker(settings: dict[str, str], log_path: Path) -> ProcfileProcess:
    return ProcfileProcess("worker", settings, log_path, lambda worker: "ready for action" in worker.log())


@contextmanager
def running_workers(settings: dict[str, str], folder: Path, count: int = 2) -> Iterator[list[ProcfileProcess]]:
    """`count` worker processes with these settings (their logs in `folder`), stopped afterwards."""
    workers = [start_worker(settings, folder / f"worker-{n}.log") for n in range(1, count + 1)]
    try:
        yield workers
    finally:
        for process in workers:
            process.stop()


@pytest.fixture(scope="session")
def worker(app: Flask, settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ProcfileProcess]:
    process = start_worker(settings, tmp_path_factory.mktemp("worker") / "worker.log")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def web(app: Flask, worker: ProcfileProcess, settings: dict[str, str],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Procfile's `web` process (gunicorn, gevent) on a free port; yields its base URL."""
    port, reports_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    # Reports on a port of their own: another origin, as `make run` serves them.
    process = ProcfileProcess("web", {**settings, "PORT": str(port), "HOST": "127.0.0.1",
                                      "REPORTS_PORT": str(reports_port),
                                      "REPORTS_ORIGIN": f"http://127.0.0.1:{reports_port}"},
                              tmp_path_factory.mktemp("web") / "web.log", lambda _: answers_health(url))
    try:
        yield url
    finally:
        process.stop()


@pytest.fixture(scope="session")
def webhooks() -> Iterator[WebhookServer]:
    server = WebhookServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mail(settings: dict[str, str]) -> Iterator[MailServer]:
    server = MailServer(int(settings["SMTP_URL"].rsplit(":", 1)[1]))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Chromium, the system's, driven by Playwright's sync API."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(""), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def page(browser: Browser, web: str, app: Flask) -> Iterator[Page]:
    token_of_tester(app)  # the tester's account exists
    context = browser.new_context(base_url=web, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    sign_in(page)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"JavaScript error: {error}"))
    page.on("console", lambda message: message.type == "error" and errors.append(f"console: {message.text}"))
    page.on("response", lambda response: response.status >= 500 and errors.append(
        f"{response.status} from {response.request.method} {response.url}"))
    yield page
    context.close()
    assert not errors, errors


def sign_in(page: Page, email: str = TESTER_EMAIL, password: str = TESTER_PASSWORD) -> None:
    """Through the login page, as a person would; the tester's account exists once the app has made a client."""
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url)


@pytest.fixture(scope="session")
def started(app: Flask, worker: ProcfileProcess) -> dict[str, dict[str, Any]]:
    """One run of each kind, queued up front so the worker runs them side by side."""
    client = app.test_client()
    return {
        "passing": start_run(client, PASSING, "greets the visitor"),
        "failing": start_run(client, FAILING),
        "broken": start_run(client, SYNTAX_ERROR, "never compiles"),
        "env_probe": start_run(client, ENV_PROBE),
    }
