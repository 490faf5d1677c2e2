"""Prometheus metrics, gathered when scraped: aggregate queries (GROUP BY) over the runs of the last
minutes, added to sums kept of all older runs; the queues and the workers from Redis. Exposed in the
text format of prometheus-client."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import zip_longest
from typing import Any, TypeVar

from flask import current_app
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, case, func, literal_column, or_, select

from supertest.extensions import db
from supertest.models import Run, utcnow
from supertest.outcomes import RUNNING, STATUSES, TERMINAL
from supertest.services import operations

# Upper bounds (seconds) of the run duration histogram's buckets; +Inf is added.
DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
OUTCOMES = ("passed", "failed", "flaky", "skipped")  # Run's counts of cases
K = TypeVar("K")


@dataclass(frozen=True)
class Durations:
    """One kind's finished runs: how many took at most each bound (cumulative), their count and sum."""

    kind: str
    at_most: tuple[int, ...]
    count: int
    total_seconds: float

    def buckets(self) -> list[tuple[str, float]]:
        return [*((str(float(bound)), float(n)) for bound, n in zip(DURATION_BUCKETS, self.at_most, strict=True)),
                ("+Inf", float(self.count))]


def _seconds(dialect: str) -> ColumnElement[Any]:
    """A run's duration in seconds, computed by the database (date_part: a double precision, which
    is much cheaper to compute with than EXTRACT's numeric)."""
    if dialect == "postgresql":
        return func.date_part("epoch", Run.finished_at - Run.started_at)
    return (func.julianday(Run.finished_at) - func.julianday(Run.started_at)) * 86400.0


@dataclass
class Figures:
    """What some runs add up to. `counts`: per (kind, trigger, status), the runs and their cases by
    outcome (OUTCOMES' order); `buckets`: per kind, how many finished runs took at most each bound
    and no less than the bound before (the last: more than every bound), and their seconds in all."""

    counts: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    buckets: dict[str, list[int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def __add__(self, other: Figures) -> Figures:
        return Figures(_plus(self.counts, other.counts), _plus(self.buckets, other.buckets),
                       {kind: self.seconds.get(kind, 0.0) + other.seconds.get(kind, 0.0)
                        for kind in self.seconds.keys() | other.seconds.keys()})

    def run_counts(self) -> list[tuple[str, str, str, int, dict[str, int]]]:
        """(kind, trigger, status, runs, cases by outcome), as the collector takes them."""
        return [(kind, trigger, status, count, dict(zip(OUTCOMES, sums, strict=True)))
                for (kind, trigger, status), (count, *sums) in sorted(self.counts.items())]

    def durations(self) -> list[Durations]:
        return [Durations(kind, cumulative(per_bucket)[:-1], sum(per_bucket), self.seconds[kind])
                for kind, per_bucket in sorted(self.buckets.items())]


def _plus(mine: dict[K, list[int]], theirs: dict[K, list[int]]) -> dict[K, list[int]]:
    """Two tables of counts added up, key by key and place by place."""
    return {key: [a + b for a, b in zip_longest(mine.get(key, ()), theirs.get(key, ()), fillvalue=0)]
            for key in mine.keys() | theirs.keys()}


def figures(*where: ColumnElement[bool]) -> Figures:
    """The runs `where` selects, added up by the database: one GROUP BY for the counts, and one for
    the durations, where each finished run's bucket is the first bound it fits under (a CASE that
    stops at the first match)."""
    found = Figures()
    query = (select(Run.kind, Run.trigger, Run.status, func.count(),
                    *(func.coalesce(func.sum(getattr(Run, outcome)), 0) for outcome in OUTCOMES))
             .where(*where).group_by(Run.kind, Run.trigger, Run.status))
    for kind, trigger, status, count, *sums in db.session.execute(query):
        found.counts[(kind, trigger, status)] = [count, *map(int, sums)]
    seconds = _seconds(db.engine.dialect.name)
    # Bounds as literals, so that the CASE in SELECT and GROUP BY is one expression to the database.
    bucket = case(*((seconds <= literal_column(str(bound)), index) for index, bound in enumerate(DURATION_BUCKETS)),
                  else_=len(DURATION_BUCKETS)).label("bucket")
    times = (select(Run.kind, bucket, func.count(), func.sum(seconds))
             .where(Run.status.in_(TERMINAL), Run.started_at.is_not(None), Run.finished_at.is_not(None), *where)
             .group_by(Run.kind, literal_column("bucket")))
    for kind, index, count, total in db.session.execute(times):
        found.buckets.setdefault(kind, [0] * (len(DURATION_BUCKETS) + 1))[index] += count
        found.seconds[kind] = found.seconds.get(kind, 0.0) + float(total or 0)
    return found


# Runs that ended before the boundary are settled: their figures never change (a deletion aside), so
# each web process adds them up once per period and keeps the sums; a scrape adds up only the runs
# since the boundary (an index on finished_at finds them) and those not finished. The boundary is
# the same for every process (a multiple of the period, one period back), so processes agree.
SETTLED_PERIOD = timedelta(minutes=10)
SETTLED_KEY = "supertest_settled_runs"


def settled_boundary(now: datetime) -> datetime:
    """The start of the period before the current one: a run ends, and commits, long before it."""
    period = SETTLED_PERIOD.total_seconds()
    return datetime.fromtimestamp((now.timestamp() // period - 1) * period, UTC)


def gathered(now: datetime | None = None) -> Figures:
    """Every run's figures: the settled runs' from this process's sums (made again when the boundary
    moves), the others' from the database now."""
    boundary = settled_boundary(now or utcnow())
    kept: tuple[datetime, Figures] | None = current_app.extensions.get(SETTLED_KEY)
    if kept is None or kept[0] != boundary:
        # Two scrapes at once may both add them up; the later one's sums are kept, and are the same.
        kept = boundary, figures(Run.status.in_(TERMINAL), Run.finished_at < boundary)
        current_app.extensions[SETTLED_KEY] = kept
    unfinished = sorted(status for status in STATUSES if status not in TERMINAL)
    recent = figures(or_(Run.status.in_(unfinished), Run.finished_at.is_(None), Run.finished_at >= boundary))
    return kept[1] + recent


def cumulative(counts: Sequence[int]) -> tuple[int, ...]:
    """Per-bucket counts → at-most counts, as Prometheus's buckets are: [1, 0, 2] → (1, 1, 3)."""
    running, out = 0, []
    for count in counts:
        running += count
        out.append(running)
    return tuple(out)


class SupertestCollector(Collector):
    """Everything in one pass, from figures gathered beforehand (so a failure is the scrape's 500,
    not a half-written answer)."""

    def __init__(self, counts: Sequence[tuple[str, str, str, int, dict[str, int]]], times: Sequence[Durations],
                 queues: Sequence[dict[str, Any]], workers: int, uploads: int) -> None:
        self.counts, self.times, self.queues, self.workers, self.uploads = counts, times, queues, workers, uploads

    def collect(self) -> Iterator[Metric]:
        finished = CounterMetricFamily("supertest_runs_finished", "Runs that have ended, by kind, trigger and status",
                                       labels=["kind", "trigger", "status"])
        cases = CounterMetricFamily("supertest_tests", "Test cases in finished runs, by outcome (flaky: passed "
                                    "on a retry)", labels=["kind", "outcome"])
        running = GaugeMetricFamily("supertest_runs_running", "Runs running now", labels=["kind"])
        by_kind: dict[str, dict[str, int]] = {}
        running_by_kind: dict[str, int] = {"test": 0, "job": 0}
        for kind, trigger, status, count, outcomes in self.counts:
            if status in TERMINAL:
                finished.add_metric([kind, trigger, status], count)
                totals = by_kind.setdefault(kind, dict.fromkeys(OUTCOMES, 0))
                for outcome, n in outcomes.items():
                    totals[outcome] += n
            elif status == RUNNING:
                running_by_kind[kind] = running_by_kind.get(kind, 0) + count
        for kind, totals in sorted(by_kind.items()):
            for outcome, n in totals.items():
                cases.add_metric([kind, outcome], n)
        for kind, count in sorted(running_by_kind.items()):
            running.add_metric([kind], count)
        duration = HistogramMetricFamily("supertest_run_duration_seconds", "How long finished runs took, "
                                         "from start to end", labels=["kind"])
        for times in self.times:
            duration.add_metric([times.kind], times.buckets(), times.total_seconds)
        waiting = GaugeMetricFamily("supertest_queue_waiting", "Messages waiting in a queue", labels=["queue"])
        oldest = GaugeMetricFamily("supertest_queue_oldest_waiting_seconds",
                                   "How long the oldest waiting message has waited (0: none waits)", labels=["queue"])
        held = GaugeMetricFamily("supertest_queue_running", "Messages of a queue that workers hold now",
                                 labels=["queue"])
        for queue in self.queues:
            waiting.add_metric([queue["name"]], queue["waiting"])
            oldest.add_metric([queue["name"]], queue["oldestWaitingSeconds"] or 0)
            held.add_metric([queue["name"]], queue["running"])
        yield from (finished, cases, duration, running, waiting, oldest, held)
        yield GaugeMetricFamily("supertest_workers_alive", "Worker processes registered and alive", self.workers)
        yield GaugeMetricFamily("supertest_report_uploads_waiting",
                                "Reports kept on a worker's disk, waiting for object storage", self.uploads)


def exposition() -> bytes:
    """The metrics in Prometheus's text format, gathered now."""
    runs = gathered()
    collector = SupertestCollector(runs.run_counts(), runs.durations(), operations.queue_states(),
                                   len(operations.workers()), operations.uploads_waiting())
    db.session.rollback()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
