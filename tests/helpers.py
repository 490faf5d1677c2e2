"""Small helpers the tests share: scripts, starting runs, waiting for them, reading SSE."""
from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import time
import zipfile
from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient
from playwright.sync_api import Page, expect

from supertest.execution import processes
from supertest.outcomes import TERMINAL

RUN_TIMEOUT = 90_000  # ms, in the browser: a run starts Node, Playwright and Chromium, then uploads its report
# Set to a folder to keep a screenshot of each page the browser tests visit, for looking at the UI.
SCREENSHOTS = os.environ.get("SUPERTEST_SCREENSHOTS_DIR")

PASSING = """import { test, expect } from '@playwright/test';

test('greets the visitor', async ({ page }) => {
  await page.setContent('<h1>Hello, tester</h1>');
  await expect(page.getByRole('heading')).toHaveText('Hello, tester');
});
"""

FAILING = """import { test, expect } from '@playwright/test';

test('expects the wrong greeting', async ({ page }) => {
  await page.setContent('<h1>Hello, tester</h1>');
  await expect(page.getByRole('heading')).toHaveText('Goodbye, tester', { timeout: 1000 });
});
"""

# Fails, naming the variables, if any of the app's settings reach the test process.
ENV_PROBE = """import { test, expect } from '@playwright/test';

test('sees none of the app settings', async () => {
  const leaked = Object.keys(process.env).filter(name =>
    /^(DATABASE_URL|REDIS_URL|SECRET_KEY|S3_|AWS_|QUEUE_NAMESPACE|REPORTS_DIR|RUNS_DIR|FLASK)/.test(name));
  expect(leaked).toEqual([]);
  expect(process.env.HOME).toBeTruthy();
});
"""

SYNTAX_ERROR = """import { test, expect } from '@playwright/test';

test('never compiles', async ({ page }) => {
  await page.setContent('<h1>Hello</h1>';
});
"""


def start_run(client: FlaskClient, script: str, title: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"script": script}
    if title is not None:
        body["title"] = title
    response = client.post("/api/test", json=body)
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()


def wait_for_run(client: FlaskClient, run_id: str, timeout: float = 120) -> dict[str, Any]:
    """Poll the run until it reaches a terminal status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/runs/{run_id}").get_json()
        if run["status"] in TERMINAL:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish within {timeout} s; last seen: {run}")


def run_processes(run_id: str, attempt: int | None = None) -> list[int]:
    """Every live process of the run (or of one attempt of it): those with HOME=<its run dir> or
    SUPERTEST_RUN=<run id>-<attempt> (a warm runner's HOME was named before its run; its processes
    started ahead show the mark in their titles), those with the HOME of these, and every other
    process in their sessions (Chromium overwrites its environment with its titles)."""
    home = f"/{run_id}-{attempt}".encode() if attempt else f"/{run_id}-".encode()
    mark = f"SUPERTEST_RUN={run_id}-{attempt}".encode() if attempt else f"SUPERTEST_RUN={run_id}-".encode()
    marked = {pid for pid in processes.pids()
              if any((var.startswith(b"HOME=") and home in var) or var.startswith(mark)
                     for var in processes.environ_of(pid)) or mark in cmdline(pid)}
    # A warm runner's processes started ahead of the run (its runner and spare worker: the mark in
    # their titles; their browser: in no environment) share the HOME of its marked ones.
    homes = {var for pid in marked for var in processes.environ_of(pid) if var.startswith(b"HOME=")}
    marked |= {pid for pid in processes.pids() if homes & set(processes.environ_of(pid))}
    sessions = {processes.session_of(pid) for pid in marked} - {None}
    return sorted(pid for pid in processes.pids() if processes.session_of(pid) is not None
                  and (pid in marked or processes.session_of(pid) in sessions))


def open_fds() -> int:
    """How many files this process has open: a file or connection left open shows here."""
    return len(os.listdir("/proc/self/fd"))


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until `condition()` is true; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.1)
    return time.monotonic() - started


def read_sse(client: FlaskClient, url: str, timeout: float = 120) -> list[tuple[str, Any]]:
    """Read a whole SSE stream (it closes after the terminal status) into (event, data) pairs.

    Comments such as `: ping` come back as ("comment", text).
    """
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/event-stream"
    deadline = time.monotonic() + timeout
    events: list[tuple[str, Any]] = []
    buffer = ""
    for chunk in response.response:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            frame, buffer = buffer.split("\n\n", 1)
            events.append(parse_frame(frame))
        assert time.monotonic() < deadline, f"stream still open after {timeout} s: {events}"
    response.close()
    return events


def parse_frame(frame: str) -> tuple[str, Any]:
    if frame.startswith(":"):
        return "comment", frame[1:].strip()
    event, data = "message", []
    for line in frame.splitlines():
        field, _, value = line.partition(": ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
    text = "\n".join(data)
    try:
        return event, json.loads(text)
    except ValueError:
        return event, text


def passing_script(name: str) -> str:
    """A test that passes, named `name` (any characters)."""
    return ("import { test, expect } from '@playwright/test';\n\n"
            f"test({json.dumps(name)}, async ({{ page }}) => {{\n"
            "  await page.setContent('<p>ok</p>');\n"
            "  await expect(page.locator('p')).toHaveText('ok');\n"
            "});\n")


# Fails on its first attempt and passes on the retry: flaky whenever retries ≥ 1.
FLAKY = """import { test, expect } from '@playwright/test';

test('passes on the second try', async ({ page }, testInfo) => {
  await page.setContent(`<p>attempt ${testInfo.retry}</p>`);
  await expect(page.locator('p')).toHaveText('attempt 1', { timeout: 500 });
});
"""


def waits(seconds: float) -> str:
    """A test that passes after `seconds`, with its browser open all along."""
    return ("import { test, expect } from '@playwright/test';\n\n"
            f"test('takes {seconds} s', async ({{ page }}) => {{\n"
            "  await page.setContent('<p>busy</p>');\n"
            f"  await page.waitForTimeout({int(seconds * 1000)});\n"
            "  await expect(page.locator('p')).toHaveText('busy');\n"
            "});\n")


def save_test(client: FlaskClient, title: str, script: str, description: str = "") -> str:
    response = client.post("/api/tests", json={"title": title, "script": script, "description": description})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["id"]


def save_job(client: FlaskClient, name: str, test_ids: list[str], retries: int = 0) -> str:
    response = client.post("/api/jobs", json={"name": name, "testIds": test_ids, "retries": retries})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["id"]


def start_job(client: FlaskClient, job_id: str) -> dict[str, Any]:
    response = client.post("/api/jobs/run", json={"jobId": job_id})
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()


def report_summary(client: FlaskClient, run_id: str, url: str | None = None) -> dict[str, Any]:
    """The data inside a Playwright HTML report (fetched through the proxy, from the run's or from
    `url`): its report.json."""
    html = client.get(url or f"/api/test-results/{run_id}/report/index.html").get_data(as_text=True)
    found = re.search(r'id="playwrightReportBase64">data:application/zip;base64,([^<]+)<', html)
    assert found, "no embedded report data in index.html"
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(found.group(1)))) as archive:
        return json.loads(archive.read("report.json"))


def screenshot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=os.path.join(SCREENSHOTS, f"ui-{name}.png"), full_page=True)


def expect_status(page: Page, status: str) -> None:
    expect(page.locator("#run-status .badge")).to_have_text(status, timeout=RUN_TIMEOUT)


def warm_processes(runs_dir: str) -> list[int]:
    """The live processes of the warm runners under `runs_dir`, idle or serving a run: those with
    HOME=<runs_dir>/warm-…, and the other processes of their sessions (pasta, Chromium)."""
    home = f"HOME={runs_dir}/warm-".encode()
    marked = {pid for pid in processes.pids() if any(var.startswith(home) for var in processes.environ_of(pid))}
    sessions = {processes.session_of(pid) for pid in marked} - {None}
    return sorted(pid for pid in processes.pids() if processes.session_of(pid) in sessions or pid in marked)


def idle_runners(runs_dir: str) -> list[int]:
    """The warm runners' node processes that wait for a run (no SUPERTEST_RUN in their environment)
    and are ready for one: warm.js has forked its spare test worker, which it does just before it
    says so. A runner still loading is left out: a run would wait for it, or, on a loaded machine,
    start cold (READY_SECONDS)."""
    home = f"HOME={runs_dir}/warm-".encode()
    waiting = [pid for pid in processes.pids()
               if (environ := processes.environ_of(pid)) and any(var.startswith(home) for var in environ)
               and not any(var.startswith(b"SUPERTEST_RUN=") for var in environ)
               and cmdline(pid).split(b"\0")[:2][-1].endswith(b"/warm.js")]  # node, not the bwraps around it
    spares = {processes.session_of(pid) for pid in processes.pids() if b"/warm-worker.js\0" in cmdline(pid)}
    return [pid for pid in waiting if processes.session_of(pid) in spares]


def kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # gone with a parent killed before it
            pass


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read()
    except OSError:
        return b""
