"""How much time Supertest adds on top of Playwright itself, for a one-test run.

(a) direct: the spec run by `node .../@playwright/test/cli.js test` in a temp dir, with the same
    generated config (workspace.prepare + playwright_config(workers=1, retries=0)) and the same
    child environment (runner.child_env) as the worker. Timed: the `playwright test` process.
(b) api: the same spec through POST /api/test, timed from just before the POST until the terminal
    status event arrives on the run's SSE stream (statusUrl): what a client actually waits for.
    Each round splits b, by the run's startedAt/finishedAt, into queued (POST → worker's claim),
    running (claim → finish: prepare, the same playwright run, report save) and delivery (→ SSE).

One uncounted warm-up of each, then a and b alternate for --rounds rounds, so drift in the load of
the machine hits both alike. Every run must pass or the benchmark stops. The app runs as `make run`
runs it (supertest.stack.Stack: private redis-server, SQLite, reports on local disk), all in a temp
dir; the stack's own output goes to a log file (--log keeps it). Last line: `overhead ratio: b/a`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/overhead.py` from anywhere
from supertest import config  # noqa: E402
from supertest.execution import results, runner, workspace  # noqa: E402
from supertest.services.runs import spec_filename  # noqa: E402
from supertest.models import PASSED, TERMINAL  # noqa: E402
from supertest.stack import Stack, free_port  # noqa: E402

TITLE = "overhead bench"
SPEC = """import { test, expect } from '@playwright/test';

test('greets the visitor', async ({ page }) => {
  await page.setContent('<h1>Hello, tester</h1>');
  await expect(page.getByRole('heading')).toHaveText('Hello, tester');
});
"""
RUN_TIMEOUT = 120.0


class BenchError(Exception):
    """A run did not pass, so its timing means nothing."""


@dataclass
class ApiTiming:
    total: float    # seconds from POST to the terminal SSE event, split into the three below
    queued: float   # POST → the worker's claim (startedAt)
    running: float  # startedAt → finishedAt
    delivery: float  # finishedAt → the event in our hands


def run_direct(settings: dict[str, Any], scratch: Path, n: int) -> float:
    """(a): prepare a run dir as the worker does, run `playwright test` in it; its seconds."""
    run_dir, tmp_dir = scratch / f"direct-{n}", Path(tempfile.mkdtemp(prefix="st-"))
    playwright = workspace.playwright_config(workspace.find_chromium(settings["CHROMIUM_PATH"]), workers=1, retries=0)
    workspace.prepare(run_dir, [workspace.Spec(spec_filename(TITLE), SPEC)], settings["NODE_MODULES"], playwright)
    command = [shutil.which("node") or "node", str(Path(settings["NODE_MODULES"]) / "@playwright/test/cli.js"),
               "test", "--config", "playwright.config.js"]
    try:
        start = time.perf_counter()
        done = subprocess.run(command, cwd=run_dir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT,
                              env=runner.child_env(run_dir, tmp_dir, settings["PLAYWRIGHT_BROWSERS_PATH"]))
        elapsed = time.perf_counter() - start
        report = results.read_report(run_dir / "results.json", run_dir)
        if done.returncode != 0 or report is None or [test.status for test in report.tests] != ["passed"]:
            raise BenchError(f"direct run exited {done.returncode}:\n{done.stdout.decode(errors='replace')[-3000:]}")
        return elapsed
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(tmp_dir, ignore_errors=True)


def sse_events(response: requests.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a text/event-stream as they arrive; comments (pings) skipped."""
    event, data = "message", []
    for raw in response.iter_lines(chunk_size=None):
        line = raw.decode()
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            yield event, json.loads("\n".join(data))
            event, data = "message", []


def run_api(session: requests.Session, url: str) -> ApiTiming:
    """(b): POST the spec and follow its statusUrl until the terminal status, which must be passed."""
    wall, start = time.time(), time.perf_counter()
    response = session.post(f"{url}/api/test", json={"script": SPEC, "title": TITLE}, timeout=30)
    if response.status_code != 202:
        raise BenchError(f"POST /api/test answered {response.status_code}: {response.text[:500]}")
    with session.get(url + response.json()["statusUrl"], stream=True, timeout=(5, RUN_TIMEOUT)) as stream:
        stream.raise_for_status()
        for event, run in sse_events(stream):
            if event == "status" and run["status"] in TERMINAL:
                total = time.perf_counter() - start
                break
        else:
            raise BenchError("the SSE stream closed before a terminal status")
    if run["status"] != PASSED or run["summary"]["passed"] != 1:
        raise BenchError(f"run {run['id']} ended {run['status']}: {run.get('errorMessage')}")
    started, finished = (datetime.fromisoformat(run[key].replace("Z", "+00:00")).timestamp()
                         for key in ("startedAt", "finishedAt"))
    return ApiTiming(total, started - wall, finished - started, wall + total - finished)


def start_quietly(stack: Stack, log: Path) -> None:
    """Start the stack with its processes' stdout and stderr going to `log` rather than ours."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log.open("ab") as sink:
        os.dup2(sink.fileno(), 1), os.dup2(sink.fileno(), 2)
        try:
            stack.start()
        finally:
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="counted rounds of a then b, at least 5")
    parser.add_argument("--log", type=Path, help="keep the output of web, worker and redis in this file")
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("--rounds must be at least 5")
    scratch = Path(tempfile.mkdtemp(prefix="st-bench-"))
    env = {"DATABASE_URL": f"sqlite:///{scratch / 'supertest.db'}", "REPORTS_DIR": str(scratch / "reports"),
           "RUNS_DIR": str(scratch / "runs"), "REDIS_URL": "", "S3_ENDPOINT": ""}  # empty: unset
    settings = config.from_env({**os.environ, **env})
    log = (args.log or scratch / "stack.log").resolve()
    stack = Stack("127.0.0.1", free_port(), env)
    direct: list[float] = []
    api: list[ApiTiming] = []
    try:
        print(f"starting the stack (log: {log})", flush=True)
        start_quietly(stack, log)
        with requests.Session() as session:
            print(f"warm-up: a {run_direct(settings, scratch, 0):.2f} s  b {run_api(session, stack.url).total:.2f} s")
            for n in range(1, args.rounds + 1):
                direct.append(run_direct(settings, scratch, n))
                api.append(b := run_api(session, stack.url))
                print(f"round {n}: a {direct[-1]:.2f} s  b {b.total:.2f} s  (queued {b.queued:.2f} + "
                      f"running {b.running:.2f} + delivery {b.delivery:.2f})", flush=True)
    except (BenchError, RuntimeError, requests.RequestException) as error:
        stack.stop()
        sys.exit(f"benchmark aborted: {error}\n(stack log: {log})")  # scratch stays, for the log
    finally:
        stack.stop()
    shutil.rmtree(scratch, ignore_errors=True)
    median_a, median_b = statistics.median(direct), statistics.median(t.total for t in api)
    parts = ", ".join(f"{name} {statistics.median(getattr(t, name) for t in api):.2f}"
                      for name in ("queued", "running", "delivery"))
    print(f"median a (direct): {median_a:.2f} s")
    print(f"median b (api):    {median_b:.2f} s  ({parts})")
    print(f"overhead ratio: {median_b / median_a:.2f}")


if __name__ == "__main__":
    main()
