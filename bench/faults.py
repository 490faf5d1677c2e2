"""How runs fare when things go wrong, with the app's default fault settings (a heartbeat every
HEARTBEAT_SECONDS=5, a worker lost after WORKER_LOST_SECONDS=30, MAX_RUN_ATTEMPTS=3).

One stack as `make run` starts it (supertest.stack.Stack: private redis-server, SQLite, reports and
runs in a temp dir), plus a second worker command started beside it with the same settings: two
Dramatiq masters, as two machines would be (one master stops all its worker processes when one of
them dies, so a second process of the same master would not outlive the first). A run's processes
are found by their environment, HOME=<RUNS_DIR>/<runId>-<attempt> as the worker sets it or the
run's mark SUPERTEST_RUN (a warm runner's: in its titles, its browser by the HOME they share), and by
their session: Chromium's zygotes and what they fork (renderers, GPU) show an empty environment.

(1) worker loss: a test that keeps its browser open for 20 s goes through POST /api/test; once its
    page is open (a Chromium renderer runs), the Dramatiq worker process holding it (the run's
    `worker` column, "host:pid", read from the stack's SQLite file) gets SIGKILL. Timed from the
    kill: the run's claim by another worker (its startedAt, attempt 2) and its end (finishedAt; it
    must pass). The lost attempt's processes must be gone by then. The killed master shuts down,
    so (2) and (3) have one worker.
(2) cancel: a test that keeps its browser open for 60 s; once its page is open, POST
    /api/runs/<id>/cancel, timed until no process of the run is left. --rounds times.
(3) output: tests that write 50 MB to stdout, on one line and in 1 KB lines, and a baseline test
    that writes one 1 KB line, run in turn by the same worker process. A thread samples VmRSS of
    the worker command's own processes (the master and the worker processes it forks, summed) every
    50 ms from the POST to the terminal status; the peak of each run is compared with the baseline's.
    The runs' node and Chromium are children of a worker process and not counted.

Each figure ends the benchmark with a message when a run does something else than described. The
stack's output and the second worker's go to one log file (--log keeps it).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/faults.py` from anywhere
from bench.common import BenchError, parse_args, stacks_in_scratch  # noqa: E402
from supertest.outcomes import CANCELLED, PASSED, RUNNING, TERMINAL  # noqa: E402
from supertest.stack import Service, Stack, procfile, spawn, wait_for  # noqa: E402

KEEPS_BROWSER = """import {{ test }} from '@playwright/test';

test('keeps its browser open for {seconds} s', async ({{ page }}) => {{
  test.setTimeout(0);
  await page.setContent('<p>busy</p>');
  await page.waitForTimeout({seconds} * 1000);
}});
"""
PRINTS = """import {{ test }} from '@playwright/test';

test({title}, async () => {{
  const chunk = 'x'.repeat({chars}) + {end};
  for (let i = 0; i < {count}; i++) process.stdout.write(chunk);
}});
"""
MB = 1024 * 1024
# (what the final line calls it, characters per write, what ends a write, writes)
OUTPUTS = [("baseline", 1023, "\n", 1),
           ("50 MB output on one line", 50 * MB, "", 1),
           ("50 MB in lines", 1023, "\n", 50 * 1024)]
READY = b"Worker process is ready for action"
SAMPLE_SECONDS = 0.05
POLL_SECONDS = 0.05
RUN_SECONDS = 180.0  # ample for any run here, a handover included


def until(check: Callable[[], bool], what: str, timeout: float = RUN_SECONDS) -> float:
    """Poll `check` until it holds; the seconds that took. A network error counts as not yet."""
    start = time.perf_counter()
    while True:
        try:
            if check():
                return time.perf_counter() - start
        except requests.ConnectionError:
            pass
        if time.perf_counter() - start > timeout:
            raise BenchError(f"not within {timeout:.0f} s: {what}")
        time.sleep(POLL_SECONDS)


def worker_column(database: Path, run_id: str) -> int:
    """The pid of the Dramatiq worker process that holds the run, from the stack's database."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        [holder] = connection.execute("SELECT worker FROM runs WHERE id = ?", (run_id,)).fetchone()
    host, _, pid = (holder or "").rpartition(":")
    if host != socket.gethostname():
        raise BenchError(f"run {run_id} is held by {holder!r}, not by a worker process on this machine")
    return int(pid)


class RunProcesses:
    """The live processes of one attempt of a run, or of every run when `run_id` is empty.

    Found by HOME=<run dir> in their environment, or by the run's mark (SUPERTEST_RUN=<run>-<attempt>,
    any run's for every run) in their environment or, for a warm runner's processes started before
    the run, in their titles, with every process sharing the HOME of one of those (a warm runner's
    HOME is named before its run: its browser launched ahead carries no mark; an idle one's
    processes carry none and are not a run's); and by session: Chromium's zygotes and the
    processes they fork (renderers, GPU, utilities) show an empty environment, their titles
    written over it, but stay in the session of the browser process, which has the run's HOME.
    Sessions once seen are remembered, so those are still found after the browser process is gone.
    """

    def __init__(self, runs_dir: Path, run_id: str = "", attempt: int = 1) -> None:
        self.home = f"HOME={runs_dir}/{f'{run_id}-{attempt}' if run_id else ''}".encode()
        self.warm = f"HOME={runs_dir}/warm-".encode()
        self.mark = f"SUPERTEST_RUN={run_id}-{attempt}".encode() if run_id else b"SUPERTEST_RUN="
        self.sessions: set[int] = set()

    def __call__(self) -> list[int]:
        seen: dict[int, tuple[int, list[bytes], bytes]] = {}  # pid → (session, environment, title)
        for entry in os.scandir("/proc"):
            try:
                if not entry.name.isdigit():
                    continue
                # After the command's closing parenthesis: state, ppid, process group, session.
                state, _, _, session = Path(entry.path, "stat").read_bytes().rpartition(b")")[2].split()[:4]
                environ = Path(entry.path, "environ").read_bytes().split(b"\0")
                title = Path(entry.path, "cmdline").read_bytes()
            except OSError:  # gone meanwhile, or not ours
                continue
            if state != b"Z":  # a zombie has exited, only not yet reaped
                seen[int(entry.name)] = (int(session), environ, title)
        marked = {pid for pid, (_, environ, title) in seen.items()
                  if self.mark in title or any(variable.startswith(self.mark) or (
                      variable.startswith(self.home) and not variable.startswith(self.warm)) for variable in environ)}
        homes = {variable for pid in marked for variable in seen[pid][1] if variable.startswith(b"HOME=")}
        marked |= {pid for pid, (_, environ, _) in seen.items() if homes & set(environ)}
        self.sessions |= {seen[pid][0] for pid in marked}
        return [pid for pid, (session, _, _) in seen.items() if pid in marked or session in self.sessions]

    def gone(self) -> bool:
        return not self()


def page_open(pids: list[int]) -> bool:
    """Whether one of `pids` is a Chromium renderer of a page (not of the browser's own UI)."""
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"--type=renderer" in command and b"--top-chrome-webui" not in command:
            return True
    return False


def children(pid: int) -> list[int]:
    """The processes `pid` started that are still its children."""
    try:
        return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_bytes().split()]
    except OSError:
        return []


def rss_kb(pid: int) -> int:
    """The process's resident memory (VmRSS) in kB; 0 for a process that is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_bytes().splitlines():
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakRss:
    """On a thread, every SAMPLE_SECONDS: the summed VmRSS of a worker command's own processes,
    that is its master and the master's children. The peak is kept, in kB."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        # Not the whole tree: a worker process's child between fork and exec (before it becomes a
        # run's node, with the run's HOME) still counts the worker's memory as its own.
        while True:
            self.peak = max(self.peak, sum(rss_kb(pid) for pid in [self.master, *children(self.master)]))
            if self._done.wait(SAMPLE_SECONDS):
                return


class Client:
    """The API calls the benchmark makes to one stack."""

    def __init__(self, session: requests.Session, stack: Stack) -> None:
        self.session, self.url = session, stack.url

    def start(self, script: str, title: str) -> str:
        """POST /api/test; the run's id."""
        response = self.session.post(f"{self.url}/api/test", json={"script": script, "title": title}, timeout=30)
        if response.status_code != 202:
            raise BenchError(f"POST /api/test answered {response.status_code}: {response.text[:500]}")
        return response.json()["runId"]

    def run(self, run_id: str) -> dict[str, Any]:
        response = self.session.get(f"{self.url}/api/runs/{run_id}", timeout=30)
        response.raise_for_status()
        return response.json()

    def cancel(self, run_id: str) -> None:
        response = self.session.post(f"{self.url}/api/runs/{run_id}/cancel", timeout=30)
        if response.status_code != 202:
            raise BenchError(f"cancel of run {run_id} answered {response.status_code}: {response.text[:500]}")

    def wait(self, run_id: str, what: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Poll the run until `done` holds for it; the run as it then was."""
        seen: dict[str, Any] = {}

        def check() -> bool:
            seen.update(self.run(run_id))
            return done(seen)
        until(check, f"run {run_id}: {what}")
        return seen

    def finished(self, run_id: str) -> dict[str, Any]:
        return self.wait(run_id, "a terminal status", lambda run: run["status"] in TERMINAL)


def moment(run: dict[str, Any], key: str) -> float:
    """One of the run's times (startedAt, finishedAt) as a Unix time."""
    return datetime.fromisoformat(run[key]).timestamp()


def ready_workers(log: Path) -> int:
    """How many Dramatiq worker processes have said in the log that they are ready."""
    return log.read_bytes().count(READY) if log.is_file() else 0


def add_worker(stack: Stack, log: Path, ready: int) -> subprocess.Popen:
    """Another Procfile worker command with the stack's settings, its output in `log`, stopped
    with the stack; returned once it is ready, that is once the log holds `ready` + 1 ready lines."""
    with log.open("ab") as sink:
        process = spawn(procfile()["worker"], stack.env, stdout=sink, stderr=subprocess.STDOUT)
    stack.services.append(Service("worker", procfile()["worker"], process))
    wait_for(lambda: ready_workers(log) > ready, "the second worker", 60, process)
    return process


def keep_browser(client: Client, runs_dir: Path, seconds: int) -> tuple[str, RunProcesses]:
    """Start a run that keeps its browser open for `seconds`; its id and its first attempt's
    processes, once its page is open."""
    run_id = client.start(KEEPS_BROWSER.format(seconds=seconds), f"keeps its browser open for {seconds} s")
    processes = RunProcesses(runs_dir, run_id)
    run = client.wait(run_id, "running with its page open", lambda run: run["status"] in TERMINAL or (
        run["status"] == RUNNING and page_open(processes())))
    if run["status"] != RUNNING:
        raise BenchError(f"run {run_id} ended {run['status']} before it was stopped: {run['errorMessage']}")
    return run_id, processes


def kill_worker(client: Client, runs_dir: Path, database: Path, masters: list[subprocess.Popen]) -> str:
    """Figure 1; its final line."""
    run_id, lost = keep_browser(client, runs_dir, 20)
    count = len(lost())
    victim = worker_column(database, run_id)
    master = next((process for process in masters if victim in children(process.pid)), None)
    if master is None:
        raise BenchError(f"worker process {victim} belongs to neither worker command")
    killed = time.time()
    os.kill(victim, signal.SIGKILL)
    gone = until(lost.gone, "the lost attempt's processes went", 60)
    print(f"worker process {victim} killed; the lost attempt's {count} processes gone after {gone:.1f} s",
          flush=True)
    handed = client.wait(run_id, "handed back", lambda run: run["attempt"] > 1 or run["status"] in TERMINAL)
    print(f"handed back after {time.time() - killed:.1f} s (seen by polling): status {handed['status']}, "
          f"attempt {handed['attempt']}, because {handed['restartedBecause']!r}", flush=True)
    run = client.finished(run_id)
    if run["status"] != PASSED or run["attempt"] != 2:
        raise BenchError(f"run {run_id} ended {run['status']} in attempt {run['attempt']}: {run['errorMessage']}")
    taker = worker_column(database, run_id)
    left = lost()
    until(lambda: master.poll() is not None, "the killed worker's master exited", 60)
    print(f"taken up by worker process {taker}; the killed one's master exited with {master.returncode}; "
          f"processes of attempt 1 left: {len(left)}", flush=True)
    if left:
        raise BenchError(f"processes of the lost attempt outlived the run: {left}")
    return (f"SIGKILL → taken up again: {moment(run, 'startedAt') - killed:.1f} s "
            f"(finished {run['status']} after {moment(run, 'finishedAt') - killed:.1f} s)")


def cancel_runs(client: Client, runs_dir: Path, rounds: int) -> str:
    """Figure 2; its final line."""
    seconds = []
    for n in range(1, rounds + 1):
        run_id, processes = keep_browser(client, runs_dir, 60)
        count = len(processes())
        start = time.perf_counter()
        client.cancel(run_id)
        until(processes.gone, f"run {run_id}'s processes went", 60)
        seconds.append(time.perf_counter() - start)
        status = client.run(run_id)["status"]
        print(f"cancel {n}: {count} processes gone after {seconds[-1]:.2f} s; run {status}", flush=True)
        if status != CANCELLED:
            raise BenchError(f"run {run_id} is {status} after its cancel")
    return (f"cancel → process group gone: median {statistics.median(seconds):.1f} s, "
            f"max {max(seconds):.1f} s ({rounds} runs)")


def big_output(client: Client, database: Path, master: subprocess.Popen) -> str:
    """Figure 3; its final line."""
    peaks, holders = [], set()
    for name, chars, end, count in OUTPUTS:
        # JSON strings are valid JavaScript strings, quotes and all.
        script = PRINTS.format(title=json.dumps(f"prints {name}"), chars=chars, end=json.dumps(end), count=count)
        with PeakRss(master.pid) as sampler:
            start = time.perf_counter()
            run_id = client.start(script, name)
            run = client.finished(run_id)
        peaks.append(sampler.peak / 1024)
        holders.add(worker_column(database, run_id))
        print(f"{name}: {run['status']} after {time.perf_counter() - start:.1f} s, errorMessage "
              f"{len(run['errorMessage'] or '')} characters; worker peak RSS {peaks[-1]:.0f} MB", flush=True)
    if len(holders) != 1:
        raise BenchError(f"the output runs went to different worker processes: {sorted(holders)}")
    baseline, *others = peaks
    return "worker peak RSS: " + ", ".join(
        [f"baseline {baseline:.0f} MB",
         *(f"{name} {peak:.0f} MB (+{peak - baseline:.0f})"
           for (name, *_), peak in zip(OUTPUTS[1:], others, strict=True))])


def main() -> None:
    args = parse_args(__doc__, default_rounds=5)
    ready = ready_workers(args.log) if args.log else 0
    with stacks_in_scratch(args.log, {}) as bench, requests.Session() as session:
        session.auth = bench.auth
        stack = bench.stacks[0]
        log = (args.log or bench.scratch / "stack.log").resolve()  # where stacks_in_scratch sends it
        wait_for(lambda: ready_workers(log) > ready, "the stack's worker", 60)
        add_worker(stack, log, ready + 1)
        client = Client(session, stack)
        runs_dir = bench.settings["RUNS_DIR"]
        database = Path(stack.env["DATABASE_URL"].removeprefix("sqlite:///"))
        masters = [service.process for service in stack.services if service.name == "worker"]
        print(f"two worker commands ready (masters {', '.join(str(p.pid) for p in masters)})", flush=True)
        lines = [kill_worker(client, runs_dir, database, masters)]
        survivor = next((process for process in masters if process.poll() is None), None)
        if survivor is None:
            raise BenchError("no worker command is left running")
        lines.append(cancel_runs(client, runs_dir, args.rounds))
        lines.append(big_output(client, database, survivor))
        left = RunProcesses(runs_dir)()
        if left:
            raise BenchError(f"processes of finished runs are left: {left}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
