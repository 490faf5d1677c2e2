"""How long a job of 12 short tests takes through Supertest, against Playwright run directly.

(a) direct: the job's 12 spec files, named as the worker names them (runs.run_test_filename with each
    test's position), run by `node .../@playwright/test/cli.js test` in a temp dir with the same
    generated config (workspace.prepare + playwright_config(workers=N, retries=0), N = 2) and the
    same child environment (runner.child_env) as the worker. Timed: the `playwright test` process.
(b) app: the same 12 tests saved through POST /api/tests into one job (POST /api/jobs), run by
    POST /api/jobs/run on a stack whose worker has MAX_CONCURRENT_TESTS=N, so its one
    `playwright test` has N workers too; timed from just before the POST until the terminal status
    event arrives on the run's SSE stream, and split into queued, running and delivery by the run's
    startedAt/finishedAt, as in overhead.py.
(c) the same job on a second stack, running alongside the first, with MAX_CONCURRENT_TESTS=1.

One uncounted warm-up of each, then a, b and c in turn for --rounds rounds, starting each round one
place further along, so drift in the load of the machine and whatever a run leaves behind (the
worker deletes a run's directory after its last event) hit all three alike. Every run must pass or
the benchmark stops. Both stacks run as `make run` runs one (supertest.stack.Stack: private
redis-server, SQLite, reports on local disk), in a temp dir; their output goes to a log file (--log
keeps it). Last lines: `job overhead ratio: b/a` and `speed-up 2 over 1: c/b`.
"""
from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/jobs.py` from anywhere
from bench.common import ApiTiming, BenchError, median_parts, parse_args, run_api, run_direct, stacks_in_scratch  # noqa: E402
from supertest.execution.workspace import TestFile  # noqa: E402
from supertest.services.runs import run_test_filename  # noqa: E402

WORKERS = 2  # N: the machine this was written for has two cores
JOB_NAME = "jobs bench"
# (title, page content, what the test then does): small, distinct, and all passing.
TESTS = [
    ("heading greets the visitor", "<h1>Hello, tester</h1>",
     ["await expect(page.getByRole('heading')).toHaveText('Hello, tester');"]),
    ("button has its label", "<button>Save</button>",
     ["await expect(page.getByRole('button')).toHaveText('Save');"]),
    ("link points home", '<a href="/home">Home</a>',
     ["await expect(page.getByRole('link')).toHaveAttribute('href', '/home');"]),
    ("checkbox starts checked", '<input type="checkbox" aria-label="agree" checked>',
     ["await expect(page.getByRole('checkbox')).toBeChecked();"]),
    ("list has three items", "<ul><li>one</li><li>two</li><li>three</li></ul>",
     ["await expect(page.getByRole('listitem')).toHaveCount(3);"]),
    ("input keeps its value", '<input aria-label="name" value="Ada">',
     ["await expect(page.getByLabel('name')).toHaveValue('Ada');"]),
    ("page has its title", "<title>Bench</title><p>body</p>",
     ["await expect(page).toHaveTitle('Bench');"]),
    ("hidden text stays hidden", "<p hidden>secret</p><p>shown</p>",
     ["await expect(page.getByText('secret')).toBeHidden();"]),
    ("disabled button is disabled", "<button disabled>Go</button>",
     ["await expect(page.getByRole('button')).toBeDisabled();"]),
    ("table has a column header", "<table><tr><th>Name</th></tr><tr><td>Ada</td></tr></table>",
     ["await expect(page.getByRole('columnheader')).toHaveText('Name');"]),
    ("click changes the label", "<button onclick=\"this.textContent = 'Clicked'\">Click me</button>",
     ["await page.getByRole('button').click();", "await expect(page.getByRole('button')).toHaveText('Clicked');"]),
    ("typing fills the field", '<input aria-label="city">',
     ["await page.getByLabel('city').fill('Lisbon');", "await expect(page.getByLabel('city')).toHaveValue('Lisbon');"]),
]
TEMPLATE = """import {{ test, expect }} from '@playwright/test';

test({title}, async ({{ page }}) => {{
  await page.setContent({content});
  {steps}
}});
"""
# JSON strings are valid JavaScript strings, quotes and all.
SCRIPTS = [(title, TEMPLATE.format(title=json.dumps(title), content=json.dumps(content), steps="\n  ".join(steps)))
           for title, content, steps in TESTS]


def created(response: requests.Response) -> str:
    """The id of what a POST made; anything but 201 ends the benchmark."""
    if response.status_code != 201:
        raise BenchError(f"{response.request.method} {response.request.path_url} answered "
                         f"{response.status_code}: {response.text[:500]}")
    return response.json()["id"]


def save_job(session: requests.Session, url: str) -> str:
    """Save the tests and a job of them, in order, on one stack; the job's id."""
    ids = [created(session.post(f"{url}/api/tests", json={"title": title, "script": script,
                                                           "description": "bench/jobs.py"}, timeout=30))
           for title, script in SCRIPTS]
    return created(session.post(f"{url}/api/jobs", json={"name": JOB_NAME, "description": "bench/jobs.py",
                                                         "testIds": ids, "retries": 0}, timeout=30))


def main() -> None:
    args = parse_args(__doc__, default_rounds=5)
    # Numbered as a job of more than one test numbers them, so both runs see the same file names.
    specs = [TestFile(run_test_filename(title, n), script) for n, (title, script) in enumerate(SCRIPTS, 1)]
    direct: list[float] = []
    app: dict[int, list[ApiTiming]] = {WORKERS: [], 1: []}
    with (stacks_in_scratch(args.log, *({"MAX_CONCURRENT_TESTS": str(n)} for n in app)) as bench,
          requests.Session() as session):
        session.auth = bench.auth
        jobs = {n: (stack.url, save_job(session, stack.url)) for n, stack in zip(app, bench.stacks, strict=True)}
        print(f"{len(specs)} tests; direct: playwright test with {WORKERS} workers; "
              f"app=K: the job through a stack with MAX_CONCURRENT_TESTS=K", flush=True)

        # Each takes its round's number, 0 for the warm-up, which is not counted; it says what it took.
        def run_a(n: int) -> str:
            seconds = run_direct(bench.settings, bench.scratch / f"direct-{n}", specs, WORKERS)
            if n:
                direct.append(seconds)
            return f"direct {seconds:.2f} s"

        def run_app(workers: int) -> Callable[[int], str]:
            url, job_id = jobs[workers]

            def run_b(n: int) -> str:
                timing = run_api(session, url, "/api/jobs/run", {"jobId": job_id}, len(specs))
                if n:
                    app[workers].append(timing)
                return f"app={workers} {timing.total:.2f} s {timing.parts()}"
            return run_b

        measures = [run_a, *(run_app(workers) for workers in app)]
        print("warm-up:", "  ".join(measure(0) for measure in measures), flush=True)
        for n in range(1, args.rounds + 1):
            turn = (n - 1) % len(measures)
            said = {measure: measure(n) for measure in measures[turn:] + measures[:turn]}
            print(f"round {n}:", "  ".join(said[measure] for measure in measures), flush=True)
    median_a = statistics.median(direct)
    medians = {workers: statistics.median(t.total for t in timings) for workers, timings in app.items()}
    print(f"median direct (workers={WORKERS}): {median_a:.2f} s")
    print(f"median app: {medians[WORKERS]:.2f} s ({median_parts(app[WORKERS])})")
    print(f"job overhead ratio: {medians[WORKERS] / median_a:.2f}")
    for workers in sorted(app):
        print(f"median app MAX_CONCURRENT_TESTS={workers}: {medians[workers]:.2f} s ({median_parts(app[workers])})")
    print(f"speed-up {WORKERS} over 1: {medians[1] / medians[WORKERS]:.2f}x")


if __name__ == "__main__":
    main()
