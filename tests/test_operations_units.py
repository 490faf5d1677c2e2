"""The pure pieces of operations, as tables: log formats and the run filter, reading a queue's head,
a worker's registry entry. No services: run by `make check`."""
from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from supertest import logs, queues, registry
from supertest.services import metrics


def record(message: str = "hello", exc: bool = False, **extra: Any) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            info = sys.exc_info()
    made = logging.LogRecord("supertest.x", logging.WARNING, __file__, 1, message, (), info)
    made.__dict__.update(extra)
    return made


@pytest.mark.parametrize(("run_id", "job_id", "exc", "ends"), [
    (None, None, False, "supertest.x: hello"),
    ("r1", None, False, "supertest.x: hello run=r1"),
    ("r1", "j1", False, "supertest.x: hello run=r1 job=j1"),
    (None, "j1", False, "supertest.x: hello job=j1"),
])
def test_the_text_format_adds_the_run_at_the_end_of_the_line(run_id: str | None, job_id: str | None, exc: bool,
                                                             ends: str) -> None:
    line = logs.TextFormatter().format(record(runId=run_id, jobId=job_id))
    assert line.endswith(ends) and "WARNING" in line


def test_the_text_format_keeps_a_traceback_after_the_line_and_its_run() -> None:
    line = logs.TextFormatter(logging.Formatter("%(message)s")).format(record(exc=True, runId="r1", jobId=None))
    first, _, rest = line.partition("\n")
    assert first == "hello run=r1" and "ValueError: boom" in rest


@pytest.mark.parametrize("inner", [None, logging.Formatter("%(levelname)s %(message)s")])
def test_the_text_format_keeps_a_message_on_its_line(inner: logging.Formatter | None) -> None:
    """A file a run left behind (or a URL's path) named to look like another log line stays in its own."""
    made = record("run %s: left out of its report: %s", runId="r1", jobId=None)
    made.args = ("r1", "a\n2026-11-30 11:00:00,000 ERROR supertest: forged\r\x1b[2K\u2028")
    line = logs.TextFormatter(inner).format(made)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u2028" not in line
    assert line.endswith("a\\n2026-11-30 11:00:00,000 ERROR supertest: forged\\r\\x1b[2K\\u2028 run=r1")
    assert made.getMessage().startswith("run r1: left out of its report: a\n")  # the record itself is untouched


@pytest.mark.parametrize(("extra", "exc", "expected"), [
    ({"runId": None, "jobId": None}, False, {"runId": None, "jobId": None, "message": "hello"}),
    ({"runId": "r1", "jobId": "j1"}, False, {"runId": "r1", "jobId": "j1", "message": "hello"}),
    ({"runId": "r1", "jobId": None}, True, {"runId": "r1", "jobId": None, "message": "hello"}),
])
def test_the_json_format_is_one_object_a_line(extra: dict[str, Any], exc: bool, expected: dict[str, Any]) -> None:
    line = logs.JsonFormatter().format(record(exc=exc, **extra))
    assert "\n" not in line
    entry = json.loads(line)
    assert {key: entry[key] for key in expected} == expected
    assert entry["level"] == "WARNING" and entry["logger"] == "supertest.x" and entry["time"].endswith("+00:00")
    assert ("ValueError: boom" in entry["exception"]) if exc else "exception" not in entry


def test_the_filter_takes_the_run_from_the_context_and_leaves_it_behind() -> None:
    run_filter = logs.RunFilter()
    with logs.run_context("r1", "j1"):
        inside = record()
        run_filter.filter(inside)
        logs.set_run("r2", None)
        later = record()
        run_filter.filter(later)
    outside = record()
    run_filter.filter(outside)
    assert (inside.runId, inside.jobId) == ("r1", "j1")
    assert (later.runId, later.jobId) == ("r2", None)
    assert (outside.runId, outside.jobId) == (None, None)


def test_a_thread_started_for_a_run_carries_its_ids_and_nothing_else() -> None:
    seen: list[tuple[str | None, str | None]] = []
    with logs.run_context("r1", "j1"):
        target = logs.carried(lambda: seen.append(logs.current()))
    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    plain = threading.Thread(target=lambda: seen.append(logs.current()))
    plain.start()
    plain.join()
    assert seen == [("r1", "j1"), (None, None)]


@pytest.mark.parametrize(("messages", "oldest"), [
    ([], None),
    ([None], None),
    ([b'{"message_timestamp": 2000}', b'{"message_timestamp": 1000}'], 1000),
    ([b'not json', '{"message_timestamp": 5}', b'{"other": 1}'], 5),
    ([b'{"message_timestamp": "1000"}', b'{"message_timestamp": true}'], None),
    ([b'[1, 2]'], None),
])
def test_the_oldest_of_a_queues_head(messages: list[Any], oldest: int | None) -> None:
    assert queues.oldest_timestamp(messages) == oldest


@pytest.mark.parametrize(("state", "now", "seconds"), [
    (queues.QueueState("q", 0, 0, None), 10_000, None),
    (queues.QueueState("q", 1, 0, 8_500), 10_000, 1.5),
    (queues.QueueState("q", 1, 0, 12_000), 10_000, 0),  # another machine's clock ahead of ours
])
def test_how_long_the_oldest_has_waited(state: queues.QueueState, now: int, seconds: float | None) -> None:
    assert state.oldest_waiting_seconds(now) == seconds


@pytest.mark.parametrize(("value", "entry"), [
    (None, None),
    (b"not json", None),
    (b'["a"]', None),
    (b'{"host": "h"}', None),
    (b'{"id": "h:1", "pid": 1}', {"id": "h:1", "pid": 1}),
])
def test_a_registry_entry_is_read_or_passed_over(value: bytes | None, entry: dict[str, Any] | None) -> None:
    assert registry.parse(value) == entry


@pytest.mark.parametrize(("counts", "at_most"), [
    ([], ()),
    ([0, 0, 0], (0, 0, 0)),
    ([1, 0, 2], (1, 1, 3)),
    ([0, 5, 1, 0], (0, 5, 6, 6)),
])
def test_bucket_counts_become_cumulative(counts: list[int], at_most: tuple[int, ...]) -> None:
    assert metrics.cumulative(counts) == at_most


def test_the_collector_writes_what_it_was_given_in_prometheus_format() -> None:
    outcomes = dict.fromkeys(metrics.OUTCOMES, 0)
    counts = [("test", "api", "passed", 3, {**outcomes, "passed": 5, "flaky": 1}),
              ("test", "ui", "failed", 1, {**outcomes, "failed": 2}),
              ("job", "api", "running", 2, outcomes), ("job", "api", "pending", 4, outcomes)]
    at_most = (1, 2, 2, 2, 2, 2, 2, 2, 2, 4)
    times = [metrics.Durations("test", at_most, 4, 12.5)]
    queue = {"name": "test-execution", "waiting": 4, "oldestWaitingSeconds": 2.5, "running": 2}
    idle = {"name": "job-execution", "waiting": 0, "oldestWaitingSeconds": None, "running": 0}
    registry_ = CollectorRegistry(auto_describe=False)
    registry_.register(metrics.SupertestCollector(counts, times, [queue, idle], workers=2, uploads=1))
    text = generate_latest(registry_).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("supertest_runs_finished_total", kind="test", trigger="api", status="passed") == 3
    assert value("supertest_runs_finished_total", kind="test", trigger="ui", status="failed") == 1
    assert not any(name == "supertest_runs_finished_total" and ("status", "running") in labels
                   for name, labels in samples)
    assert value("supertest_tests_total", kind="test", outcome="passed") == 5
    assert value("supertest_tests_total", kind="test", outcome="flaky") == 1
    assert value("supertest_tests_total", kind="test", outcome="failed") == 2
    assert value("supertest_runs_running", kind="job") == 2 and value("supertest_runs_running", kind="test") == 0
    assert value("supertest_run_duration_seconds_bucket", kind="test", le="1.0") == 1
    assert value("supertest_run_duration_seconds_bucket", kind="test", le="3600.0") == 4
    assert value("supertest_run_duration_seconds_bucket", kind="test", le="+Inf") == 4
    assert value("supertest_run_duration_seconds_count", kind="test") == 4
    assert value("supertest_run_duration_seconds_sum", kind="test") == 12.5
    assert value("supertest_queue_waiting", queue="test-execution") == 4
    assert value("supertest_queue_oldest_waiting_seconds", queue="test-execution") == 2.5
    assert value("supertest_queue_oldest_waiting_seconds", queue="job-execution") == 0
    assert value("supertest_queue_running", queue="test-execution") == 2
    assert value("supertest_workers_alive") == 2 and value("supertest_report_uploads_waiting") == 1


@pytest.mark.parametrize(("now", "boundary"), [
    ("2026-11-30T12:34:56", "2026-11-30T12:20:00"),
    ("2026-11-30T12:30:00", "2026-11-30T12:20:00"),  # a period starts: the boundary moves with it
    ("2026-11-30T12:29:59.999", "2026-11-30T12:10:00"),
    ("2026-12-01T00:05:00", "2026-11-30T23:50:00"),
])
def test_the_settled_boundary_is_the_start_of_the_period_before(now: str, boundary: str) -> None:
    assert metrics.settled_boundary(datetime.fromisoformat(now).replace(tzinfo=UTC)) == \
        datetime.fromisoformat(boundary).replace(tzinfo=UTC)


def test_figures_add_up_key_by_key() -> None:
    kept = metrics.Figures({("test", "api", "passed"): [3, 5, 0, 1, 0]}, {"test": [1, 0, 2]}, {"test": 10.0})
    recent = metrics.Figures({("test", "api", "passed"): [1, 1, 0, 0, 0], ("job", "ui", "running"): [2, 0, 0, 0, 0]},
                             {"test": [0, 1, 0], "job": [4, 0, 0]}, {"test": 2.5, "job": 1.0})
    total = kept + recent
    assert total.counts == {("test", "api", "passed"): [4, 6, 0, 1, 0], ("job", "ui", "running"): [2, 0, 0, 0, 0]}
    assert total.buckets == {"test": [1, 1, 2], "job": [4, 0, 0]} and total.seconds == {"test": 12.5, "job": 1.0}
    assert kept.counts == {("test", "api", "passed"): [3, 5, 0, 1, 0]}  # neither side changed
    assert total.run_counts()[0] == ("job", "ui", "running", 2, {"passed": 0, "failed": 0, "flaky": 0, "skipped": 0})
