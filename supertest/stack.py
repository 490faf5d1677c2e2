"""Start the whole app on one machine: a private Redis if none is configured, migrations, and the
Procfile's web and worker processes. `make run` and the benchmarks use it; Ctrl-C stops it all.

    python -m supertest.stack            # honours HOST and PORT (default 127.0.0.1:5000)
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from supertest.config import INSTANCE_DIR, PROJECT_ROOT

PROCFILE = PROJECT_ROOT / "Procfile"


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


def wait_for(check, what: str, timeout: float, process: subprocess.Popen | None = None) -> None:
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


def signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def stop_process_group(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM a process group and wait until every member is gone (the shell that started a
    Procfile command exits at once; the server behind it may not), then SIGKILL what is left."""
    signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        signal_group(process, signal.SIGKILL)
    process.wait()


class Stack:
    """The processes of one Supertest instance, started in order and stopped in reverse."""

    def __init__(self, host: str, port: int, env: Mapping[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.env = {**os.environ, **(env or {}), "HOST": host, "PORT": str(port)}
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"
        self.processes: list[tuple[str, subprocess.Popen]] = []

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
            wait_for(lambda: urllib.request.urlopen(self.url + "/api/health", timeout=2).status == 200,
                     "the web server", 60, web)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_redis(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("REDIS_URL is not set and redis-server is not installed: run `make install`")
        port = free_port()
        self._spawn("redis", f"{server} --bind 127.0.0.1 --port {port} --save '' --appendonly no "
                             f"--dir {tempfile.gettempdir()}")
        self.env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() is None,
                 "redis-server", 10, self.processes[-1][1])

    def _spawn(self, name: str, command: str) -> subprocess.Popen:
        process = subprocess.Popen(command, shell=True, env=self.env, cwd=PROJECT_ROOT, start_new_session=True)
        self.processes.append((name, process))
        return process

    def stop(self) -> None:
        """Web and worker first, then Redis, so the worker can still acknowledge its last message."""
        services = [process for name, process in self.processes if name != "redis"]
        for process in services:
            signal_group(process, signal.SIGTERM)
        for process in services:
            stop_process_group(process, timeout=35)
        for process in (process for name, process in self.processes if name == "redis"):
            stop_process_group(process, timeout=10)
        self.processes.clear()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> None:
    stack = Stack(os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "5000")))
    # Set explicitly: a shell that starts us in the background makes us ignore SIGINT otherwise.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    with stack:
        print(f"\n  Supertest is running at {stack.url}  (Ctrl-C to stop)\n", flush=True)
        try:
            while all(process.poll() is None for _name, process in stack.processes):
                time.sleep(0.5)
            dead = [name for name, process in stack.processes if process.poll() is not None]
            print(f"stopping: {', '.join(dead)} exited", file=sys.stderr)
        except KeyboardInterrupt:
            print("\nstopping…", flush=True)


if __name__ == "__main__":
    main()
