"""Run `playwright test` as a child process that we own: its own process group, a built
environment, a deadline, and a bounded log."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supertest import logs
from supertest.execution.processes import die_with_worker, kill_strays

EVENT_PREFIX = "@@supertest "
MAX_LOG_LINES = 400
MAX_LINE_CHARS = 2000
MAX_READ_BYTES = 256 * 1024  # longer than any line our reporter prints
# On a deadline Playwright gets a moment to write its reports (with the tests marked interrupted).
INTERRUPT_GRACE_SECONDS = 5.0


@dataclass
class Outcome:
    exit_code: int | None
    timed_out: bool
    log: str
    stopped: bool = False  # killed because `stop` was set: the run is not ours to finish any more


def child_env(run_dir: Path, tmp_dir: Path, browsers_path: str) -> dict[str, str]:
    """The whole environment of the test process. Built, never inherited: no app secrets.

    tmp_dir must have a short path: Chromium puts a Unix socket there, and those are limited to 107 bytes.
    """
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(run_dir),
        "TMPDIR": str(tmp_dir),
        "LANG": "C.UTF-8",
        "CI": "1",
        "FORCE_COLOR": "0",
        "PLAYWRIGHT_BROWSERS_PATH": browsers_path,
    }


def playwright_command(node: str, cli: Path) -> list[str]:
    return [node, str(cli), "test", "--config", "playwright.config.js"]


def run_playwright(
    command: list[str],
    run_dir: Path,
    env: dict[str, str],
    timeout_seconds: float,
    on_event: Callable[[dict[str, Any]], None],
    stop: threading.Event | None = None,
    preexec: Callable[[], None] | None = None,
) -> Outcome:
    """Run `command` (playwright_command, maybe inside a sandbox) in run_dir; call on_event for
    every line our reporter prints. `preexec` runs in the child before exec (the sandbox's limits and
    user); it must end with die_with_worker().

    When `stop` is set (a cancel), the whole process group is killed at once, with no grace.
    """
    return watch(start(command, run_dir, env, preexec), env, timeout_seconds, on_event, stop)


def start(command: list[str], run_dir: Path, env: dict[str, str], preexec: Callable[[], None] | None = None,
          stdin: int = subprocess.DEVNULL) -> subprocess.Popen:
    """Start `command` in a session of its own (its process group is what the runner kills)."""
    return subprocess.Popen(
        command, cwd=run_dir, env=env, stdin=stdin, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec or die_with_worker,
    )


def watch(process: subprocess.Popen, env: dict[str, str], timeout_seconds: float,
          on_event: Callable[[dict[str, Any]], None], stop: threading.Event | None = None) -> Outcome:
    """See `process` (started by start(), cold or a warm runner given its run) to its end: its
    lines, its deadline, `stop`, and then the kill of its group and of its strays (by env's HOME)."""
    log: deque[str] = deque(maxlen=MAX_LOG_LINES)
    reader = threading.Thread(target=logs.carried(_read), args=(process, log, on_event), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout_seconds
    timed_out = stopped = False
    try:
        while process.poll() is None:
            if stop is not None and stop.is_set():
                stopped = True
                break
            if time.monotonic() >= deadline:
                timed_out = True
                break
            try:
                process.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
        if timed_out:
            _signal_group(process, signal.SIGINT)
            try:
                process.wait(timeout=INTERRUPT_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                pass
    finally:
        # Also after a normal exit: whatever the test started in the group goes with it,
        # and so does whatever left the group (setsid, a detached child) but kept the run's HOME.
        end(process, env["HOME"])
    reader.join(timeout=5)
    return Outcome(process.returncode, timed_out, "\n".join(log), stopped)


def end(process: subprocess.Popen, home: str) -> None:
    """Kill `process`'s group, and what left it but kept HOME=`home`; wait for the process."""
    _signal_group(process, signal.SIGKILL)
    process.wait()
    kill_strays(process.pid, home)


def _read(process: subprocess.Popen, log: deque[str], on_event: Callable[[dict[str, Any]], None]) -> None:
    stdout = process.stdout
    assert stdout is not None
    # At most MAX_READ_BYTES at a time: a script that prints 50 MB without a newline costs us
    # no more memory than a short line (the rest of such a line is cut off in the log anyway).
    for raw in iter(lambda: stdout.readline(MAX_READ_BYTES), b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        if line.startswith(EVENT_PREFIX):
            try:
                on_event(json.loads(line[len(EVENT_PREFIX):]))
                continue
            except ValueError:
                pass
        log.append(line[:MAX_LINE_CHARS])


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
