"""How promptly the clock fires schedules: many jobs due at once, and a few jobs with idle workers.

(b) first, on a fresh stack (supertest.stack.Stack as `make run` starts one: web, worker with
    WORKER_THREADS=3, clock, private Redis, SQLite): 3 jobs of one short test on `* * * * *`; for
    the first slot after they are saved, the time from the slot to each run's startedAt (the worker's
    claim). The schedules are then paused.
(b) then, a late slot: the worker's three run slots are taken by runs that wait, and a job whose
    schedule has graceSeconds=5 and a webhook channel comes due; its run cannot start, so the slot
    goes late. The time from the slot's grace deadline to the late alert reaching the webhook (an
    HTTP server in this process).
(a) then the worker is stopped (so 500 runs do not start on this machine) and 500 jobs are saved with
    one cron expression whose minute is the next but one, so that all of them come due in the same
    minute. For each slot, the lag from the slot to its run's createdAt (set just before the run is
    committed and queued), as median, p95 and max; and the clock process's CPU time (user + system,
    from /proc) over that burst, against the CPU of an idle tick.

    .venv/bin/python bench/schedules.py [--jobs 500] [--log stack.log]

Targets: (a) p95 under 2 s; (b) under 5 s to start, under 2 s from the grace deadline to the alert.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/schedules.py` from anywhere
from bench.common import BenchError, stacks_in_scratch  # noqa: E402
from supertest.stack import Stack, terminate, wait_gone  # noqa: E402

SCRIPT = """import { test, expect } from '@playwright/test';

test('greets', async ({ page }) => {
  await page.setContent('<h1>Hi</h1>');
  await expect(page.locator('h1')).toHaveText('Hi');
});
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def wait(condition: Any, timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(every)
    raise BenchError(f"{what}: not within {timeout:.0f} s")


def save_job(api: requests.Session, url: str, test_id: str, name: str, cron: str) -> dict[str, Any]:
    response = api.post(f"{url}/api/jobs", json={"name": name, "testIds": [test_id],
                                                 "schedule": {"cron": cron, "timezone": "UTC"}}, timeout=30)
    if response.status_code != 201:
        raise BenchError(f"POST /api/jobs answered {response.status_code}: {response.text[:300]}")
    return response.json()


def scheduled_runs(api: requests.Session, url: str) -> list[dict[str, Any]]:
    """Every run the schedules made, newest first, through the API's pages."""
    found, cursor = [], ""
    while True:
        page = api.get(f"{url}/api/runs?limit=100{'&cursor=' + cursor if cursor else ''}", timeout=30).json()
        found += [run for run in page["items"] if run["trigger"] == "schedule"]
        cursor = page["nextCursor"]
        if not cursor:
            return found


def few_jobs_idle_workers(api: requests.Session, stack: Stack, test_id: str, count: int = 3) -> list[float]:
    jobs = [save_job(api, stack.url, test_id, f"idle {n}", "* * * * *") for n in range(count)]
    slot = max(at(job["nextRunAt"]) for job in jobs)
    print(f"(b) {count} jobs due at {slot:%H:%M:%S}; waiting for their runs to start", flush=True)

    def started() -> list[dict[str, Any]] | None:
        runs = [run for run in scheduled_runs(api, stack.url) if at(run["scheduledFor"]) == slot]
        return runs if len(runs) == count and all(run["startedAt"] for run in runs) else None

    runs = wait(started, 60 + (slot - datetime.now(UTC)).total_seconds() + 60, "the scheduled runs started")
    for job in jobs:
        api.put(f"{stack.url}/api/jobs/{job['id']}", json={"schedule": {**job["schedule"], "enabled": False}},
                timeout=30)
    return [(at(run["startedAt"]) - slot).total_seconds() for run in runs]


WAITS = """import { test } from '@playwright/test';

test('holds a run slot', async () => {
  test.setTimeout(300_000);
  await new Promise((resolve) => setTimeout(resolve, 240_000));
});
"""
GRACE = 5


class Webhook:
    """Takes webhook POSTs and notes when each event arrived (wall clock, as the slots are)."""

    def __init__(self) -> None:
        self.arrived: dict[str, datetime] = {}
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.arrived.setdefault(json.loads(body)["event"], datetime.now(UTC))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def late_alert(api: requests.Session, stack: Stack, test_id: str, slots: int = 3) -> float:
    """Seconds from a late slot's grace deadline to its alert at the webhook."""
    hook = Webhook()
    holders = [api.post(f"{stack.url}/api/test", json={"title": "holds a slot", "script": WAITS}, timeout=30)
               .json()["runId"] for _ in range(slots)]
    wait(lambda: all(api.get(f"{stack.url}/api/runs/{run_id}", timeout=30).json()["status"] == "running"
                     for run_id in holders), 120, "every run slot taken")
    channel = api.post(f"{stack.url}/api/channels", json={"name": "bench", "type": "webhook", "target": hook.url},
                       timeout=30).json()
    response = api.post(f"{stack.url}/api/jobs", timeout=30, json={
        "name": "late", "testIds": [test_id], "alerts": {"channelIds": [channel["id"]]},
        "schedule": {"cron": "* * * * *", "timezone": "UTC", "graceSeconds": GRACE}})
    if response.status_code != 201:
        raise BenchError(f"POST /api/jobs answered {response.status_code}: {response.text[:300]}")
    job = response.json()
    deadline = at(job["nextRunAt"]) + timedelta(seconds=GRACE)
    print(f"(b) a late slot: its grace ends at {deadline:%H:%M:%S}; waiting for the alert", flush=True)
    wait(lambda: "late" in hook.arrived, 60 + (deadline - datetime.now(UTC)).total_seconds() + 30,
         "the late alert at the webhook", every=0.1)
    api.put(f"{stack.url}/api/jobs/{job['id']}", json={"schedule": None}, timeout=30)
    for run_id in holders:
        api.post(f"{stack.url}/api/runs/{run_id}/cancel", timeout=30)
    hook.server.shutdown()
    return (hook.arrived["late"] - deadline).total_seconds()


def many_jobs_one_minute(api: requests.Session, stack: Stack, test_id: str, count: int) -> tuple[list[float], float,
                                                                                               float]:
    worker = next(service for service in stack.services if service.name == "worker")
    terminate(worker.process)
    wait_gone(worker.process, 40)
    clock_pid = next(service for service in stack.services if service.name == "clock").process.pid
    target = (datetime.now(UTC) + timedelta(minutes=2)).replace(second=0, microsecond=0)
    cron = f"{target.minute} * * * *"
    print(f"(a) saving {count} jobs on {cron!r} (due {target:%H:%M}), worker stopped", flush=True)
    for n in range(count):
        save_job(api, stack.url, test_id, f"burst {n}", cron)
    if datetime.now(UTC) >= target - timedelta(seconds=5):
        raise BenchError("saving the jobs took until their slot; run with fewer --jobs")
    idle_from, idle_cpu = time.monotonic(), cpu_seconds(clock_pid)
    time.sleep(max(0.0, (target - datetime.now(UTC)).total_seconds() - 3))
    idle_ticks = (time.monotonic() - idle_from) / float(stack.env.get("CLOCK_TICK_SECONDS") or 5)
    idle_per_tick = (cpu_seconds(clock_pid) - idle_cpu) / max(1.0, idle_ticks)
    before = cpu_seconds(clock_pid)

    def all_made() -> list[dict[str, Any]] | None:
        runs = [run for run in scheduled_runs(api, stack.url) if at(run["scheduledFor"]) == target]
        return runs if len(runs) == count else None

    runs = wait(all_made, 120, f"{count} runs made", every=1)
    burst = cpu_seconds(clock_pid) - before
    return [(at(run["createdAt"]) - target).total_seconds() for run in runs], burst, idle_per_tick


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500, help="jobs due in the same minute, for (a)")
    parser.add_argument("--log", type=Path, help="keep the output of web, worker, clock and redis in this file")
    args = parser.parse_args()
    with stacks_in_scratch(args.log, {"WORKER_THREADS": "3"}) as bench:
        stack = bench.stacks[0]
        api = requests.Session()
        api.auth = bench.auth
        # gunicorn closes an idle keep-alive connection after 2 s: a poll can meet one just closed.
        api.mount("http://", HTTPAdapter(max_retries=Retry(total=3, backoff_factor=0.1)))
        saved = api.post(f"{stack.url}/api/tests", json={"title": "greets", "script": SCRIPT}, timeout=30)
        test_id = saved.json()["id"]
        starts = few_jobs_idle_workers(api, stack, test_id)
        print(f"(b) slot → run started, s: {', '.join(f'{s:.2f}' for s in sorted(starts))}; "
              f"max {max(starts):.2f} (target < 5)", flush=True)
        late = late_alert(api, stack, test_id)
        print(f"(b) grace deadline → late alert at the webhook: {late:.2f} s (target < 2)", flush=True)
        lags, burst_cpu, idle_cpu = many_jobs_one_minute(api, stack, test_id, args.jobs)
        print(f"(a) {len(lags)} slots → run queued, s: median {statistics.median(lags):.2f}, "
              f"p95 {percentile(lags, 0.95):.2f}, max {max(lags):.2f} (target p95 < 2)")
        print(f"(a) clock CPU: {burst_cpu:.2f} s for the tick that fired {len(lags)} slots "
              f"({burst_cpu / len(lags) * 1000:.1f} ms a slot); an idle tick {idle_cpu * 1000:.1f} ms")


if __name__ == "__main__":
    main()
