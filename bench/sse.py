"""Many live viewers of one run: N clients on its SSE stream, then the run ends.

The stack runs as `make run` runs it (two gevent web processes, SQLite, a private Redis). A pending
run is made directly in the stack's database (never queued, so no browser competes for the cores);
--clients connections (raw sockets, asyncio, spread by gunicorn over the web processes) open its
stream `GET /api/runs/<id>/events` and read its current state. Meanwhile `GET /api/health` and
`GET /api/runs` are timed one after the other (their p95 against the same, idle, measured first),
and the web processes' summed VmRSS is sampled. Then `POST /api/runs/<id>/cancel` ends the run;
timed: until the last accepted client has the terminal `cancelled` status. Clients refused with
503 (MAX_STREAMS) are counted, with how soon they were told.

    .venv/bin/python bench/sse.py [--clients 5000] [--log stack.log] [--set NAME=VALUE ...]
"""
from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/sse.py` from anywhere
from bench.common import stacks_in_scratch  # noqa: E402
from supertest import config, create_app  # noqa: E402
from supertest.services import runs  # noqa: E402

SAMPLES = 60  # requests of each kind, idle and under load
CONNECT_SECONDS = 60.0  # all the clients must be connected by then
END_SECONDS = 60.0  # and all have the terminal event this long after the cancel


def rss_kb(root: int) -> int:
    """VmRSS of a process and its children (the gunicorn master and its workers)."""
    total, pids = 0, [root]
    for task in Path(f"/proc/{root}/task").iterdir():
        pids += [int(pid) for pid in (task / "children").read_text().split()]
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def latencies(session: requests.Session, url: str) -> dict[str, list[float]]:
    """SAMPLES timings (seconds) of each ordinary request, alternating; a 30 s timeout counts as 30 s."""
    found: dict[str, list[float]] = {"/api/health": [], "/api/runs": []}
    for _ in range(SAMPLES):
        for path, times in found.items():
            start = time.perf_counter()
            try:
                session.get(url + path, timeout=30).raise_for_status()
            except requests.RequestException as error:
                print(f"  {path}: {error}", flush=True)
                times.append(time.perf_counter() - start)
                return found  # one timeout says enough; do not wait out SAMPLES of them
            times.append(time.perf_counter() - start)
            time.sleep(0.02)
    return found


class Clients:
    """The SSE clients, on an asyncio loop of their own in a thread."""

    def __init__(self, host: str, port: int, path: str, token: str, count: int) -> None:
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                        "Accept: text/event-stream\r\nConnection: close\r\n\r\n").encode()
        self.host, self.port, self.count = host, port, count
        self.accepted = 0  # had the 200 and the current state
        self.refused: list[float] = []  # seconds until a 503 came
        self.failed: list[str] = []
        self.retry_after: set[str] = set()
        self.ended: list[float] = []  # monotonic times the terminal event came
        self.all_connected = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.main(),), daemon=True)

    async def main(self) -> None:
        tasks = []
        for n in range(self.count):
            tasks.append(asyncio.ensure_future(self.one()))
            if n % 50 == 49:
                await asyncio.sleep(0.05)  # a ramp, not one SYN flood: the listen backlog is finite
        while self.accepted + len(self.refused) + len(self.failed) < self.count:
            await asyncio.sleep(0.05)
        self.all_connected.set()
        await asyncio.gather(*tasks)

    async def one(self) -> None:
        start = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 30)
        except (TimeoutError, OSError) as error:
            self.failed.append(f"connect: {error!r}")
            return
        counted = False
        try:
            writer.write(self.request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_SECONDS)
            status = int(head.split(b" ", 2)[1])
            if status == 503:
                self.refused.append(time.monotonic() - start)
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"retry-after:"):
                        self.retry_after.add(line.split(b":", 1)[1].strip().decode())
                counted = True
                return
            if status != 200:
                self.failed.append(f"status {status}")
                counted = True
                return
            buffer = b""
            while True:
                chunk = await asyncio.wait_for(reader.read(65536), CONNECT_SECONDS + END_SECONDS)
                if not chunk:
                    self.failed.append("closed before the terminal event")
                    counted = True
                    return
                buffer += chunk
                if not counted and b"event: status" in buffer:
                    self.accepted += 1
                    counted = True
                if b'"status": "cancelled"' in buffer:
                    self.ended.append(time.monotonic())
                    return
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
            if not counted:
                self.failed.append(repr(error))
            else:
                self.failed.append(f"after connecting: {error!r}")
                self.accepted -= 1
        finally:
            writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the stack, e.g. WEB_CONNECTIONS=1000")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.clients + 100:
        sys.exit(f"open files are limited to {hard}: too few for {args.clients} clients")
    variant = dict(item.split("=", 1) for item in args.set)
    with stacks_in_scratch(args.log, variant) as bench, requests.Session() as session:
        session.auth = bench.auth
        stack = bench.stacks[0]
        web = next(service.process.pid for service in stack.services if service.name == "web")
        app = create_app(config.from_env(stack.env))
        with app.app_context():
            run_id = runs.create_playground_run("// never queued", "sse bench", trigger="api").id
        token = bench.auth.tokens[stack.url]

        idle = latencies(session, stack.url)
        rss_idle = rss_kb(web)
        clients = Clients(stack.host, stack.port, f"/api/runs/{run_id}/events", token, args.clients)
        started = time.monotonic()
        clients.thread.start()
        peak = rss_idle
        loaded: dict[str, list[float]] = {"/api/health": [], "/api/runs": []}
        while not clients.all_connected.wait(0.5):
            peak = max(peak, rss_kb(web))
            if time.monotonic() - started > CONNECT_SECONDS:
                print(f"after {CONNECT_SECONDS:.0f} s only {clients.accepted} streaming, {len(clients.refused)} "
                      f"refused, {len(clients.failed)} failed; going on with those", flush=True)
                break
            if len(loaded["/api/health"]) < SAMPLES // 3:  # also while streams pile up
                for path, times in latencies_once(session, stack.url).items():
                    loaded[path] += times
        connected = time.monotonic() - started
        for path, times in latencies(session, stack.url).items():
            loaded[path] += times
        peak = max(peak, rss_kb(web))

        cancel_at = time.monotonic()
        session.post(f"{stack.url}/api/runs/{run_id}/cancel", timeout=30).raise_for_status()
        clients.thread.join(END_SECONDS)
        peak = max(peak, rss_kb(web))
        rss_after = rss_kb(web)

    accepted, refused = clients.accepted, clients.refused
    print(f"clients: {args.clients}: {accepted} streamed, {len(refused)} refused (503), "
          f"{len(clients.failed)} failed; all answered in {connected:.1f} s")
    if clients.failed:
        print(f"  failures, first few: {clients.failed[:3]}")
    if refused:
        print(f"  refused within: median {statistics.median(refused):.3f} s, max {max(refused):.3f} s; "
              f"Retry-After {sorted(clients.retry_after)}")
    missing = accepted - len(clients.ended)
    if clients.ended:
        print(f"terminal event: last of {len(clients.ended)} clients {max(clients.ended) - cancel_at:.2f} s "
              f"after the cancel (median {statistics.median(clients.ended) - cancel_at:.2f} s)"
              + (f"; {missing} never had it" if missing else ""))
    for path in idle:
        ratio = p95(loaded[path]) / p95(idle[path])
        print(f"{path}: p95 idle {p95(idle[path]) * 1000:.1f} ms, with streams {p95(loaded[path]) * 1000:.1f} ms "
              f"(max {max(loaded[path]) * 1000:.0f} ms): ratio {ratio:.2f}")
    print(f"web processes' RSS: idle {rss_idle / 1024:.0f} MB, peak {peak / 1024:.0f} MB "
          f"(+{(peak - rss_idle) / 1024:.0f} MB, {(peak - rss_idle) / max(accepted, 1):.1f} KB a stream), "
          f"after {rss_after / 1024:.0f} MB")


def latencies_once(session: requests.Session, url: str) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for path in ("/api/health", "/api/runs"):
        start = time.perf_counter()
        try:
            session.get(url + path, timeout=30).raise_for_status()
        except requests.RequestException as error:
            print(f"  {path} while connecting: {error}", flush=True)
        found[path] = [time.perf_counter() - start]
    return found


if __name__ == "__main__":
    main()
