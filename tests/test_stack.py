"""`make run`'s stack (`python -m supertest.stack`, the Stack class) keeps the app up when one of
its processes dies: a Dramatiq worker process killed as the OOM killer kills it takes its master
down, the stack starts the worker again while the web keeps answering, and the run it held ends on
its second attempt. Only a signal to the stack stops it, and then nothing it started is left."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from supertest.config import PROJECT_ROOT
from supertest.execution import processes
from supertest.outcomes import TERMINAL
from supertest.stack import answers_health, free_port, process_env, wait_for
from tests.conftest import token_of_tester
from tests.helpers import run_processes, wait_until
from tests.test_faults import children, waits, worker_of

READY = "Worker process is ready for action"


@dataclass
class RunningStack:
    """`python -m supertest.stack` as `make run` starts it, its output in a log file."""

    process: subprocess.Popen
    url: str
    log_path: Path
    api: requests.Session  # signed in with the tester's token

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def leaders(self) -> dict[str, int]:
        """The stack's children by what they are: each leads a process group and session of its own."""
        found = {}
        for pid in children(self.process.pid):
            with contextlib.suppress(OSError):  # one that has just exited
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                found["worker" if b"dramatiq" in cmdline else "web" if b"gunicorn" in cmdline
                      else "clock" if b"supertest.clock" in cmdline else "other"] = pid
        return found

    def run(self, run_id: str) -> dict[str, Any]:
        return self.api.get(f"{self.url}/api/runs/{run_id}", timeout=10).json()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=90)


def left_in(sessions: set[int]) -> list[int]:
    """Live processes in any of these sessions."""
    return [pid for pid in processes.pids() if processes.session_of(pid) in sessions]


@pytest.fixture()
def stack(app: Flask, settings: dict[str, str], tmp_path: Path) -> Iterator[RunningStack]:
    """The session's database, Redis and S3, a queue namespace of its own, and quick worker-loss
    settings: a run whose worker died goes to another within seconds."""
    port = free_port()
    env = process_env({**settings, "HOST": "127.0.0.1", "PORT": str(port), "REPORTS_PORT": str(free_port()),
                       "QUEUE_NAMESPACE": f"supertest-stack-{uuid.uuid4().hex[:8]}",
                       "HEARTBEAT_SECONDS": "1", "WORKER_LOST_SECONDS": "5"})
    log_path = tmp_path / "stack.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "supertest.stack"], env=env, cwd=PROJECT_ROOT,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token_of_tester(app)}"
    running = RunningStack(process, f"http://127.0.0.1:{port}", log_path, api)
    try:
        try:
            # The stack's own line last: a signal before it would find it still starting.
            wait_for(lambda: READY in running.log() and "Supertest is running" in running.log(), "the stack", 90,
                     process)
        except RuntimeError as error:
            raise RuntimeError(f"{error}:\n{running.log()[-3000:]}") from None
        yield running
    finally:
        sessions = set(running.leaders().values()) if process.poll() is None else set()
        try:
            running.stop()
        finally:
            for session in sessions:  # only if the stack did not stop them itself
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(session, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            api.close()


def test_a_killed_worker_process_is_restarted_and_its_run_ends_on_attempt_2(stack: RunningStack, app: Flask) -> None:
    response = stack.api.post(f"{stack.url}/api/test", json={"script": waits(6), "title": "outlives its worker"},
                              timeout=10)
    assert response.status_code == 202, response.text
    run_id = response.json()["runId"]
    wait_until(lambda: stack.run(run_id)["status"] == "running" and len(run_processes(run_id)) > 2, 60,
               "the run's browser started")
    master = stack.leaders()["worker"]
    victim = worker_of(stack.run(run_id), app)
    assert victim in children(master)  # the Dramatiq worker process, a child of the worker command

    health_failures: list[str] = []
    done = threading.Event()

    def watch_health() -> None:
        while not done.wait(0.25):
            if not answers_health(stack.url):
                health_failures.append(time.strftime("%H:%M:%S"))

    watcher = threading.Thread(target=watch_health, daemon=True)
    watcher.start()
    try:
        os.kill(victim, signal.SIGKILL)  # as the OOM killer does
        wait_until(lambda: re.search(rf"stack: worker \(pid {master}\) exited with code \d+; restarting it in 1 s",
                                     stack.log()), 30, "the stack said it restarts the worker")
        wait_until(lambda: "stack: worker restarted" in stack.log() and stack.log().count(READY) == 2, 60,
                   "a new worker is ready")
        wait_until(lambda: stack.run(run_id)["status"] in TERMINAL, 120, "the run ended")
    finally:
        done.set()
        watcher.join()

    run = stack.run(run_id)
    assert run["status"] == "passed", run
    assert run["attempt"] == 2 and run["restartedBecause"] == "restarted after worker loss"
    assert worker_of(run, app) in children(stack.leaders()["worker"])  # the restarted worker ran it
    assert health_failures == []
    assert stack.process.poll() is None, stack.log()[-3000:]
    assert run_processes(run_id) == []


def test_sigterm_stops_the_stack_and_everything_it_started(stack: RunningStack) -> None:
    sessions = set(stack.leaders().values())
    assert len(sessions) == 3 and left_in(sessions)  # web, worker and clock
    assert stack.stop() == 0
    assert "stopping" in stack.log()
    assert left_in(sessions) == []
    assert not answers_health(stack.url)
