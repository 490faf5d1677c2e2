"""How much time Supertest adds on top of Playwright itself, for a one-test run.

(a) direct: the spec run by `node .../@playwright/test/cli.js test` in a temp dir, with the same
    generated config (workspace.prepare + playwright_config(workers=1, retries=0)) and the same
    child environment (runner.child_env) as the worker. Timed: the `playwright test` process.
(b) api: the same spec through POST /api/test, timed from just before the POST until the terminal
    status event arrives on the run's SSE stream (statusUrl): what a client actually waits for.
    Each round splits b, by the run's startedAt/finishedAt and the arrival of its test's live event
    (less the test's duration), into queued (POST → the worker's claim), start-up (claim → the test
    starts: node, Playwright's runner, the config, its worker process), test (the test itself, its
    browser's launch included unless a warm runner launched it ahead), report (→ finishedAt:
    Playwright's reports, collecting, storing, recording) and delivery (→ the terminal event over SSE).
(c) playground: the playground's example script (views/pages.py EXAMPLE) the same way as b: what a
    user waits for from Run to passed. It starts SETTLE seconds after b ended, as a user's next
    click would: the worker's fresh warm runner has loaded by then (back to back is throughput.py's).

One uncounted warm-up of each, then a, b and c alternate for --rounds rounds, so drift in the load of
the machine hits both alike. Every run must pass or the benchmark stops. The app runs as `make run`
runs it (supertest.stack.Stack: private redis-server, SQLite, reports on local disk), all in a temp
dir; the stack's own output goes to a log file (--log keeps it). Last lines: `overhead ratio: b/a`
and the median of c.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/overhead.py` from anywhere
from bench.common import ApiTiming, median_split, parse_args, run_api, run_direct, stacks_in_scratch  # noqa: E402
from supertest.execution.workspace import TestFile  # noqa: E402
from supertest.services.runs import run_test_filename  # noqa: E402
from supertest.views.pages import EXAMPLE  # noqa: E402

TITLE = "overhead bench"
SETTLE = 3.0
SPEC = """import { test, expect } from '@playwright/test';

test('greets the visitor', async ({ page }) => {
  await page.setContent('<h1>Hello, tester</h1>');
  await expect(page.getByRole('heading')).toHaveText('Hello, tester');
});
"""


def main() -> None:
    args = parse_args(__doc__, default_rounds=7)
    specs = [TestFile(run_test_filename(TITLE), SPEC)]
    direct: list[float] = []
    api: list[ApiTiming] = []
    playground: list[ApiTiming] = []
    with stacks_in_scratch(args.log, {}) as bench, requests.Session() as session:
        session.auth = bench.auth
        url = bench.stacks[0].url

        def run_a(n: int) -> float:
            return run_direct(bench.settings, bench.scratch / f"direct-{n}", specs, workers=1)

        def run_b() -> ApiTiming:
            return run_api(session, url, "/api/test", {"script": SPEC, "title": TITLE}, tests=1)

        def run_c() -> ApiTiming:
            time.sleep(SETTLE)
            return run_api(session, url, "/api/test", {"script": EXAMPLE, "title": "playground"}, tests=1)

        print(f"warm-up: a {run_a(0):.2f} s  b {run_b().total:.2f} s  c {run_c().total:.2f} s")
        for n in range(1, args.rounds + 1):
            direct.append(run_a(n))
            api.append(b := run_b())
            playground.append(c := run_c())
            print(f"round {n}: a {direct[-1]:.2f} s  b {b.total:.2f} s  {b.split()}  c {c.total:.2f} s", flush=True)
    median_a, median_b = statistics.median(direct), statistics.median(t.total for t in api)
    print(f"median a (direct): {median_a:.2f} s")
    print(f"median b (api):    {median_b:.2f} s  ({median_split(api)})")
    print(f"overhead ratio: {median_b / median_a:.2f}")
    print(f"playground Run → passed: {statistics.median(t.total for t in playground):.2f} s  "
          f"({median_split(playground)})")


if __name__ == "__main__":
    main()
