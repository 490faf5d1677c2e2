"""Sharded runs: a job's run split into parts that any workers take, balanced by past durations.

A run with `shards` > 1 gets a RunShard row per part when it is queued (`start`), each its own
message on `job-execution` (run id, shard index). A shard is claimed, watched, handed back and
reaped like a run, on its own row; the run is `running` from its first shard's claim until the
worker that finishes the last shard has merged the shards' reports and ended it (`end`).
"""
from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select, update

from supertest import events, registry
from supertest.connections import redis_client
from supertest.extensions import db
from supertest.models import Run, RunShard, RunTest, TestResult, utcnow
from supertest.outcomes import ERROR, FAILED, PASSED, PENDING, RUNNING, TERMINAL, TIMEOUT, CaseResult
from supertest.services import runs
from supertest.services.serialize import shard_json

log = logging.getLogger(__name__)
AUTO = 0  # a job's or run's `shards` for "auto"
HISTORY_RUNS = 5  # a test's expected duration: the median of its last few runs
POSITIONS = 100_000  # a shard's results are numbered from index × this, so the run lists them by shard


@dataclass(frozen=True)
class Planned:
    """One shard of a plan: its files in the run's order and the time they are expected to take."""

    files: list[str]
    expected_ms: int


def balance(tests: Sequence[tuple[str, int | None]], count: int) -> list[Planned]:
    """Split (file, expected ms or None) into at most `count` shards, longest first onto the
    least-loaded shard, so the slowest shard ends as early as it can.

    A test with no history weighs the median of those with one; with no history at all, every
    test weighs the same (and is expected to take 0 ms). Never more shards than tests; ties go
    to the lowest shard, so a plan is the same every time for the same input.
    """
    count = max(1, min(count, len(tests)))
    known = [ms for _, ms in tests if ms is not None]
    fallback = int(statistics.median(known)) if known else 0
    weights = [(file, fallback if ms is None else ms, position) for position, (file, ms) in enumerate(tests)]
    loads = [0] * count
    chosen: list[list[tuple[int, str]]] = [[] for _ in range(count)]
    for file, weight, position in sorted(weights, key=lambda item: (-item[1], item[2])):
        # With no history, weights are all 0: fewest tests first keeps the split even.
        shard = min(range(count), key=lambda i: (loads[i], len(chosen[i]), i))
        loads[shard] += weight
        chosen[shard].append((position, file))
    return [Planned([file for _, file in sorted(files)], load) for files, load in zip(chosen, loads, strict=True)]


def expected_durations(run: Run) -> dict[str, int]:
    """Each of the run's tests' median duration (the sum of its cases) over its last HISTORY_RUNS
    runs that recorded results, by file name; a test with none is left out. A saved test's history
    is its own; an ad-hoc spec's (no saved test) is that of the same path in earlier ad-hoc runs of
    the same title, as a CI suite sends its specs each time."""
    saved = [run_test.test_id for run_test in run.run_tests if run_test.test_id]
    specs = [run_test.filename for run_test in run.run_tests if not run_test.test_id]
    since = utcnow() - timedelta(days=30)
    by_test: dict[str, int] = {}
    if saved:
        by_test = _medians(db.session.execute(
            select(RunTest.test_id, func.sum(TestResult.duration_ms))
            .join(TestResult, TestResult.run_test_id == RunTest.id)
            .where(RunTest.test_id.in_(saved), RunTest.run_created_at >= since)
            .group_by(RunTest.id, RunTest.test_id, RunTest.run_created_at)
            .order_by(RunTest.run_created_at.desc())
            .limit(HISTORY_RUNS * len(saved) * 4)).all())
    by_spec: dict[str, int] = {}
    if specs:
        by_spec = _medians(db.session.execute(
            select(RunTest.filename, func.sum(TestResult.duration_ms))
            .join(TestResult, TestResult.run_test_id == RunTest.id)
            .join(Run, Run.id == RunTest.run_id)
            .where(RunTest.test_id.is_(None), RunTest.filename.in_(specs), RunTest.run_created_at >= since,
                   RunTest.run_id != run.id, Run.kind == "job", Run.job_id.is_(None), Run.title == run.title)
            .group_by(RunTest.id, RunTest.filename, RunTest.run_created_at)
            .order_by(RunTest.run_created_at.desc())
            .limit(HISTORY_RUNS * len(specs) * 4)).all())
    found = {run_test.filename: by_test.get(run_test.test_id) if run_test.test_id else by_spec.get(run_test.filename)
             for run_test in run.run_tests}
    return {filename: ms for filename, ms in found.items() if ms is not None}


def _medians(rows: Sequence[Any]) -> dict[str, int]:
    """(key, duration) rows, newest first, to each key's median of its first HISTORY_RUNS."""
    found: dict[str, list[int]] = {}
    for key, total in rows:
        if key is not None:
            durations = found.setdefault(key, [])
            if len(durations) < HISTORY_RUNS:
                durations.append(int(total or 0))
    return {key: int(statistics.median(durations)) for key, durations in found.items()}


def free_slots() -> int:
    """How many runs the live workers could start now: their run slots (each registers its threads)
    less the runs and shards those workers are running. A run still marked running by a worker that
    is gone holds no slot (the reaper will hand it back)."""
    entries = registry.registered(redis_client(), current_app.config["QUEUE_NAMESPACE"])
    slots = sum(int(entry.get("slots") or 1) for entry in entries)
    live = [entry["id"] for entry in entries]
    busy = (db.session.scalar(select(func.count()).select_from(Run)
                              .where(Run.status == RUNNING, Run.shards == 1, Run.worker.in_(live))) or 0) \
        + (db.session.scalar(select(func.count()).select_from(RunShard)
                             .where(RunShard.status == RUNNING, RunShard.worker.in_(live))) or 0)
    return max(1, slots - busy)


def start(run_id: str) -> bool:
    """Plan a queued run's shards and queue each; False for a run of one shard (queue it as a run).

    The count is the run's `shards`, or for "auto" the free slots, at most MAX_SHARDS and never more
    than its tests; a count of one makes it an unsharded run.
    """
    run = db.session.get(Run, run_id)
    if run is None or run.kind != "job" or run.shards == 1 or run.status != PENDING:
        return False
    asked = run.shards if run.shards != AUTO else free_slots()
    count = max(1, min(asked, current_app.config["MAX_SHARDS"], len(run.run_tests)))
    run.shards = count
    if count == 1:
        db.session.commit()
        return False
    expected = expected_durations(run)
    plan = balance([(run_test.filename, expected.get(run_test.filename)) for run_test in run.run_tests], count)
    db.session.add_all(RunShard(run_id=run_id, index=i, files=part.files, expected_ms=part.expected_ms,
                                status=PENDING, attempt=1) for i, part in enumerate(plan))
    db.session.commit()
    for index in range(count):
        _send(run_id, index)
    return True


def _send(run_id: str, index: int) -> None:
    current_app.extensions["actors"][runs.ACTORS["job"]].send(run_id, index)


def get(run_id: str, index: int) -> RunShard | None:
    return db.session.get(RunShard, (run_id, index))


def claim(run_id: str, index: int, worker: str) -> RunShard | None:
    """pending → running for a shard of a run not yet ended; the run too, at its first shard."""
    run = db.session.get(Run, run_id)
    if run is None or run.finished:
        db.session.rollback()
        return None
    now = utcnow()
    changed = db.session.execute(update(RunShard).where(
        RunShard.run_id == run_id, RunShard.index == index, RunShard.status == PENDING).values(
        status=RUNNING, started_at=now, worker=worker, heartbeat_at=now)).rowcount  # type: ignore[attr-defined]
    db.session.commit()
    if not changed:
        return None
    runs.start_sharded(run_id)
    shard = get(run_id, index)
    _tell(shard)
    return shard


def finish(run_id: str, index: int, status: str, attempt: int, error_message: str | None = None,
           blob_store: str | None = None, results: tuple[CaseResult, ...] = (),
           test_statuses: dict[str, str] | None = None) -> RunShard | None:
    """Record a shard's outcome once, for the attempt that claimed it, with its results."""
    assert status in TERMINAL
    changed = db.session.execute(update(RunShard).where(
        RunShard.run_id == run_id, RunShard.index == index, RunShard.status.in_((PENDING, RUNNING)),
        RunShard.attempt == attempt).values(
        status=status, error_message=error_message, blob_store=blob_store,
        finished_at=utcnow())).rowcount  # type: ignore[attr-defined]
    if changed:
        run_tests = db.session.scalars(select(RunTest).where(RunTest.run_id == run_id)).all()
        shard = get(run_id, index)
        assert shard is not None
        mine = set(shard.files)
        by_file = {run_test.filename: run_test.id for run_test in run_tests}
        db.session.add_all(
            TestResult(run_id=run_id, position=index * POSITIONS + i, title=r.title, file=r.file, status=r.status,
                       duration_ms=r.duration_ms, retries=r.retries, error=r.error, run_test_id=by_file.get(r.file))
            for i, r in enumerate(results))
        for run_test in run_tests:
            if run_test.filename in mine:
                run_test.status = (test_statuses or {}).get(run_test.filename, status)
    db.session.commit()
    if not changed:
        return None
    shard = get(run_id, index)
    _tell(shard)
    return shard


def keep_report(run_id: str, index: int, store: str) -> bool:
    """A shard's own HTML report, made from its blob when the run's could not be merged, is stored."""
    changed = db.session.execute(update(RunShard).where(RunShard.run_id == run_id, RunShard.index == index)
                                 .values(report_store=store)).rowcount  # type: ignore[attr-defined]
    db.session.commit()
    _tell(get(run_id, index))
    return bool(changed)


def drop_blob(run_id: str, index: int) -> None:
    """A shard's blob report is gone, merged into the run's report."""
    db.session.execute(update(RunShard).where(RunShard.run_id == run_id, RunShard.index == index)
                       .values(blob_store=None))
    db.session.commit()


def hand_back(run_id: str, index: int, because: str, attempt: int | None = None) -> RunShard | None:
    """running → pending again, attempt + 1, and queue it, for a shard whose worker was lost or is
    stopping; after MAX_RUN_ATTEMPTS the shard ends `error`. The other shards are not touched."""
    shard = get(run_id, index)
    if shard is None or shard.status != RUNNING or attempt not in (None, shard.attempt):
        return None
    if shard.attempt >= current_app.config["MAX_RUN_ATTEMPTS"]:
        return finish(run_id, index, ERROR, shard.attempt,
                      error_message=f"Given up after {shard.attempt} attempts: {because}.")
    changed = db.session.execute(update(RunShard).where(
        RunShard.run_id == run_id, RunShard.index == index, RunShard.status == RUNNING,
        RunShard.attempt == shard.attempt).values(
        status=PENDING, attempt=shard.attempt + 1, started_at=None, worker=None, heartbeat_at=None,
        error_message=because)).rowcount  # type: ignore[attr-defined]
    db.session.commit()
    if not changed:
        return None
    _send(run_id, index)
    shard = get(run_id, index)
    _tell(shard)
    return shard


def reap(stale_seconds: float) -> list[tuple[str, int]]:
    """Hand back every running shard (of a running run) whose worker has not shown it was alive for
    `stale_seconds`; returns those handed back."""
    stale = utcnow() - timedelta(seconds=stale_seconds)
    found = db.session.execute(select(RunShard.run_id, RunShard.index).join(Run, Run.id == RunShard.run_id).where(
        RunShard.status == RUNNING, RunShard.heartbeat_at < stale, Run.status == RUNNING)).all()
    db.session.rollback()
    handed = []
    for run_id, index in found:
        changed = db.session.execute(update(RunShard).where(
            RunShard.run_id == run_id, RunShard.index == index, RunShard.status == RUNNING,
            RunShard.heartbeat_at < stale).values(heartbeat_at=utcnow())).rowcount  # type: ignore[attr-defined]
        db.session.commit()
        moved = hand_back(run_id, index, "restarted after worker loss") if changed else None
        if moved is not None and moved.status == PENDING:
            log.warning("run %s: shard %s's worker was lost; handed back to the queue", run_id, index)
            handed.append((run_id, index))
    return handed


def take_merge(run_id: str, worker: str) -> Run | None:
    """The run, to merge and end, for the one worker that gets there once all its shards have ended."""
    left = db.session.scalar(select(func.count()).select_from(RunShard).where(
        RunShard.run_id == run_id, RunShard.status.not_in(TERMINAL)))
    if left:
        db.session.rollback()
        return None
    changed = db.session.execute(update(Run).where(Run.id == run_id, Run.status == RUNNING, Run.worker.is_(None))
                                 .values(worker=worker, heartbeat_at=utcnow())).rowcount  # type: ignore[attr-defined]
    db.session.commit()
    return db.session.get(Run, run_id) if changed else None


def unmerged(stale_seconds: float) -> list[str]:
    """Sharded runs still running with every shard ended, whose merging worker has not been heard
    of for `stale_seconds` (it died merging): let go of, for take_merge to hand to another."""
    stale = utcnow() - timedelta(seconds=stale_seconds)
    going = select(RunShard.run_id).where(RunShard.status.not_in(TERMINAL))
    found = db.session.scalars(select(Run.id).where(Run.status == RUNNING, Run.shards > 1, Run.heartbeat_at < stale,
                                                    Run.id.not_in(going))).all()
    released = []
    for run_id in found:
        changed = db.session.execute(update(Run).where(Run.id == run_id, Run.status == RUNNING,
                                                       Run.heartbeat_at < stale).values(worker=None))
        if changed.rowcount:  # type: ignore[attr-defined]
            released.append(run_id)
    db.session.commit()
    return released


def verdict(shards: Sequence[RunShard]) -> tuple[str, str | None]:
    """The run's status from its shards' (passed only if every shard passed), and what they said."""
    statuses = {shard.status for shard in shards}
    status = next((s for s in (TIMEOUT, ERROR, FAILED) if s in statuses), PASSED if statuses == {PASSED} else ERROR)
    notes = [f"Shard {shard.index + 1}: {shard.error_message}" for shard in shards
             if shard.error_message and shard.status != PASSED]
    return status, "\n\n".join(notes) or None


def _tell(shard: RunShard | None) -> None:
    """A shard's change, to the run's viewers."""
    if shard is not None:
        events.publish(shard.run_id, "shard", shard_json(shard))
