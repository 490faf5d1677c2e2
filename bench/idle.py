"""What a stack costs while nothing runs: each service's CPU, as a share of one core, over a quiet minute.

A stack as `make run` starts one (web, worker with its warm runners, clock, a private Redis) is left
alone for `--settle` seconds, then each service's processes (with all their descendants: the warm
runners' node and Chromium count to the worker) are read from /proc over `--seconds`. Last line: the
whole stack's share of a core.

    .venv/bin/python bench/idle.py [--seconds N] [--settle N] [--log stack.log]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/idle.py` from anywhere
from bench.common import stacks_in_scratch  # noqa: E402
from bench.faults import children  # noqa: E402
from bench.schedules import cpu_seconds  # noqa: E402


def tree(pid: int) -> list[int]:
    """The process and every descendant of it still running."""
    return [pid] + [descendant for child in children(pid) for descendant in tree(child)]


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:  # gone meanwhile: what it used is lost with it, and it was idle anyway
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to measure")
    parser.add_argument("--settle", type=float, default=20.0, help="how long to leave the stack first")
    parser.add_argument("--log", type=Path, help="keep the output of web, worker and redis in this file")
    args = parser.parse_args()
    with stacks_in_scratch(args.log, {}) as bench:
        services = bench.stacks[0].services
        time.sleep(args.settle)  # the warm runners start, the first heartbeats and housekeeping pass
        trees = {service.name: tree(service.process.pid) for service in services}
        before = {name: cpu_of(pids) for name, pids in trees.items()}
        time.sleep(args.seconds)
        shares = {name: (cpu_of(pids) - before[name]) / args.seconds * 100 for name, pids in trees.items()}
    for name, share in shares.items():
        print(f"{name:8s} {share:5.2f}% of a core  ({len(trees[name])} processes)")
    print(f"idle stack: {sum(shares.values()):.2f}% of a core")


if __name__ == "__main__":
    main()
