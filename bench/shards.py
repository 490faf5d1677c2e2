"""How much sooner a big job ends spread over 4 workers, balanced by history, than on one.

A job of 24 tests that wait 1 to 10 s (no browser: the wait, not this 2-core machine, is the
work), on a stack (supertest.stack.Stack, SQLite, reports on local disk) of 4 worker processes of
one thread, with MAX_CONCURRENT_TESTS=1, so a shard runs its tests one after the other:

(a) 1 shard: the job as one run on one worker, through the API (POST to the terminal SSE event).
    It also gives every test its history.
(b) 4 shards split by count: Playwright's own `--shard=i/4`, four `playwright test` processes at
    once, run directly (bench/common.py's run_direct setup) with the same specs and config: no
    Supertest in the way, so this one is, if anything, flattered.
(c) 4 shards balanced by history: the same tests as a job with shards 4, through the API.

Prints each wall time and `shard balance: <slowest shard ÷ ideal>` for (b) and (c), where ideal is
max(total ÷ 4, the longest test), total being the sum of the tests' waits. For (b) a shard's time
is its process's. For (c) a shard's time is its wall time from its claim by a worker to its end
(durationMs: writing its folder, the sandbox, Playwright's start, its tests, collecting, redacting
and storing its blob report); the balance is given both ways: on that wall time (what the user
waits for, the honest figure) and on the sum of its tests' own durations (what the plan decides).
Then where each shard's time went beyond its tests (from the workers' log lines: taking its warm
runner; Playwright's start, its first test's set-up, the time around its other tests outside their
own durations, its end; collecting, storing, recording), and the merge.
Targets: (c)'s balance at most 1.1, and (c) at least 3× faster than (a). `--log FILE` keeps the
stack's log.
"""
from __future__ import annotations

import argparse
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/shards.py` from anywhere
from bench.common import BenchError, run_api, stacks_in_scratch  # noqa: E402
from supertest.execution import runner, workspace  # noqa: E402
from supertest.services.runs import run_test_filename  # noqa: E402

SHARDS = 4
# 24 waits from 1 to 10 s, the slow ones first in the job, as a folder of end-to-end flows often is:
# equal counts then make unequal shards. Shuffled within each half (seeded: the same each time).
WAITS = [1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 10][::-1]
_random = random.Random(14)
WAITS = _random.sample(WAITS[:12], 12) + _random.sample(WAITS[12:], 12)


def script(n: int, seconds: int) -> str:
    return ("import { test } from '@playwright/test';\n\n"
            f"test('waits {seconds} s (#{n})', async () => {{\n"
            f"  await new Promise((resolve) => setTimeout(resolve, {seconds * 1000}));\n"
            "});\n")


def playwright_shards(settings: dict, specs: list[workspace.TestFile]) -> list[float]:
    """(b): `playwright test --shard=i/4`, the four at once, each in its own copy of the run
    directory; each one's seconds."""
    scratch = Path(tempfile.mkdtemp(prefix="st-bench-shard-"))
    config = workspace.playwright_config(workspace.find_chromium(settings["CHROMIUM_PATH"]), 1, retries=0)
    cli = Path(settings["NODE_MODULES"]) / "@playwright/test/cli.js"
    try:
        processes = []
        for i in range(1, SHARDS + 1):
            run_dir, tmp_dir = scratch / f"shard-{i}", scratch / f"tmp-{i}"
            tmp_dir.mkdir()
            workspace.prepare(run_dir, specs, settings["NODE_MODULES"], config)
            command = [shutil.which("node") or "node", str(cli), "test", "--config", "playwright.config.js",
                       f"--shard={i}/{SHARDS}"]
            processes.append((time.perf_counter(), subprocess.Popen(
                command, cwd=run_dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                env=runner.child_env(run_dir, tmp_dir, settings["PLAYWRIGHT_BROWSERS_PATH"]))))
        times: dict[int, float] = {}
        deadline = time.perf_counter() + 300
        while len(times) < len(processes):  # each one's time as it ends, whichever ends first
            if time.perf_counter() > deadline:
                raise BenchError("playwright test --shard took over 300 s")
            for i, (started, process) in enumerate(processes):
                if i not in times and process.poll() is not None:
                    if process.returncode != 0:
                        raise BenchError(f"playwright test --shard exited {process.returncode}")
                    times[i] = time.perf_counter() - started
            time.sleep(0.05)
        return [times[i] for i in range(len(processes))]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, help="the stack's log (default: in its temp dir, removed at the end)")
    args = parser.parse_args()
    total, longest = sum(WAITS), max(WAITS)
    ideal = max(total / SHARDS, longest)
    variant = {"WORKER_PROCESSES": str(SHARDS), "WORKER_THREADS": "1", "MAX_CONCURRENT_TESTS": "1"}
    with stacks_in_scratch(args.log, variant) as bench:
        [stack] = bench.stacks
        session = requests.Session()
        session.auth = bench.auth
        url = stack.url
        ids = []
        for n, seconds in enumerate(WAITS, 1):
            response = session.post(f"{url}/api/tests", json={"title": f"waits {seconds} s #{n}",
                                                               "script": script(n, seconds)}, timeout=30)
            response.raise_for_status()
            ids.append(response.json()["id"])
        jobs = {}
        for name, shards in (("one shard", 1), ("four shards", SHARDS)):
            response = session.post(f"{url}/api/jobs", json={"name": name, "testIds": ids, "shards": shards},
                                    timeout=30)
            response.raise_for_status()
            jobs[shards] = response.json()["id"]
        print(f"24 tests waiting {min(WAITS)}-{longest} s, {total} s in all; ideal for 4 shards {ideal:.1f} s",
              flush=True)

        one = run_api(session, url, "/api/jobs/run", {"jobId": jobs[1]}, len(WAITS))
        print(f"1 shard: {one.total:.1f} s (running {one.running:.1f})", flush=True)

        specs = [workspace.TestFile(run_test_filename(f"waits {s} s #{n}", n), script(n, s))
                 for n, s in enumerate(WAITS, 1)]
        counted = playwright_shards(bench.settings, specs)
        print(f"4 shards split by count (playwright --shard, direct): {max(counted):.1f} s "
              f"(shards {', '.join(f'{t:.1f}' for t in counted)}); shard balance: {max(counted) / ideal:.2f}",
              flush=True)

        balanced = run_api(session, url, "/api/jobs/run", {"jobId": jobs[SHARDS]}, len(WAITS))
        run = session.get(f"{url}/api/runs?limit=1", timeout=30).json()["items"][0]
        shards = run["shards"]
        shard_times = [shard["durationMs"] / 1000 for shard in shards]  # claim to end, on its worker
        expected = [shard["expectedMs"] / 1000 for shard in shards]
        took = {test["file"]: test["durationMs"] / 1000 for test in
                session.get(f"{url}/api/runs/{run['id']}", timeout=30).json()["tests"]}
        tests_time = [sum(took.get(file, 0) for file in shard["files"]) for shard in shards]
        print(f"4 shards balanced by history: {balanced.total:.1f} s (each shard from its claim to its end: "
              f"{', '.join(f'{t:.1f}' for t in shard_times)}; its tests' own durations "
              f"{', '.join(f'{t:.1f}' for t in tests_time)}; expected {', '.join(f'{t:.1f}' for t in expected)})",
              flush=True)
        slowest = max(range(len(shards)), key=lambda i: shard_times[i])
        print(f"shard balance: {shard_times[slowest] / ideal:.2f} (slowest shard's wall time, claim to end, "
              f"{shard_times[slowest]:.1f} s ÷ ideal {ideal:.1f} s; target at most 1.1); on its tests' own "
              f"durations only: {max(tests_time) / ideal:.2f} ({max(tests_time):.1f} s)")
        for line in stage_lines(args.log or bench.scratch / "stack.log", run["id"]):
            print(f"  {line}")
        print(f"speed-up over 1 shard: {one.total / balanced.total:.2f}x (target at least 3)")


def stage_lines(log: Path, run_id: str) -> list[str]:
    """Where each shard's time went, and the merge's, from the workers' log (sharded.Stopwatch)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    shards = re.findall(rf"run {run_id}: shard (\d+), attempt \d+ ended \w+ \((.*)\)", text)
    merged = re.findall(rf"run {run_id}: all \d+ shards ended; the run ends \w+ \((.*)\)", text)
    return [f"shard {int(index) + 1}: {stages}" for index, stages in shards] + [f"run: {stages}" for stages in merged]

if __name__ == "__main__":
    main()
