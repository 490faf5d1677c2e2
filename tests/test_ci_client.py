"""The CI client as CI uses it: downloaded from the running app (gunicorn + worker), run as a
subprocess with only SUPERTEST_URL, SUPERTEST_TOKEN and PATH, on a suite shaped like Playwright's
todomvc example; and POST /api/runs, the route under it, refusing what it must."""
from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import junitparser
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from supertest.ci import supertest_ci
from supertest.extensions import db
from supertest.models import Run, RunFile
from supertest.services import suites
from supertest.services.validation import ValidationError
from tests.conftest import token_of_tester
from tests.helpers import wait_until
from tests.test_sandbox import machine_address

MARK = f"todos-{uuid.uuid4().hex[:8]}"
PAGE = f"""<!doctype html><html><head><title>{MARK}</title></head><body>
<h1>todos</h1><input class="new-todo" placeholder="What needs to be done?">
<ul class="todo-list"></ul>
<script>
  document.querySelector('.new-todo').addEventListener('keydown', (event) => {{
    if (event.key !== 'Enter') return;
    const item = document.createElement('li');
    item.textContent = event.target.value;
    document.querySelector('.todo-list').append(item);
    event.target.value = '';
  }});
</script></body></html>"""

CONFIG = """import { defineConfig, devices } from '@playwright/test';

export default defineConfig({
  testDir: './tests',
  timeout: 20_000,
  expect: { timeout: 4_000 },
  fullyParallel: true,
  retries: 0,
  reporter: 'html',
  use: {
    baseURL: '%(base)s',
    locale: 'fr-FR',
    trace: 'off', // Supertest's own wins
  },
  projects: [{ name: 'chromium', use: { ...devices['Desktop Chrome'] } }],
  /* Run your local dev server before starting the tests */
  // webServer: { command: 'npm run start', url: 'http://127.0.0.1:3000' },
});
"""

FILES = {
    "tests/fixtures.ts": """import { test as base } from '@playwright/test';
import { TodoPage } from './pages/todo-page';

export const test = base.extend<{ todoPage: TodoPage }>({
  todoPage: async ({ page }, use) => {
    const todoPage = new TodoPage(page);
    await todoPage.goto();
    await use(todoPage);
  },
});
export { expect } from '@playwright/test';
""",
    "tests/pages/todo-page.ts": """import type { Page, Locator } from '@playwright/test';
import data from '../data/todos.json';

export const TODO_ITEMS: string[] = data.items;

export class TodoPage {
  readonly items: Locator;
  constructor(readonly page: Page) {
    this.items = page.locator('.todo-list li');
  }
  async goto() {
    await this.page.goto('/');
  }
  async add(text: string) {
    await this.page.getByPlaceholder('What needs to be done?').fill(text);
    await this.page.getByPlaceholder('What needs to be done?').press('Enter');
  }
}
""",
    "tests/data/todos.json": '{"items": ["buy some cheese", "feed the cat"]}\n',
    "tests/adding/add.spec.ts": """import { test, expect } from '../fixtures';
import { TODO_ITEMS } from '../pages/todo-page';

test.describe('New Todo', () => {
  test('adds todo items', async ({ todoPage }) => {
    for (const item of TODO_ITEMS) await todoPage.add(item);
    await expect(todoPage.items).toHaveText(TODO_ITEMS);
  });
});
""",
    "tests/settings/config.spec.ts": """import { test, expect } from '../fixtures';

test('the suite config is honoured', async ({ todoPage, page }, testInfo) => {
  await expect(page).toHaveTitle('%(mark)s');
  expect(await page.evaluate(() => navigator.language)).toBe('fr-FR');
  expect(testInfo.timeout).toBe(20000);
});
""",
    "more/fail.spec.ts": """import { test, expect } from '../tests/fixtures';

test('finds a todo that is not there', async ({ todoPage }) => {
  await expect(todoPage.items, 'no such todo').toHaveText(['walk the dog'], { timeout: 500 });
});
""",
    "slow/slow.spec.ts": """import { test } from '@playwright/test';

test('takes its time', async () => {
  await new Promise((resolve) => setTimeout(resolve, 60_000));
});
""",
}


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class Broken(Page):
    def do_GET(self) -> None:
        self.send_response(500)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"boom")

    do_POST = do_GET


def serve(host: str, handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    """The app under test: on this machine's address, which the sandbox reaches (not its loopback)."""
    server = serve(machine_address(), Page)
    yield f"http://{server.server_address[0]}:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory, page_url: str) -> Path:
    root = tmp_path_factory.mktemp("suite")
    (root / "playwright.config.ts").write_text(CONFIG % {"base": page_url})
    for path, text in FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text.replace("%(mark)s", MARK))
    (root / "node_modules").mkdir()  # never searched, never sent
    (root / "node_modules" / "x.spec.ts").write_text("throw new Error('not mine')")
    return root


@pytest.fixture(scope="module")
def script(web: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client, as a CI job gets it: with curl, without credentials."""
    response = requests.get(f"{web}/ci/supertest-ci.py", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/x-python")
    path = tmp_path_factory.mktemp("ci") / "supertest-ci.py"
    path.write_bytes(response.content)
    return path


@pytest.fixture(scope="module")
def token(app: Flask) -> str:
    return token_of_tester(app)


def ci(script: Path, *args: str, url: str, token: str, cwd: Path, timeout: float = 240
       ) -> subprocess.CompletedProcess[str]:
    env = {"SUPERTEST_URL": url, "SUPERTEST_TOKEN": token, "PATH": os.environ["PATH"]}
    return subprocess.run([sys.executable, str(script), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def run_id_of(output: str) -> str:
    line = next(line for line in output.splitlines() if line.startswith("Run: "))
    return line.rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def passing(script: Path, suite: Path, web: str, token: str, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, Any]:
    junit = tmp_path_factory.mktemp("junit") / "passing.xml"
    done = ci(script, "run", "tests", "--junit", str(junit), "--workers", "2", "--title", "todomvc",
              url=web, token=token, cwd=suite)
    return {"done": done, "junit": junit}


@pytest.fixture(scope="module")
def failing(script: Path, suite: Path, web: str, token: str, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, Any]:
    junit = tmp_path_factory.mktemp("junit") / "failing.xml"
    done = ci(script, "run", "more/fail.spec.ts", "--junit", str(junit), url=web, token=token, cwd=suite)
    return {"done": done, "junit": junit}


def test_a_suite_that_passes_exits_0_with_its_tests_junit_and_links(passing: dict[str, Any], client: FlaskClient,
                                                                     web: str) -> None:
    done = passing["done"]
    assert done.returncode == 0, done.stdout + done.stderr
    run = client.get(f"/api/runs/{run_id_of(done.stdout)}").get_json()
    assert (run["status"], run["kind"], run["trigger"], run["jobId"], run["title"]) == (
        "passed", "job", "ci", None, "todomvc")
    # The specs are the run's tests, by their paths; the fixtures, page object and data came along.
    assert sorted(spec["file"] for spec in run["specs"]) == ["tests/adding/add.spec.ts",
                                                             "tests/settings/config.spec.ts"]
    assert {test["file"]: test["status"] for test in run["tests"]} == {
        "tests/adding/add.spec.ts": "passed", "tests/settings/config.spec.ts": "passed"}, run["tests"]
    # One line per finished test as it ends, then the verdict and the links.
    assert "passed      tests/adding/add.spec.ts › New Todo › adds todo items" in done.stdout, done.stdout
    assert "passed: 2 tests, 2 passed, 0 failed, 0 flaky, 0 skipped" in done.stdout
    assert f"Run: {web}/runs/{run['id']}" in done.stdout
    assert f"Report: {web}{run['reportUrl']}" in done.stdout
    page = client.get(f"/runs/{run['id']}").get_data(as_text=True)  # per test on the run page
    assert "tests/adding/add.spec.ts" in page and "a suite sent from CI" in page, page
    suites_ = junitparser.JUnitXml.fromfile(str(passing["junit"]))
    cases = [case for test_suite in suites_ for case in test_suite]
    assert len(cases) == run["summary"]["total"] == 2
    assert [case for case in cases if not case.is_passed] == []


def test_a_suite_that_fails_exits_1_and_junit_says_which(failing: dict[str, Any], client: FlaskClient) -> None:
    done = failing["done"]
    assert done.returncode == 1, done.stdout + done.stderr
    run = client.get(f"/api/runs/{run_id_of(done.stdout)}").get_json()
    assert run["status"] == "failed" and [spec["file"] for spec in run["specs"]] == ["more/fail.spec.ts"]
    assert "no such todo" in run["tests"][0]["error"]  # it got as far as the page: its imports were there
    assert "failed      more/fail.spec.ts › finds a todo that is not there" in done.stdout
    assert "no such todo" in done.stdout  # the first line of why, under it
    cases = [case for test_suite in junitparser.JUnitXml.fromfile(str(failing["junit"])) for case in test_suite]
    assert len(cases) == run["summary"]["total"] == 1
    assert sum(1 for case in cases if not case.is_passed) == run["summary"]["failed"] == 1


def test_a_rerun_of_a_suite_brings_its_files_and_config(failing: dict[str, Any], client: FlaskClient,
                                                         app: Flask) -> None:
    run_id = run_id_of(failing["done"].stdout)
    response = client.post(f"/api/runs/{run_id}/rerun", json={"failedOnly": True})
    assert response.status_code == 202, response.get_data(as_text=True)
    again = client.get(f"/api/runs/{response.get_json()['runId']}?wait=180").get_json()
    assert again["status"] == "failed" and "no such todo" in again["tests"][0]["error"], again
    with app.app_context():
        paths = sorted(db.session.scalars(select(RunFile.path).where(RunFile.run_id == again["id"])))
    assert paths == ["playwright.config.ts", "tests/data/todos.json", "tests/fixtures.ts", "tests/pages/todo-page.ts"]


def test_detach_prints_the_run_id_only(script: Path, suite: Path, web: str, token: str, client: FlaskClient) -> None:
    done = ci(script, "run", "slow", "--detach", url=web, token=token, cwd=suite, timeout=60)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    assert client.get(f"/api/runs/{run_id}").get_json()["trigger"] == "ci"
    client.post(f"/api/runs/{run_id}/cancel")


def test_the_wait_running_out_exits_2_and_cancels_the_run(script: Path, suite: Path, web: str, token: str,
                                                           client: FlaskClient) -> None:
    done = ci(script, "run", "slow", "--timeout", "1", url=web, token=token, cwd=suite, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "gave up waiting after 1 s" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    run_id = done.stderr.strip().rsplit("/", 1)[1]
    wait_until(lambda: client.get(f"/api/runs/{run_id}").get_json()["status"] == "cancelled", 30, "cancelled")


@pytest.fixture(scope="module")
def broken_server() -> Iterator[str]:
    server = serve("127.0.0.1", Broken)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def closed_port() -> str:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.parametrize(("case", "args", "server", "code", "says"), [
    ("unknown job name", ["--job", "no such job anywhere"], "web", 3, "no job named 'no such job anywhere'"),
    ("bad token", ["--job", "smoke"], "web-bad-token", 3, "refused the token"),
    ("server down", ["--job", "smoke"], "closed", 4, "unreachable"),
    ("server answering 500", ["--job", "smoke"], "broken", 4, "answered 500"),
    ("spec file missing", ["tests/nope.spec.ts"], "web", 3, "no such file or folder: tests/nope.spec.ts"),
    ("spec file too big", ["big/big.spec.ts"], "web", 3, "the limit per file is"),
    ("neither job nor path", [], "web", 3, "give either --job"),
    ("a job and a config", ["--job", "x", "--config", "playwright.config.ts"], "web", 3, "go with PATHs"),
], ids=lambda value: value if isinstance(value, str) and " " in value else None)
def test_client_errors_exit_with_their_code_and_one_line(case: str, args: list[str], server: str, code: int,
                                                         says: str, script: Path, suite: Path, web: str, token: str,
                                                         broken_server: str, app: Flask) -> None:
    (suite / "big").mkdir(exist_ok=True)
    (suite / "big" / "big.spec.ts").write_text("// " + "x" * app.config["MAX_SCRIPT_BYTES"] + "\n")
    url = {"web": web, "web-bad-token": web, "closed": closed_port(), "broken": broken_server}[server]
    with app.app_context():
        before = db.session.scalar(select(func.count()).select_from(Run))
    done = ci(script, "run", *args, url=url, token="st_bad_token" if server == "web-bad-token" else token,
              cwd=suite, timeout=60)
    assert done.returncode == code, done.stdout + done.stderr
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Run)) == before


SPEC = {"path": "tests/a.spec.ts", "content": "import { test } from '@playwright/test'; test('a', () => {});"}


@pytest.mark.parametrize(("body", "status", "field", "says"), [
    ({}, 422, "files", "files must be a non-empty list"),
    ({"files": []}, 422, "files", "non-empty list"),
    ({"files": [{"path": "tests/fixtures.ts", "content": "export {}"}]}, 422, "files", "no test file"),
    ({"files": [SPEC, SPEC]}, 422, "files", "more than once"),
    ({"files": [{**SPEC, "path": "../a.spec.ts"}]}, 422, "files[0].path", "climbs"),
    ({"files": [{**SPEC, "path": "tests/../../a.spec.ts"}]}, 422, "files[0].path", "climbs"),
    ({"files": [{**SPEC, "path": "/etc/a.spec.ts"}]}, 422, "files[0].path", "absolute"),
    ({"files": [{**SPEC, "path": "C:/a.spec.ts"}]}, 422, "files[0].path", "absolute"),
    ({"files": [{**SPEC, "path": "tests\\a.spec.ts"}]}, 422, "files[0].path", "backslash"),
    ({"files": [{**SPEC, "path": "tests//a.spec.ts"}]}, 422, "files[0].path", "empty"),
    ({"files": [{**SPEC, "path": "tests/a\x00.spec.ts"}]}, 422, "files[0].path", "control character"),
    ({"files": [{**SPEC, "path": "tests/a\u202egnp.spec.ts"}]}, 422, "files[0].path", "control character"),
    # The worker could not write it (ENAMETOOLONG): the run would end in an error of Supertest's.
    ({"files": [{**SPEC, "path": f"tests/{'é' * 124}.spec.ts"}]}, 422, "files[0].path", "longer than 255 bytes"),
    ({"files": [{**SPEC, "path": ""}]}, 422, "files[0].path", "non-empty relative path"),
    ({"files": [{**SPEC, "link": "/etc/passwd"}]}, 422, "files[0]", "links and folders are not sent"),
    ({"files": [SPEC, {"path": "tests", "content": ""}]}, 422, "files", "both a file and a folder"),
    ({"files": [SPEC, {"path": "playwright.config.ts", "content": ""}]}, 422, "files[1].path", "send its text"),
    ({"files": [{**SPEC, "content": 7}]}, 422, "files[0].content", "as a string"),
    ({"files": [SPEC], "config": "export default { webServer: { command: 'npm start' } }"}, 422, "config",
     "webServer"),
    ({"files": [SPEC], "config": "export default { reporter: [['./my-reporter.ts']] }"}, 422, "config",
     "'./my-reporter.ts'"),
    ({"files": [SPEC], "config": "export default { reporter: 'allure-playwright' }"}, 422, "config", "allure"),
    ({"files": [SPEC], "retries": 9}, 422, "retries", "from 0 to 5"),
    ({"files": [SPEC], "workers": 0}, 422, "workers", "from 1"),
    ({"files": [SPEC], "timeoutMs": 5}, 422, "timeoutMs", "from 1000"),
    ({"files": [SPEC, {"path": "b.ts", "content": ""}, {"path": "c.ts", "content": ""}]}, 413, "files",
     "MAX_RUN_FILES"),
    ({"files": [SPEC, {"path": "b.ts", "content": "x" * 3000}]}, 413, "files", "MAX_RUN_BYTES"),
])
def test_post_runs_refuses_bad_suites_and_queues_nothing(body: dict[str, Any], status: int, field: str, says: str,
                                                         client: FlaskClient, app: Flask,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.config, "MAX_RUN_FILES", 2)
    monkeypatch.setitem(app.config, "MAX_RUN_BYTES", 2000)
    with app.app_context():
        before = db.session.scalar(select(func.count()).select_from(Run))
    response = client.post("/api/runs", json=body)
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["details"]["field"] == field and says in error["message"], error
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Run)) == before


@pytest.mark.parametrize("config", [
    "export default { reporter: 'html' }",
    "export default { reporter: [['list'], ['html', { outputFolder: 'playwright-report', open: 'never' }]] }",
    "export default { reporter: process.env.CI ? 'dot' : 'list' }",
    "export default {\n  // webServer: { command: 'npm start' },\n  use: { baseURL: 'http://a//b' } }",
    "/* webServer: {} */ export default { use: { baseURL: 'http://x/webServer:' } }",
])
def test_configs_that_are_accepted(config: str) -> None:
    suites.check_config(config)


@pytest.mark.parametrize(("config", "tests", "support"), [
    (None, ["a/x.spec.ts", "b.test.js", "c.spec.mjs", "d.test.tsx"], ["fixtures.ts", "x.spec.json", "spec.ts"]),
    ("export default { testMatch: '**/*.e2e.ts' }", ["a/b/x.e2e.ts", "y.e2e.ts"], ["x.spec.ts"]),
    ("export default { testMatch: /.*check\\.ts$/ }", ["a/check.ts", "precheck.ts"], ["x.spec.ts"]),
    ("export default { testMatch: ['e2e/**/*.ts', '*.flow.js'] }", ["e2e/a/b.ts", "x/a.flow.js"], ["a/e2e/b.ts"]),
    ("export default { testMatch: process.env.MATCH }", ["x.spec.ts"], ["x.e2e.ts"]),  # not a literal: default
    ("export default { testMatch: /(a+)+$/ }", ["x.spec.ts"], ["aaaa"]),  # could backtrack for ever: default
])
def test_which_files_are_tests(config: str | None, tests: list[str], support: list[str]) -> None:
    matches = suites.test_matcher(config)
    assert [path for path in tests + support if matches(path)] == tests


def test_suite_from_splits_specs_from_support_files() -> None:
    suite = suites.suite_from({"files": [SPEC, {"path": "tests/fixtures.ts", "content": "export {}"}], "workers": 2},
                              10, 10_000, 10_000)
    assert ([p for p, _ in suite.specs], [p for p, _ in suite.support]) == (["tests/a.spec.ts"], ["tests/fixtures.ts"])
    assert (suite.title, suite.retries, suite.workers, suite.timeout_ms, suite.config) == ("CI run", 0, 2, None, None)
    with pytest.raises(ValidationError):
        suites.suite_from({"files": [SPEC], "title": 5}, 10, 10_000, 10_000)


@pytest.mark.parametrize(("source", "names"), [
    ("import { test, expect } from '../fixtures';", ["../fixtures"]),
    ("import data from './data.json'\nimport './setup'\nexport * from \"../pages\"",
     ["./data.json", "./setup", "../pages"]),
    ("const x = require('./x'); const y = await import('../y.js');", ["./x", "../y.js"]),
    ("import { test } from '@playwright/test'; import fs from 'fs';", []),
])
def test_the_client_finds_relative_imports(source: str, names: list[str]) -> None:
    assert supertest_ci.imports_of(source) == names


def test_the_client_sends_the_specs_and_what_they_import(suite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(suite)
    body = supertest_ci.suite(supertest_ci.parse(["run", "tests"]))
    assert sorted(file["path"] for file in body["files"]) == [
        "tests/adding/add.spec.ts", "tests/data/todos.json", "tests/fixtures.ts", "tests/pages/todo-page.ts",
        "tests/settings/config.spec.ts"]  # not node_modules/, not more/ or slow/
    assert body["config"] == (suite / "playwright.config.ts").read_text()
    (suite / "more" / "index.ts").write_text("export const x = 1;")
    (suite / "more" / "uses-index.spec.ts").write_text("import { x } from '.';\nimport { y } from './gone';")
    try:
        body = supertest_ci.suite(supertest_ci.parse(["run", "more/uses-index.spec.ts"]))
    finally:
        (suite / "more" / "uses-index.spec.ts").unlink()
    assert sorted(file["path"] for file in body["files"]) == ["more/index.ts", "more/uses-index.spec.ts"]


@pytest.mark.parametrize(("status", "code"), [("passed", 0), ("failed", 1), ("error", 2), ("timeout", 2),
                                              ("cancelled", 2)])
def test_the_verdict_is_the_exit_code_and_flaky_tests_are_named(status: str, code: int,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run = {"id": "r", "status": status, "reportUrl": None, "errorMessage": None,
           "summary": {"total": 2, "passed": 1, "failed": 0, "flaky": 1, "skipped": 0},
           "tests": [{"file": "a.spec.ts", "title": "wobbles", "status": "flaky"},
                     {"file": "b.spec.ts", "title": "holds", "status": "passed"}]}
    assert supertest_ci.report(supertest_ci.Client("http://supertest.invalid", "t"), run, None) == code
    out = capsys.readouterr().out
    assert "1 flaky" in out and "flaky: a.spec.ts › wobbles" in out and "holds" not in out


def test_a_linked_spec_is_sent_where_the_link_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "suite" / "elsewhere"  # elsewhere in the checkout: a link out of it is refused
    elsewhere.mkdir(parents=True)
    (elsewhere / "shared.spec.ts").write_text("import { x } from './helper';")
    (tmp_path / "suite" / "tests").mkdir(parents=True)
    (tmp_path / "suite" / "tests" / "helper.ts").write_text("export const x = 1;")
    (tmp_path / "suite" / "tests" / "shared.spec.ts").symlink_to(elsewhere / "shared.spec.ts")
    monkeypatch.chdir(tmp_path / "suite")
    body = supertest_ci.suite(supertest_ci.parse(["run", "tests"]))
    assert body["config"] is None
    assert {file["path"]: file["content"] for file in body["files"]} == {
        "helper.ts": "export const x = 1;", "shared.spec.ts": "import { x } from './helper';"}


@pytest.mark.parametrize("case", ["import climbing out", "linked spec", "linked import", "linked config"])
def test_nothing_outside_the_suites_folders_is_sent(case: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A pull request's spec must not make CI send the CI machine's files (its environment, its keys)."""
    secret = tmp_path / "secret.ts"
    secret.write_text("export const token = 'SECRET-OF-THE-CI-MACHINE';")
    tests = tmp_path / "checkout" / "tests"
    tests.mkdir(parents=True)
    spec = tests / "a.spec.ts"
    spec.write_text({"import climbing out": "import { token } from '../../secret';",
                     "linked import": "import { token } from './helper';"}.get(case, "import './helper';"))
    (tests / "helper.ts").write_text("export const token = 1;") if case != "linked import" else \
        (tests / "helper.ts").symlink_to(secret)
    if case == "linked spec":
        spec.unlink()
        spec.symlink_to(secret.with_name("secret.spec.ts"))
        secret.rename(secret.with_name("secret.spec.ts"))
    if case == "linked config":
        (tmp_path / "checkout" / "playwright.config.ts").symlink_to(secret)
    monkeypatch.chdir(tmp_path / "checkout")
    with pytest.raises(supertest_ci.Fail) as refused:
        supertest_ci.suite(supertest_ci.parse(["run", "tests"]))
    assert refused.value.code == supertest_ci.USAGE and "not sent" in str(refused.value)


def test_the_tests_words_print_as_one_line_without_escapes(capsys: pytest.CaptureFixture[str]) -> None:
    """A title is the test author's: it must not start a line of its own in the CI log (GitHub reads
    `::error::` lines as commands) nor send the terminal escape sequences."""
    title = "adds\n::error file=a::forged\r\x1b[2Kcleared\u2028"
    line = supertest_ci.test_line({"status": "failed", "file": "a\n.spec.ts", "title": title,
                                   "error": "Error: \x1b[31mred\x1b[0m\nmore"})
    assert line.count("\n") == 1 and "\x1b" not in line and "\r" not in line and "\u2028" not in line
    assert "adds\\n::error file=a::forged\\r\\x1b[2Kcleared" in line
    run = {"id": "r", "status": "failed", "reportUrl": None, "errorMessage": "\x1b]0;title\x07boom",
           "summary": {}, "tests": [{"file": "a.spec.ts", "title": title, "status": "flaky"}]}
    supertest_ci.report(supertest_ci.Client("http://supertest.invalid", "t"), run, None)
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\n::error" not in out and "\x07" not in err


HOSTILE_CONFIG = """import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

// Code at the top of a config runs wherever Playwright loads it: it must be in the sandbox only.
fs.appendFileSync(path.join(os.tmpdir(), 'config-ran'),
  JSON.stringify({ uid: process.getuid(), env: Object.keys(process.env) }) + '\\n');

export default {
  globalSetup: './global-setup.ts',
  testDir: '/',
  outputDir: '%(elsewhere)s',
  workers: 50,
  use: { channel: 'msedge', connectOptions: { wsEndpoint: 'ws://127.0.0.1:9' },
         launchOptions: { executablePath: '/bin/false' }, baseURL: 'http://127.0.0.1:9' },
  projects: [{ name: 'mine', use: { connectOptions: { wsEndpoint: 'ws://127.0.0.1:9' } } }],
};
"""
HOSTILE_SPEC = """import { test, expect } from '@playwright/test';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

test('the config ran as this test and asked for nothing it got', async ({ page, baseURL }) => {
  const lines = fs.readFileSync(path.join(os.tmpdir(), 'config-ran'), 'utf8').trim().split('\\n');
  const seen = lines.map((line) => JSON.parse(line));
  for (const each of seen) {
    expect(each.uid).toBe(process.getuid());
    expect(each.env).not.toContain('SECRET_KEY');
    expect(each.env).not.toContain('DATABASE_URL');
  }
  expect(fs.existsSync(path.join(os.tmpdir(), 'global-setup-ran'))).toBe(false);
  expect(baseURL).toBe('http://127.0.0.1:9');  // an allowed key is honoured
  await page.setContent('<p>in Supertest\\'s Chromium</p>');  // not msedge, /bin/false or a remote browser
  await expect(page.locator('p')).toHaveText("in Supertest's Chromium");
});
"""


def test_a_suites_config_runs_in_the_sandbox_and_gets_none_of_supertests_settings(
        client: FlaskClient, worker, tmp_path: Path) -> None:
    """globalSetup, testDir, outputDir, workers, a browser's channel, launch or connect options, a project's
    use: none is honoured; the config's own code runs as the test does, without the app's environment."""
    elsewhere = tmp_path / "elsewhere"
    response = client.post("/api/runs", json={
        "config": HOSTILE_CONFIG % {"elsewhere": elsewhere},
        "files": [{"path": "config.spec.ts", "content": HOSTILE_SPEC},
                  {"path": "global-setup.ts", "content": "import * as fs from 'fs'; import * as os from 'os';\n"
                   "export default () => fs.writeFileSync(os.tmpdir() + '/global-setup-ran', 'yes');"}]})
    assert response.status_code == 202, response.get_data(as_text=True)
    run = client.get(f"/api/runs/{response.get_json()['runId']}?wait=180").get_json()
    assert run["status"] == "passed" and run["summary"]["passed"] == 1, run
    assert not elsewhere.exists()


def test_the_token_is_not_sent_where_a_redirect_leads_elsewhere() -> None:
    """urllib hands every header to the host a redirect names: SUPERTEST_TOKEN goes to Supertest only."""
    seen: list[tuple[str, str | None]] = []

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/to/"):
                self.send_response(302)
                self.send_header("Location", self.path[len("/to/"):])
                self.end_headers()
                return
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = serve("127.0.0.1", Answer)
    port = server.server_address[1]
    try:
        client = supertest_ci.Client(f"http://127.0.0.1:{port}", "the-token")
        client.request("GET", f"/to/http://127.0.0.1:{port}/same")
        client.request("GET", f"/to/http://localhost:{port}/other-host")
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [("/same", "Bearer the-token"), ("/other-host", None)]


@pytest.mark.parametrize("answer", ["endless line", "bad events", "huge json"])
def test_a_hostile_answer_ends_in_a_clear_failure_not_a_crash_or_all_memory(answer: str) -> None:
    """A live stream whose line never ends, events that are not JSON objects, an answer past any size."""

    class Hostile(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            try:
                if self.path.endswith("/events") and answer == "bad events":
                    self.wfile.write(b"event: test\ndata: [1, 2]\n\nevent: test\ndata: {nope\n\n")
                elif self.path.endswith("/events") or answer == "huge json":
                    while True:  # for ever, until the client stops reading
                        self.wfile.write(b"data: " if self.path.endswith("/events") else b"[" + b"0," * 65536)
            except OSError:
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = serve("127.0.0.1", Hostile)
    client = supertest_ci.Client(f"http://127.0.0.1:{server.server_address[1]}", "t")
    try:
        if answer == "huge json":
            with pytest.raises(supertest_ci.Fail, match="over 67108864 bytes"):
                client.request("GET", "/api/runs/r")
        else:
            assert supertest_ci.stream(client, "r", time.monotonic() + 20) is None
    finally:
        server.shutdown()
        server.server_close()
