"""How fast the pages people use most answer once the history is long: 100,000 runs, 1,000,000 results.

A PostgreSQL database of its own (created here, dropped at the end, even on Ctrl-C) is migrated as
a deployment's is, then filled directly with COPY, not through the queue: 500 saved tests, 50 jobs of
10 tests each, and 100,000 runs over the last 200 days (40,000 job runs of 10 tests with 2 cases
each, 60,000 runs of one test with 3 or 4 cases), so each test has about 920 runs in its history.
Statuses are mostly passed, with failures, flaky tests, errors, timeouts and cancellations
mixed in; the newest few runs are still queued or running.

Each page or endpoint is then asked for through the Flask test client, with an API token, so the
whole path counts (auth, view, queries, template or JSON): two uncounted warm-ups (one when a request
takes over a second), then --requests
requests (fewer for one that takes over 20 s in all). Printed per line: p50 and p95 in ms, the
ratio of p50 to a trivial request's p50 (GET /api/variables, an empty list) measured in the same
process, and how many SQL statements one request ran. Target: p95 under 150 ms each; for any that
misses it, EXPLAIN ANALYZE of its slowest statements.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import event, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/history.py` from anywhere
from supertest import config, create_app  # noqa: E402
from supertest.extensions import db  # noqa: E402
from supertest.models import Run  # noqa: E402
from supertest.services import accounts, metrics, runs, tests  # noqa: E402
from supertest.views.test_pages import PAGE_SIZE as TESTS_PAGE  # noqa: E402

TESTS, JOBS, TESTS_PER_JOB = 500, 50, 10
JOB_RUNS, TEST_RUNS = 40_000, 60_000
CASES_PER_JOB_TEST = 2  # 40,000 × 10 × 2 = 800,000 results; 60,000 test runs with 3 or 4 cases: 200,000
SPAN = timedelta(days=200)
RUNNING_NOW, QUEUED_NOW = 3, 5  # the newest runs: not finished, so without results
TARGET_MS = 150.0
# A scrape that adds up the settled runs again: a process's first, then one per SETTLED_PERIOD
# (services/metrics.py). Shown, not held to the target: it is not what a scrape costs.
ONCE_A_PERIOD = "metrics, 1st scrape of a period"
SLOW_BUDGET_S = 20.0  # an endpoint this slow gets fewer requests, so the benchmark still ends
SCRIPT = "import { test, expect } from '@playwright/test';\n\ntest('case', async ({ page }) => {});\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="counted requests per endpoint, at least 5")
    parser.add_argument("--admin-url", default=os.environ.get("SUPERTEST_BENCH_POSTGRES",
                                                              "postgresql://127.0.0.1:5432/test"),
                        help="a PostgreSQL database to connect to for CREATE and DROP DATABASE")
    args = parser.parse_args()
    if args.requests < 5:
        parser.error("--requests must be at least 5")
    return args


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A database of our own, dropped afterwards whatever happens."""
    name = f"supertest_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Filled:
    """What the fill made that the requests need."""

    test_ids: list[str]
    job_ids: list[str]
    job_run_id: str = ""
    counts: dict[str, int] = field(default_factory=dict)


def run_statuses(rng: random.Random, tests: int) -> tuple[str, list[str]]:
    """A finished run's status and each of its tests' status (outcomes.test_fate's words)."""
    draw = rng.random()
    if draw < 0.01:
        return "error", ["error"] * tests
    if draw < 0.02:
        return "timeout", ["timeout"] * tests
    if draw < 0.03:
        return "cancelled", ["cancelled"] * tests
    fates = ["passed"] * tests
    if draw < 0.12:
        fates[rng.randrange(tests)] = "failed"
        return "failed", fates
    if draw < 0.16:
        fates[rng.randrange(tests)] = "flaky"
    return "passed", fates


CASE_STATUS = {"passed": "passed", "failed": "failed", "flaky": "flaky", "timeout": "timedOut",
               "error": "failed", "cancelled": "interrupted"}


def fill(url: str, seed: int = 7) -> Filled:
    """COPY the tests, jobs, runs, run tests and results in; ANALYZE. The columns are the models' own."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    test_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(TESTS)]
    job_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(JOBS)]
    job_tests = {job_id: test_ids[j * TESTS_PER_JOB:(j + 1) * TESTS_PER_JOB] for j, job_id in enumerate(job_ids)}
    titles = {test_id: f"test {n:03d}" for n, test_id in enumerate(test_ids)}
    names = {job_id: f"job {n:02d}" for n, job_id in enumerate(job_ids)}
    kinds = ["job"] * JOB_RUNS + ["test3"] * (TEST_RUNS * 2 // 3) + ["test4"] * (TEST_RUNS // 3)
    rng.shuffle(kinds)
    filled = Filled(test_ids, job_ids)
    counts = {"runs": 0, "run_tests": 0, "test_results": 0}
    last_run: dict[str, datetime] = {}
    step = SPAN / len(kinds)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY tests (id, title, script, description, saved, created_at, updated_at) FROM STDIN") as copy:
            for test_id in test_ids:
                copy.write_row((test_id, titles[test_id], SCRIPT, "", True, now - SPAN, now - SPAN))
        with cur.copy("COPY jobs (id, name, description, retries, timeout_ms, created_at, updated_at, last_run_at)"
                      " FROM STDIN") as copy:
            for job_id in job_ids:
                copy.write_row((job_id, names[job_id], "", 1, None, now - SPAN, now - SPAN, None))
        with cur.copy("COPY job_tests (job_id, position, test_id) FROM STDIN") as copy:
            for job_id, ids in job_tests.items():
                for position, test_id in enumerate(ids):
                    copy.write_row((job_id, position, test_id))
        run_rows: list[tuple[Any, ...]] = []
        run_test_rows: list[tuple[Any, ...]] = []
        result_rows: list[tuple[Any, ...]] = []
        run_test_id = result_id = 0
        owner: tuple[str | None, str | None]  # (test_id, job_id)
        for i, kind in enumerate(kinds):
            run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            created = now - SPAN + step * i + timedelta(microseconds=rng.randrange(1000))
            unfinished = len(kinds) - i <= RUNNING_NOW + QUEUED_NOW
            if kind == "job":
                job_id = rng.choice(job_ids)
                ran, cases, owner, title = job_tests[job_id], CASES_PER_JOB_TEST, (None, job_id), names[job_id]
                last_run[job_id] = created
            else:
                test_id = rng.choice(test_ids)
                ran, cases, owner, title = [test_id], int(kind[-1]), (test_id, None), titles[test_id]
            if unfinished:
                status = "running" if len(kinds) - i <= RUNNING_NOW else "pending"
                fates = ["pending"] * len(ran)
            else:
                status, fates = run_statuses(rng, len(ran))
            started = None if status == "pending" else created + timedelta(seconds=1)
            finished = None if unfinished else created + timedelta(seconds=rng.randrange(3, 90))
            summary = {"passed": 0, "failed": 0, "flaky": 0, "skipped": 0}
            for position, (test_id, fate) in enumerate(zip(ran, fates, strict=True)):
                run_test_id += 1
                filename = f"{position + 1:03d}-{titles[test_id].replace(' ', '-')}.spec.ts"
                run_test_rows.append((run_test_id, run_id, created, position, test_id, titles[test_id], filename,
                                      SCRIPT, fate))
                if unfinished:
                    continue
                for case in range(cases):
                    result_id += 1
                    # One failing or flaky case makes the test's fate; the others passed.
                    case_status = CASE_STATUS[fate] if case == 0 else "passed"
                    summary[case_status if case_status in summary else "failed"] += 1
                    error = "Error: expect(locator).toHaveText(expected) failed" if case_status != "passed" else None
                    result_rows.append((result_id, run_id, result_id, f"case {case}", filename, case_status,
                                        rng.randrange(50, 5000), 1 if case_status == "flaky" else 0, error,
                                        run_test_id))
            run_rows.append((run_id, kind[:4], owner[0], owner[1], rng.choice(("ui", "api")), 1 if owner[1] else 0,
                             1_800_000 if owner[1] else 900_000, title, status, 1, None, None,
                             "bench:1" if status == "running" else None, started if status == "running" else None,
                             None if unfinished else "s3", sum(summary.values()), summary["passed"],
                             summary["failed"], summary["flaky"], summary["skipped"], created, started, finished))
        filled.job_run_id = next(row[0] for row in reversed(run_rows) if row[1] == "job" and row[7] != "pending")
        with cur.copy("COPY runs (id, kind, test_id, job_id, trigger, retries, timeout_ms, title, status, attempt,"
                      " error_message, restarted_because, worker, heartbeat_at, report_store, total, passed, failed,"
                      " flaky, skipped, created_at, started_at, finished_at) FROM STDIN") as copy:
            for row in run_rows:
                copy.write_row(row)
        with cur.copy("COPY run_tests (id, run_id, run_created_at, position, test_id, title, filename, script, status)"
                      " FROM STDIN") as copy:
            for run_test_row in run_test_rows:
                copy.write_row(run_test_row)
        with cur.copy("COPY test_results (id, run_id, position, title, file, status, duration_ms, retries, error,"
                      " run_test_id) FROM STDIN") as copy:
            for result_row in result_rows:
                copy.write_row(result_row)
        for job_id, moment in last_run.items():
            cur.execute("UPDATE jobs SET last_run_at = %s WHERE id = %s", (moment, job_id))
        # The ids were given here, not by the sequences: move them past what is in.
        cur.execute("SELECT setval('run_tests_id_seq', %s), setval('test_results_id_seq', %s)",
                    (run_test_id, result_id))
        counts.update(runs=len(run_rows), run_tests=len(run_test_rows), test_results=len(result_rows))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # as autovacuum would have, long before a history got this long
    filled.counts = counts
    return filled


@dataclass
class Statement:
    sql: str
    parameters: Any
    seconds: float


class StatementLog:
    """Every SQL statement the app's engine runs while `recording`, with its time."""

    def __init__(self, app: Flask) -> None:
        self.recording = False
        self.statements: list[Statement] = []
        with app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if self.recording:
            self.statements.append(Statement(statement, parameters,
                                             time.perf_counter() - conn.info.pop("bench_started")))

    @contextmanager
    def record(self) -> Iterator[list[Statement]]:
        self.statements, self.recording = [], True
        try:
            yield self.statements
        finally:
            self.recording = False


@dataclass
class Timing:
    name: str
    path: str
    samples: list[float]  # seconds
    statements: list[Statement]

    def p(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.samples) * 1000


def measure(app: Flask, log: StatementLog, token: str, name: str, path: str, count: int,
            before: Callable[[], None] = lambda: None) -> Timing:
    """Warm up (twice, unless slow), then time `count` GETs of `path`: fewer, at least 5, past SLOW_BUDGET_S.
    `before` runs before each request, untimed."""
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(2):
        before()
        start = time.perf_counter()
        response = client.get(path, headers=headers)
        if response.status_code != 200:
            sys.exit(f"benchmark aborted: GET {path} answered {response.status_code}: {response.text[:500]}")
        if time.perf_counter() - start > 1:
            break  # one warm-up is enough for a request this slow
    before()
    with log.record() as statements:
        client.get(path, headers=headers)
    samples: list[float] = []
    spent = time.perf_counter()
    while len(samples) < count and (len(samples) < 5 or time.perf_counter() - spent < SLOW_BUDGET_S):
        before()
        start = time.perf_counter()
        client.get(path, headers=headers)
        samples.append(time.perf_counter() - start)
    return Timing(name, path, samples, list(statements))


def clip(text: str, most: int) -> str:
    """Long IN lists stay readable: their start, and how much was left out."""
    return text if len(text) <= most else f"{text[:most]}… ({len(text) - most} more characters)"


def explain(app: Flask, timing: Timing, most: int = 3) -> None:
    """EXPLAIN ANALYZE of the slowest statements one request of `timing` ran."""
    slowest = sorted(timing.statements, key=lambda s: s.seconds, reverse=True)[:most]
    print(f"\n--- {timing.name} ({timing.path}): {len(timing.statements)} statements in one request, "
          f"{sum(s.seconds for s in timing.statements) * 1000:.1f} ms in all; the slowest:")
    with app.app_context():
        connection = db.session.connection()
        for statement in slowest:
            print(f"\n[{statement.seconds * 1000:.1f} ms] {clip(statement.sql, 1500)}\n"
                  f"  parameters: {clip(str(statement.parameters), 300)}")
            plan = connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement.sql, statement.parameters)
            for (line,) in plan:
                print("  " + clip(line, 300))
        db.session.rollback()


def main() -> None:
    args = parse_args()
    with scratch_database(args.admin_url) as url, tempfile.TemporaryDirectory(prefix="st-bench-") as scratch:
        env = {"DATABASE_URL": url, "SECRET_KEY": "bench-" + uuid.uuid4().hex, "S3_ENDPOINT": "",
               "REPORTS_DIR": str(Path(scratch) / "reports"), "RUNS_DIR": str(Path(scratch) / "runs"),
               "REDIS_URL": os.environ.get("REDIS_URL", "")}
        app = create_app(config.from_env(env))
        with app.app_context():
            upgrade()
        started = time.perf_counter()
        filled = fill(url.replace("postgresql+psycopg://", "postgresql://"))
        print(f"filled in {time.perf_counter() - started:.0f} s: {TESTS} tests, {JOBS} jobs, "
              + ", ".join(f"{n:,} {table}" for table, n in filled.counts.items()), flush=True)
        with app.app_context():
            user = accounts.create_user("bench@supertest.test", "a bench password", admin=True)
            token = accounts.create_token(user, "bench")[1]
            newest_first = select(Run).order_by(Run.created_at.desc(), Run.id.desc())
            deep = runs.encode_cursor(db.session.scalars(newest_first.offset(60_000).limit(1)).one())
            page_of_tests = tests.page_saved(TESTS_PAGE * 5)  # the cursor after the 5th page of the Tests list
            later_tests = page_of_tests.next_cursor
            db.session.remove()
        test_id, job_id = filled.test_ids[123], filled.job_ids[17]
        endpoints = [
            ("baseline: GET /api/variables", "/api/variables"),
            ("dashboard", "/"),
            ("tests list (50 of 500)", "/tests"),
            ("tests list, 6th page", f"/tests?cursor={later_tests}"),
            ("tests list, title search", "/tests?q=test+12"),
            ("test page", f"/tests/{test_id}"),
            ("jobs list (50 jobs)", "/jobs"),
            ("job page", f"/jobs/{job_id}"),
            ("runs list, first page", "/runs"),
            ("runs list, page at 60,000", f"/runs?cursor={deep}"),
            ("run page (a job run)", f"/runs/{filled.job_run_id}"),
            ("api runs?status=failed", "/api/runs?status=failed"),
            ("api runs?status=cancelled", "/api/runs?status=cancelled"),
            ("api runs?testId", f"/api/runs?testId={test_id}"),
            ("api runs at 60,000", f"/api/runs?cursor={deep}"),
            ("api tests (500)", "/api/tests"),
            ("api tests/<id>", f"/api/tests/{test_id}"),
            ("api jobs", "/api/jobs"),
            ("metrics (Prometheus)", "/metrics"),
            (ONCE_A_PERIOD, "/metrics"),
            ("operations page", "/operations"),
        ]
        log = StatementLog(app)

        def forget_settled() -> None:
            """As on a process's first scrape, or once a period when the boundary moves (services/metrics.py)."""
            app.extensions.pop(metrics.SETTLED_KEY, None)

        timings = [measure(app, log, token, name, path, args.requests,
                           forget_settled if name == ONCE_A_PERIOD else lambda: None)
                   for name, path in endpoints]
        baseline = timings[0].p50
        print(f"\n{'':34} {'p50 ms':>8} {'p95 ms':>8} {'p50/base':>9} {'queries':>8} {'n':>4}")
        for timing in timings:
            mark = "" if timing.p(0.95) < TARGET_MS else "  MISSES the target"
            mark = "  (not held to the target)" if timing.name == ONCE_A_PERIOD else mark
            print(f"{timing.name:34} {timing.p50:8.1f} {timing.p(0.95):8.1f} {timing.p50 / baseline:9.1f} "
                  f"{len(timing.statements):8d} {len(timing.samples):4d}{mark}")
        held = [timing for timing in timings[1:] if timing.name != ONCE_A_PERIOD]
        missed = [timing for timing in held if timing.p(0.95) >= TARGET_MS]
        print(f"\n{len(held) - len(missed)} of {len(held)} under {TARGET_MS:.0f} ms at p95")
        for timing in missed:
            explain(app, timing)
        with app.app_context():
            db.engine.dispose()  # let the database go


if __name__ == "__main__":
    main()
