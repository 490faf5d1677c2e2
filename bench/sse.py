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
import multiprocessing
import os
import resource
import statistics
import sys
import time
from multiprocessing.connection import Connection
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


class Client(asyncio.Protocol):
    """One SSE client on a raw connection: the response head, then its bytes as they come, looked at
    only for the first `event: status` (streaming) and the terminal status (the cancel arrived)."""

    def __init__(self, batch: ClientBatch) -> None:
        self.batch, self.start = batch, time.monotonic()
        self.head, self.tail = b"", b""
        self.status = 0  # the response's, once its head is in
        self.streaming = self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.batch.request)

    def data_received(self, data: bytes) -> None:
        if not self.status:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, _, data = self.head.partition(b"\r\n\r\n")
            self.status = int(head.split(b" ", 2)[1])
            if self.status != 200:
                self.batch.answered += 1
                self.finish()
                if self.status == 503:
                    self.batch.refused.append(time.monotonic() - self.start)
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"retry-after:"):
                            self.batch.retry_after.add(line.split(b":", 1)[1].strip().decode())
                else:
                    self.batch.failed.append(f"status {self.status}")
                return
        seen = self.tail + data  # a marker may straddle two reads
        if not self.streaming and b"event: status" in seen:
            self.streaming = True
            self.batch.accepted += 1
            self.batch.answered += 1
        if b'"status": "cancelled"' in seen:
            self.batch.ended.append(time.monotonic())
            self.finish()
        self.tail = seen[-64:]

    def finish(self) -> None:
        self.done = True
        self.batch.closed += 1
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done:
            self.done = True
            self.batch.closed += 1
            self.batch.answered += not self.streaming and self.status in (0, 200)
            if self.streaming:
                self.batch.accepted -= 1
            self.batch.failed.append(f"closed before the terminal event ({exc!r}, status {self.status})")


class ClientBatch:
    """Some of the clients, on an asyncio loop in a process of their own (see Clients)."""

    def __init__(self, host: str, port: int, request: bytes, count: int, share: int) -> None:
        self.host, self.port, self.request, self.count, self.share = host, port, request, count, share
        self.accepted = self.answered = self.closed = 0  # answered: a refusal, or streaming
        self.refused: list[float] = []  # seconds until a 503 came
        self.failed: list[str] = []
        self.retry_after: set[str] = set()
        self.ended: list[float] = []  # monotonic (system-wide) times the terminal event came

    async def run(self, report: Connection) -> None:
        loop = asyncio.get_running_loop()
        for n in range(self.count):
            loop.create_task(self.connect(loop))
            if n % self.share == self.share - 1:
                await asyncio.sleep(0.05)  # a ramp, not one SYN flood: the listen backlog is finite
        deadline = time.monotonic() + CONNECT_SECONDS
        while self.answered < self.count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        report.send(("connected", self.accepted, self.refused, self.failed, self.retry_after))
        deadline = time.monotonic() + CONNECT_SECONDS + END_SECONDS
        while self.closed < self.count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        report.send(("ended", self.accepted, self.ended, self.failed))

    async def connect(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            await asyncio.wait_for(loop.create_connection(lambda: Client(self), self.host, self.port), 30)
        except (TimeoutError, OSError) as error:
            self.answered += 1
            self.closed += 1
            self.failed.append(f"connect: {error!r}")


def run_batch(host: str, port: int, request: bytes, count: int, share: int, report: Connection) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(ClientBatch(host, port, request, count, share).run(report))


class Clients:
    """The SSE clients, spread over a few processes (one core's worth of asyncio would be the
    bottleneck, and in our own process it would hold the GIL while we time other requests)."""

    def __init__(self, host: str, port: int, path: str, token: str, count: int, processes: int) -> None:
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                   "Accept: text/event-stream\r\nConnection: close\r\n\r\n").encode()
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes = []
        for n in range(processes):
            ours, theirs = context.Pipe(duplex=False)
            share = count // processes + (n < count % processes)
            # Together still 50 new connections every 50 ms.
            self.processes.append(context.Process(target=run_batch, daemon=True, args=(
                host, port, request, share, max(1, 50 // processes), theirs)))
            self.pipes.append(ours)
        self.accepted = 0
        self.refused: list[float] = []
        self.failed: list[str] = []
        self.retry_after: set[str] = set()
        self.ended: list[float] = []

    def start(self) -> None:
        for process in self.processes:
            process.start()

    def connected(self, timeout: float) -> bool:
        """Whether every process has had every one of its clients answered (or given up on them)."""
        return all(pipe.poll(timeout / len(self.pipes)) for pipe in self.pipes)

    def collect_connected(self) -> None:
        for pipe in self.pipes:
            _, accepted, refused, failed, retry_after = pipe.recv()
            self.accepted += accepted
            self.refused += refused
            self.failed += failed
            self.retry_after |= retry_after

    def collect_ended(self, timeout: float) -> None:
        self.accepted, self.failed = 0, []
        for pipe in self.pipes:
            if pipe.poll(timeout):
                _, accepted, ended, failed = pipe.recv()
                self.accepted += accepted
                self.ended += ended
                self.failed += failed
        for process in self.processes:
            process.join(1)
            if process.is_alive():
                process.kill()


def cpu_seconds(root: int) -> float:
    """User + system CPU time of a process's children so far (the gunicorn workers)."""
    total = 0
    for task in Path(f"/proc/{root}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except OSError:
                pass
    return total / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--client-processes", type=int, default=3,
                        help="processes the clients are spread over (each an asyncio loop)")
    parser.add_argument("--log", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the stack, e.g. WEB_CONNECTIONS=1000")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < args.clients // args.client_processes + 100:
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
        clients = Clients(stack.host, stack.port, f"/api/runs/{run_id}/events", token, args.clients,
                          args.client_processes)
        cpu_idle = cpu_seconds(web)
        started = time.monotonic()
        clients.start()
        peak = rss_idle
        connecting: dict[str, list[float]] = {"/api/health": [], "/api/runs": []}
        while not clients.connected(0.5):
            peak = max(peak, rss_kb(web))
            if time.monotonic() - started > CONNECT_SECONDS + 60:  # and the processes' start
                sys.exit("the clients did not report back")
            if len(connecting["/api/health"]) < SAMPLES // 3:  # also while streams pile up
                for path, times in latencies_once(session, stack.url).items():
                    connecting[path] += times
        connected = time.monotonic() - started
        cpu_connect = cpu_seconds(web) - cpu_idle  # with the requests timed meanwhile, a small part
        clients.collect_connected()
        open_ = latencies(session, stack.url)
        peak = max(peak, rss_kb(web))

        cpu_before = cpu_seconds(web)
        cancel_at = time.monotonic()
        session.post(f"{stack.url}/api/runs/{run_id}/cancel", timeout=30).raise_for_status()
        clients.collect_ended(END_SECONDS)
        cpu = cpu_seconds(web) - cpu_before
        peak = max(peak, rss_kb(web))
        rss_after = rss_kb(web)

    accepted, refused = clients.accepted, clients.refused
    print(f"clients: {args.clients} over {args.client_processes} processes: {accepted} streamed, "
          f"{len(refused)} refused (503), {len(clients.failed)} failed; all answered in {connected:.1f} s")
    print(f"web processes' CPU while the clients connected: {cpu_connect:.2f} s "
          f"({cpu_connect / max(accepted + len(refused), 1) * 1e6:.0f} us a stream)")
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
        print(f"web processes' CPU from the cancel to the last client: {cpu:.2f} s "
              f"({cpu / len(clients.ended) * 1e6:.0f} us a client)")
    for path in idle:
        loaded = connecting[path] + open_[path]
        ratio = p95(loaded) / p95(idle[path])
        print(f"{path}: p95 idle {p95(idle[path]) * 1000:.1f} ms, with streams {p95(loaded) * 1000:.1f} ms "
              f"(max {max(loaded) * 1000:.0f} ms): ratio {ratio:.2f}; while connecting "
              f"p95 {p95(connecting[path]) * 1000:.1f} ms, once open {p95(open_[path]) * 1000:.1f} ms")
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
