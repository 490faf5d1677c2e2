"""How many runs a worker command runs at once: N runs submitted together against one run alone.

The test waits 3 s and launches no browser, so what is measured is how runs are spread over the
worker threads, not how fast the machine runs Chromium. For 1 and then 2 worker processes
(WORKER_THREADS left at its default of 2), a stack is started as `make run` starts one; after one
uncounted warm-up, one run alone is timed (--alone times, the median kept), then N runs are posted
together (one thread each, following its SSE stream) and timed from the first POST to the last
terminal status. Every run must pass or the benchmark stops.

Printed for each: the wall times, the most runs running together (from the runs' startedAt and
finishedAt), and `throughput ratio: <N at once ÷ one>`. With S runs at once, the best it can be is
about ceil(N ÷ S); the target is within 1.2× of it. Runs at once share the CPU and each takes
longer than one alone, so `hand-off ratio` divides the wall time by ceil(N ÷ S) times their own
median running time: what is left (near 1) is time lost between runs, in the queue.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/throughput.py` from anywhere
from bench.common import ApiTiming, median_parts, run_api, stacks_in_scratch  # noqa: E402

THREADS = 2  # WORKER_THREADS's default, which the Procfile passes on
SPEC = """import { test } from '@playwright/test';

test('waits 3 s', async () => {
  await new Promise((resolve) => setTimeout(resolve, 3000));
});
"""


def most_at_once(timings: list[ApiTiming]) -> int:
    """The most runs whose [startedAt, finishedAt] overlap at one moment."""
    edges = sorted([(t.started_at, 1) for t in timings] + [(t.finished_at, -1) for t in timings])
    most = current = 0
    for _, step in edges:  # at equal times an end (-1) sorts first: touching is not overlapping
        current += step
        most = max(most, current)
    return most


def measure(processes: int, n: int, alone_rounds: int, log: Path | None) -> float:
    """One stack with `processes` worker processes; prints its figures, returns its ratio."""
    slots = processes * THREADS
    with stacks_in_scratch(log, {"WORKER_PROCESSES": str(processes), "WORKER_THREADS": str(THREADS)}) as bench, \
            requests.Session() as session:
        session.auth = bench.auth
        url = bench.stacks[0].url

        def one() -> ApiTiming:
            return run_api(session, url, "/api/test", {"script": SPEC, "title": "waits"}, tests=1)

        one()  # warm-up: the first run of each worker process pays for the sandbox check
        alones = [one() for _ in range(alone_rounds)]
        alone = statistics.median(t.total for t in alones)
        with ThreadPoolExecutor(max_workers=n) as pool:
            start = time.perf_counter()
            timings = list(pool.map(lambda _: one(), range(n)))
            together = time.perf_counter() - start
    ratio = together / alone
    best = math.ceil(n / slots)
    # What the slots lose between runs, apart from runs slowing each other down on a busy CPU.
    handoff = together / (best * statistics.median(t.running for t in timings))
    print(f"{processes} worker process{'es' if processes > 1 else ''} × {THREADS} threads ({slots} slots): "
          f"one alone {alone:.2f} s ({median_parts(alones)}), {n} at once {together:.2f} s "
          f"(running: median {statistics.median(t.running for t in timings):.2f} s), "
          f"most running together {most_at_once(timings)}")
    print(f"hand-off ratio: {handoff:.2f} ({n} at once ÷ (ceil({n} ÷ {slots}) × their median running time))")
    print(f"throughput ratio: {ratio:.2f} (ceil({n} ÷ {slots}) = {best}; target at most {1.2 * best:.2f})",
          flush=True)
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=8, help="runs submitted together (default 8)")
    parser.add_argument("--alone", type=int, default=3, help="times one run alone is timed; the median counts")
    parser.add_argument("--log", type=Path, help="keep the output of web, worker and redis in this file")
    args = parser.parse_args()
    if args.n < 2 or args.alone < 1:
        parser.error("-n must be at least 2 and --alone at least 1")
    for processes in (1, 2):
        measure(processes, args.n, args.alone, args.log)


if __name__ == "__main__":
    main()
