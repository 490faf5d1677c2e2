"""What the benchmarks share: stacks in a scratch dir, a direct `playwright test`, a run through the API.

Imported by the scripts next to it, after they have put the project root on sys.path.
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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import requests.auth

from supertest import config
from supertest.execution import results, runner, workspace
from supertest.outcomes import PASSED, TERMINAL
from supertest.stack import Stack, free_port

RUN_TIMEOUT = 120.0
PARTS = ("queued", "running", "delivery")
# running, split by the run's live test events: start-up (claim → the first test starts: node,
# Playwright, config, its worker process), test (→ the last test's event), report (→ finishedAt:
# reports written, collected, stored, the outcome recorded).
SPLIT = ("queued", "startup", "test", "report", "delivery")


class BenchError(Exception):
    """A run did not pass, so its timing means nothing."""


@dataclass
class ApiTiming:
    total: float    # seconds from POST to the terminal SSE event, split into the three below
    queued: float   # POST → the worker's claim (startedAt)
    running: float  # startedAt → finishedAt
    delivery: float  # finishedAt → the event in our hands
    started_at: float = 0.0   # the run's startedAt and finishedAt, as Unix times
    finished_at: float = 0.0
    startup: float = 0.0  # running, split (SPLIT)
    test: float = 0.0
    report: float = 0.0

    def parts(self) -> str:
        """This run's split, as the round lines print it."""
        return f"(queued {self.queued:.2f} + running {self.running:.2f} + delivery {self.delivery:.2f})"

    def split(self) -> str:
        """This run's finer split (SPLIT)."""
        return "(" + " + ".join(f"{name} {getattr(self, name):.2f}" for name in SPLIT) + ")"


def median_split(timings: list[ApiTiming]) -> str:
    return ", ".join(f"{name} {statistics.median(getattr(t, name) for t in timings):.2f}" for name in SPLIT)


def median_parts(timings: list[ApiTiming]) -> str:
    """The median of each part: they need not add up to the median total."""
    return ", ".join(f"{name} {statistics.median(getattr(t, name) for t in timings):.2f}" for name in PARTS)


def parse_args(doc: str, default_rounds: int) -> argparse.Namespace:
    """--rounds and --log, as every benchmark takes them; `doc` is the script's docstring."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=default_rounds, help="counted rounds, at least 5")
    parser.add_argument("--log", type=Path, help="keep the output of web, worker and redis in this file")
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("--rounds must be at least 5")
    return args


def run_direct(settings: Mapping[str, Any], run_dir: Path, specs: list[workspace.TestFile], workers: int) -> float:
    """Prepare `run_dir` as the worker does for these specs, run `playwright test` in it; its seconds.

    Every spec must hold one test, and every test must pass.
    """
    tmp_dir = Path(tempfile.mkdtemp(prefix="st-"))
    playwright = workspace.playwright_config(workspace.find_chromium(settings["CHROMIUM_PATH"]), workers, retries=0)
    workspace.prepare(run_dir, specs, settings["NODE_MODULES"], playwright)
    command = [shutil.which("node") or "node", str(Path(settings["NODE_MODULES"]) / "@playwright/test/cli.js"),
               "test", "--config", "playwright.config.js"]
    try:
        start = time.perf_counter()
        done = subprocess.run(command, cwd=run_dir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT,
                              env=runner.child_env(run_dir, tmp_dir, settings["PLAYWRIGHT_BROWSERS_PATH"]))
        elapsed = time.perf_counter() - start
        report = results.read_report(run_dir / "supertest-results.json", run_dir, {spec.filename for spec in specs})
        if done.returncode != 0 or report is None or [t.status for t in report.tests] != [PASSED] * len(specs):
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


def run_api(session: requests.Session, url: str, path: str, body: dict[str, Any], tests: int) -> ApiTiming:
    """POST `body` to the run-starting `path`, follow its statusUrl until the terminal status.

    The run must have passed with `tests` tests passed.
    """
    wall, start = time.time(), time.perf_counter()
    response = session.post(url + path, json=body, timeout=30)
    if response.status_code != 202:
        raise BenchError(f"POST {path} answered {response.status_code}: {response.text[:500]}")
    with session.get(url + response.json()["statusUrl"], stream=True, timeout=(5, RUN_TIMEOUT)) as stream:
        stream.raise_for_status()
        first_start = last_end = None  # Unix times of the first test's start and the last test's end
        for event, run in sse_events(stream):
            if event == "test":
                now = time.time()
                begun = now - (run.get("durationMs") or 0) / 1000
                first_start, last_end = min(first_start or begun, begun), now
            if event == "status" and run["status"] in TERMINAL:
                total = time.perf_counter() - start
                break
        else:
            raise BenchError("the SSE stream closed before a terminal status")
    if run["status"] != PASSED or run["summary"]["passed"] != tests:
        raise BenchError(f"run {run['id']} ended {run['status']} with {run['summary']}: {run.get('errorMessage')}")
    started, finished = (datetime.fromisoformat(run[key].replace("Z", "+00:00")).timestamp()
                         for key in ("startedAt", "finishedAt"))
    timing = ApiTiming(total, started - wall, finished - started, wall + total - finished, started, finished)
    if first_start is not None and last_end is not None:
        timing.startup, timing.test, timing.report = first_start - started, last_end - first_start, finished - last_end
    return timing


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


@dataclass
class Bench:
    """The scratch dir of one benchmark, the settings of its direct runs, its running stacks, and
    the API tokens for them (`session.auth = bench.auth`)."""

    scratch: Path
    settings: dict[str, Any]
    stacks: list[Stack]
    auth: TokenAuth


class TokenAuth(requests.auth.AuthBase):
    """Each stack's own token on the requests to it."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens  # stack URL → token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        for url, token in self.tokens.items():
            if request.url and request.url.startswith(url + "/"):
                request.headers["Authorization"] = f"Bearer {token}"
        return request


def issue_token(stack: Stack) -> str:
    """An account and a token on a fresh stack, made with the commands an operator would use."""
    flask = ["flask", "--app", "wsgi"]
    subprocess.run([*flask, "users", "create", "bench@supertest.test", "--admin", "--password-stdin"],
                   input="a bench password\n", text=True, env=stack.env, cwd=config.PROJECT_ROOT, check=True,
                   capture_output=True)
    issued = subprocess.run([*flask, "tokens", "create", "bench@supertest.test", "--name", "bench"], text=True,
                            env=stack.env, cwd=config.PROJECT_ROOT, check=True, capture_output=True)
    return issued.stdout.strip().splitlines()[-1]


@contextmanager
def stacks_in_scratch(log: Path | None, *variants: Mapping[str, str]) -> Iterator[Bench]:
    """One stack per variant (extra settings), started as `make run` starts one, each with its own
    SQLite database, reports and runs in a temp dir; all of them stopped afterwards.

    A run that fails or a stack that will not start ends the benchmark with a message; the temp
    dir then stays, for the log (which goes there unless `log` names a file).
    """
    scratch = Path(tempfile.mkdtemp(prefix="st-bench-"))
    log = (log or scratch / "stack.log").resolve()
    envs = []
    for n, variant in enumerate(variants):
        home = scratch / f"stack-{n}"
        envs.append({"DATABASE_URL": f"sqlite:///{home / 'supertest.db'}", "REPORTS_DIR": str(home / "reports"),
                     "RUNS_DIR": str(home / "runs"), "REDIS_DIR": str(home / "redis"),
                     "REDIS_URL": "", "S3_ENDPOINT": "",  # empty: unset
                     **variant})
        home.mkdir()
    stacks = [Stack("127.0.0.1", free_port(), env) for env in envs]
    try:
        print(f"starting {'the stack' if len(stacks) == 1 else f'{len(stacks)} stacks'} (log: {log})", flush=True)
        for stack in stacks:
            start_quietly(stack, log)
        auth = TokenAuth({stack.url: issue_token(stack) for stack in stacks})
        yield Bench(scratch, config.from_env({**os.environ, **envs[0]}), stacks, auth)
    except (BenchError, RuntimeError, requests.RequestException, subprocess.CalledProcessError) as error:
        sys.exit(f"benchmark aborted: {error}\n(stack log: {log})")
    finally:
        for stack in stacks:
            stack.stop()
    shutil.rmtree(scratch, ignore_errors=True)
