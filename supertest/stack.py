"""Start the whole app on one machine: a private Redis if none is configured, migrations, and the
Procfile's web, worker and clock processes. `make run` and the benchmarks use it. A process that exits is
started again after a short pause; only Ctrl-C, SIGTERM or SIGHUP stop it all.

    python -m supertest.stack            # honours HOST and PORT (default 127.0.0.1:5000)
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supertest.config import INSTANCE_DIR, PROJECT_ROOT

PROCFILE = PROJECT_ROOT / "Procfile"
# A process that exits is started again after FIRST_DELAY seconds, doubled each time it exits again
# soon after, up to MAX_DELAY, so that a crash loop (say, the database is down) costs little; once
# it has stayed up for STAYED_UP seconds, the next exit counts as the first again.
FIRST_DELAY, MAX_DELAY, STAYED_UP = 1.0, 30.0, 60.0


def procfile(path: Path = PROCFILE) -> dict[str, str]:
    """The Procfile's commands by process name."""
    entries = {}
    for line in path.read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and not line.startswith("#"):
            entries[name.strip()] = command.strip()
    return entries


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(check: Callable[[], bool], what: str, timeout: float,
             process: subprocess.Popen | None = None) -> None:
    """Poll `check` until it holds; fail early if `process` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} while starting")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s")


def _connects(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def answers_health(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/api/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def process_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """Our environment plus `overrides`, with this virtualenv's commands first on PATH."""
    env = {**os.environ, **overrides}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def spawn(command: str, env: Mapping[str, str], **popen: Any) -> subprocess.Popen:
    """Start a Procfile command in a process group of its own.

    `exec` puts the command itself in the shell's place, so that the process we signal is the
    server, which then stops its own children in its own way.
    """
    return subprocess.Popen(f"exec {command}", shell=True, env=env, cwd=PROJECT_ROOT,
                            start_new_session=True, **popen)


def terminate(process: subprocess.Popen) -> None:
    """Ask the group's leader, and only it, to stop: a second SIGTERM makes a Dramatiq worker
    process quit at once instead of finishing its message."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)


def wait_gone(process: subprocess.Popen, timeout: float) -> None:
    """Wait until every member of the process group is gone; SIGKILL what is left after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.poll()  # reap the leader, or the group never looks empty
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


def stop_process_group(process: subprocess.Popen, timeout: float) -> None:
    terminate(process)
    wait_gone(process, timeout)


def exit_status(returncode: int) -> str:
    """How a process ended, as a log line says it: `code 1`, `signal SIGKILL`."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"code {returncode}"


@dataclass
class Service:
    """One of the stack's processes, with what it takes to start it again."""

    name: str
    command: str
    process: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    delay: float = 0.0  # the pause before its last restart
    restart_at: float | None = None  # set while it is down, waiting to be started again

    def plan_restart(self) -> float:
        """After the process exited: when to start it again; returns the pause in seconds."""
        now = time.monotonic()
        if now - self.started >= STAYED_UP:
            self.delay = 0.0
        self.delay = min(max(self.delay * 2, FIRST_DELAY), MAX_DELAY)
        self.restart_at = now + self.delay
        return self.delay


class Stack:
    """The processes of one Supertest instance, started in order and stopped in reverse."""

    def __init__(self, host: str, port: int, env: Mapping[str, str] | None = None,
                 reports_port: int | None = None) -> None:
        self.host, self.port = host, port
        self.env = process_env({**(env or {}), "HOST": host, "PORT": str(port)})
        if not self.env.get("REPORTS_ORIGIN"):
            # Reports on a second port of the web server: an origin of their own, so that script in a
            # report cannot act with the user's session (see supertest/services/report_links.py).
            reports_port = reports_port or free_port()
            shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
            self.env.update(REPORTS_PORT=str(reports_port), REPORTS_ORIGIN=f"http://{shown}:{reports_port}")
        self.services: list[Service] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Stack:
        try:
            if not self.env.get("REDIS_URL"):
                self._start_redis()
            INSTANCE_DIR.mkdir(exist_ok=True)
            commands = procfile()
            subprocess.run(commands["release"], shell=True, check=True, env=self.env, cwd=PROJECT_ROOT)
            web = self._spawn("web", commands["web"])
            self._spawn("worker", commands["worker"])
            self._spawn("clock", commands["clock"])
            wait_for(lambda: answers_health(self.url), "the web server", 60, web)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_redis(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("REDIS_URL is not set and redis-server is not installed: run `make install`")
        port = free_port()
        # Kept on disk: runs that were queued (or handed back by a stopping worker) when the stack
        # stopped are still queued when it starts again.
        data = Path(self.env.get("REDIS_DIR") or INSTANCE_DIR / "redis")
        data.mkdir(parents=True, exist_ok=True)
        self._spawn("redis", f"{server} --bind 127.0.0.1 --port {port} --save '' --appendonly yes "
                             f"--appendfsync everysec --dir {shlex.quote(str(data))}")
        self.env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        wait_for(lambda: _connects(port), "redis-server", 10, self.services[-1].process)

    def _spawn(self, name: str, command: str) -> subprocess.Popen:
        process = spawn(command, self.env)
        self.services.append(Service(name, command, process))
        return process

    def supervise(self, poll: float = 0.5) -> None:
        """Start each process that exits again, after a pause, until interrupted (KeyboardInterrupt).

        The Dramatiq master exits when one of its worker processes dies (the OOM killer's SIGKILL):
        a new master takes up the queue again, and the run the dead one held comes back through
        the reaper after WORKER_LOST_SECONDS. Redis is restarted too rather than stopping it all:
        the same command reuses its port, which web and worker have in REDIS_URL, and its data
        directory, so they reconnect to the same queue.
        """
        while True:
            for service in self.services:
                if service.restart_at is None and service.process.poll() is not None:
                    self._exited(service)
                elif service.restart_at is not None and time.monotonic() >= service.restart_at:
                    self._restart(service)
            time.sleep(poll)

    def _exited(self, service: Service) -> None:
        # What the leader leaves behind in its group (gunicorn's workers holding the port, say)
        # must be gone before a new one starts.
        try:
            os.killpg(service.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        wait_gone(service.process, timeout=10)
        delay = service.plan_restart()
        print(f"stack: {service.name} (pid {service.process.pid}) exited with "
              f"{exit_status(service.process.returncode)}; restarting it in {delay:.0f} s",
              file=sys.stderr, flush=True)

    def _restart(self, service: Service) -> None:
        service.process = spawn(service.command, self.env)
        service.started, service.restart_at = time.monotonic(), None
        print(f"stack: {service.name} restarted (pid {service.process.pid})", file=sys.stderr, flush=True)

    def stop(self) -> None:
        """Web, worker and clock first, then Redis, so the worker can still acknowledge its last message."""
        first = [service.process for service in self.services if service.name != "redis"]
        for process in first:
            terminate(process)
        for process in first:
            wait_gone(process, timeout=35)
        for service in self.services:
            if service.name == "redis":
                stop_process_group(service.process, timeout=10)
        self.services.clear()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> None:
    port = int(os.environ.get("PORT", "5000"))
    reports_port = int(os.environ.get("REPORTS_PORT") or port + 1)
    stack = Stack(os.environ.get("HOST", "127.0.0.1"), port, reports_port=reports_port)
    # Set explicitly: a shell that starts us in the background makes us ignore SIGINT otherwise.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    with stack:
        print(f"\n  Supertest is running at {stack.url}  (Ctrl-C to stop)"
              f"\n  reports are served from {stack.env['REPORTS_ORIGIN']}\n", flush=True)
        try:
            stack.supervise()
        except KeyboardInterrupt:
            print("\nstopping…", flush=True)


if __name__ == "__main__":
    main()
