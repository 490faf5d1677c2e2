"""Executing one shard of a sharded run (services/shards.py), and merging the run's report after
its last shard: each shard is an attempt of a part of the run, through the same stages as a run."""
from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from itertools import pairwise
from pathlib import Path
from typing import Any

import redis as redis_lib
from dramatiq.middleware import Shutdown
from flask import current_app
from sqlalchemy.exc import DBAPIError

from supertest import events, logs, nofollow
from supertest.connections import redis_client
from supertest.execution import (
    BLOB,
    RESULTS,
    Part,
    Workspace,
    attempt_space,
    collect_output,
    launch,
    node_and_readable,
    patiently,
    processes,
    redact,
    redact_kept,
    results,
    run_user,
    runner,
    sandbox_of,
    sandbox_problem,
    test_statuses,
    verdict,
    worker_id,
)
from supertest.execution import collect as collecting
from supertest.execution.warm import Warm
from supertest.execution.watch import RunWatch
from supertest.execution.workspace import JUNIT
from supertest.extensions import db
from supertest.models import Run, RunShard, as_utc, utcnow
from supertest.outcomes import ERROR
from supertest.services import runs, shards, variables

log = logging.getLogger(__name__)
MERGE_SECONDS = 600  # merge-reports reads every shard's blob report; a backstop, not a budget
MERGE_CONFIG = "merge.config.js"
HTML = ["html", {"outputFolder": "report", "open": "never"}]
MERGED = [HTML, ["junit", {"outputFile": f"report/{JUNIT}"}]]  # the run's report, as an unsharded run's
OWN = [HTML]  # a shard's own, when the run's could not be merged
STACK_LINE = re.compile(r"\s+at \S")


def execute_shard(run_id: str, index: int) -> None:
    """Run one shard to its end; the worker whose shard is the run's last then merges and ends the run."""
    with logs.run_context(run_id):
        try:
            _execute_shard(run_id, index)
        finally:
            try:
                conclude(run_id)
            except Exception:  # the run stays running; the next shard's end (or a rerun) says more
                log.exception("run %s: could not end it after its shards", run_id)
                db.session.rollback()


def _execute_shard(run_id: str, index: int) -> None:
    shard = shards.claim(run_id, index, worker=worker_id())
    took = Stopwatch()  # from the claim, as the shard's durationMs
    if shard is None:
        log.info("run %s: shard %s is not pending; nothing to do", run_id, index)
        return
    run = shard.run
    logs.set_run(run_id, run.job_id)
    attempt = shard.attempt
    config = current_app.config
    # The heartbeat beats from the claim on: also while the shard waits for a warm runner still loading.
    with RunWatch(db.engine, run_id, attempt, config["HEARTBEAT_SECONDS"], shard=index) as watch, \
            attempt_space(f"{run_id}-s{index}-{attempt}", config) as (run_dir, tmp_dir, kept, warm):
        log.info("run %s: shard %s, attempt %s started %s", run_id, index, attempt, "warm" if warm else "cold")
        try:
            problem = sandbox_problem()
            if problem:
                shards.finish(run_id, index, ERROR, attempt, error_message=problem)
                return
            with run_user(sandbox_of(config), warm) as ids:
                _run_shard(run, shard, Workspace(run_dir, tmp_dir, kept, ids), config, watch.stop, warm, took)
        except Shutdown:
            log.warning("run %s: worker shutting down; handing shard %s back to the queue", run_id, index)
            shards.hand_back(run_id, index, "handed back when its worker shut down", attempt)
        except Exception as error:
            log.exception("run %s: shard %s failed inside Supertest", run_id, index)
            db.session.rollback()
            why = "a database error" if isinstance(error, DBAPIError) else error
            shards.finish(run_id, index, ERROR, attempt, error_message=f"Supertest could not run this shard: {why}")


def _run_shard(run: Run, shard: RunShard, space: Workspace, config: Any, stop: Any,
               warm: Warm | None, took: Stopwatch) -> None:
    """The stages of a run for the shard's tests: launch, collect, redact, judge, store, record.
    A shard keeps only its blob report: the run's HTML and JUnit reports are merged from them."""
    given, secrets = variables.for_run()
    mine = set(shard.files)
    run_tests = [run_test for run_test in run.run_tests if run_test.filename in mine]
    # The run's time limit is the whole run's: a shard gets what is left of it.
    started = as_utc(run.started_at) if run.started_at else utcnow()
    left = max(1.0, run.timeout_ms / 1000 - (utcnow() - started).total_seconds())
    blob = blob_name(shard.index)
    took.lap("ready")  # its runner taken (or its folders made), the sandbox checked, its watch started
    part = Part(run_tests, left, blob,
                _publisher(run.id, shard.index, redis_client(), config["QUEUE_NAMESPACE"], took.seen))
    outcome = launch(run, space, config, given, secrets, stop, part, warm)
    took.lap("playwright")  # writing its folder, the sandbox, Playwright's start, the tests, its exit
    if outcome.stopped:
        log.info("run %s: shard %s was stopped: cancelled, or handed to another worker", run.id, shard.index)
        return
    collected = collect_output(run, space, config, (RESULTS, BLOB))
    dropped = redact_kept(run, space.kept, secrets, config)  # before anything is stored or merged
    took.lap("collect and redact")
    report = results.read_report(space.kept / RESULTS, space.run_dir, mine)
    status, message = verdict(outcome, report, space.run_dir, run.timeout_ms)
    notes = [message, collected.summary(), dropped]
    message = redact.redact_text("\n\n".join(note for note in notes if note), secrets) or None
    blob_store = current_app.extensions["reports"].save(blob_prefix(run.id, shard.index), run.kind, space.kept / BLOB) \
        if (space.kept / BLOB / blob).is_file() else None
    took.lap("store")
    cases = tuple(report.tests) if report else ()
    finished = patiently(lambda: shards.finish(
        run.id, shard.index, status, shard.attempt, error_message=message, blob_store=blob_store, results=cases,
        test_statuses=test_statuses([run_test.filename for run_test in run_tests], report, status)))
    took.lap("record")
    log.info("run %s: shard %s, attempt %s ended %s (%s)", run.id, shard.index, shard.attempt,
             status if finished else f"{status}, too late to count", took)


def blob_name(index: int) -> str:
    return f"shard-{index}.zip"


def blob_prefix(run_id: str, index: int) -> str:
    """Where a shard's blob report is stored (its one file under report/, like any report's)."""
    return f"{run_id}/blob-{index}"


class Stopwatch:
    """Where a shard's time went, stage by stage, for its log line (bench/shards.py reads it). Of
    Playwright's lap, from its live events: its start (to the reporter's `begin`), its first test's
    set-up (its worker process, loading its spec), the time around its other tests outside their own
    durations, and its end (after the last test's event)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = self.last = clock()
        self.laps: list[tuple[str, float, float]] = []  # (name, its start, its seconds)
        self.begin: float | None = None
        self.tests: list[tuple[float, float]] = []  # each test event's time, and the test's own seconds

    def seen(self, name: str, data: dict[str, Any]) -> None:
        """A live event: the first `begin`, every `test` (a finished attempt, with its durationMs)."""
        if name == "begin" and self.begin is None:
            self.begin = self.clock()
        elif name == "test":
            self.tests.append((self.clock(), (data.get("durationMs") or 0) / 1000))

    def lap(self, name: str) -> None:
        now = self.clock()
        self.laps.append((name, self.last, now - self.last))
        self.last = now

    def __str__(self) -> str:
        said = ", ".join(f"{name} {seconds:.2f} s" for name, _, seconds in self.laps)
        playwright = next((lap for lap in self.laps if lap[0] == "playwright"), None)
        if playwright and self.begin is not None and self.tests:
            _, launched, seconds = playwright
            (first, first_own), (last, _) = self.tests[0], self.tests[-1]
            around = [(at - before) - own for (before, _), (at, own) in pairwise(self.tests)]
            said += (f" (of which its start {self.begin - launched:.2f} s, its first test's set-up "
                     f"{first - self.begin - first_own:.2f} s, around its other {len(around)} tests "
                     f"{sum(around):.2f} s, its end {launched + seconds - last:.2f} s)")
        return said


def _publisher(run_id: str, index: int, client: redis_lib.Redis, namespace: str,
               seen: Callable[[str, dict[str, Any]], None]) -> Any:
    """A shard's live progress as the run's: `done` and `total` count the cases of every shard
    (each shard's counts kept in Redis, a retried shard's replacing its earlier attempt's)."""
    totals, dones = f"{namespace}:shards:{run_id}:total", f"{namespace}:shards:{run_id}:done"

    def publish(name: str, data: dict[str, Any]) -> None:
        seen(name, data)
        data = {**data, "shard": index}
        try:
            if name in ("begin", "test"):
                pipe = client.pipeline()
                if name == "begin":
                    pipe.hset(totals, str(index), int(data.get("total") or 0))
                pipe.hset(dones, str(index), int(data.get("done") or 0))
                pipe.expire(totals, 86_400)
                pipe.expire(dones, 86_400)
                pipe.hvals(totals)
                pipe.hvals(dones)
                answers = pipe.execute()
                data["total"] = sum(int(value) for value in answers[-2])
                if name == "test":
                    data["done"] = sum(int(value) for value in answers[-1])
        except redis_lib.RedisError:  # the counts are for show; the shard's own go out instead
            log.warning("run %s: could not count shard %s's progress", run_id, index, exc_info=True)
        events.publish(run_id, name, data, client)
    return publish


def conclude(run_id: str) -> None:
    """Once every shard has ended: merge their reports into the run's one report and end the run
    (passed only if every shard passed). Only one worker gets to (shards.take_merge)."""
    run = shards.take_merge(run_id, worker_id())
    if run is None:
        return
    status, message = shards.verdict(run.run_shards)
    took = Stopwatch()
    # Beating while it merges: the reaper takes a merge over only from a lost worker (shards.unmerged).
    with RunWatch(db.engine, run_id, run.attempt, current_app.config["HEARTBEAT_SECONDS"]):
        store, note = merge(run)
    took.lap("merge")
    text = "\n\n".join(part for part in (message, note) if part) or None
    ended = patiently(lambda: runs.end_sharded(run_id, status, text, store))
    log.info("run %s: all %s shards ended; the run ends %s (%s)", run_id, len(run.run_shards),
             status if ended else f"{status}, too late to count", took)
    if ended is None and store and runs.get(run_id) is None:
        current_app.extensions["reports"].delete(run_id, run.kind, store)
    elif ended is not None and store:
        _drop_blobs(run)


def merge(run: Run) -> tuple[str | None, str | None]:
    """The run's one HTML and JUnit report, made by `playwright merge-reports` from the shards'
    blob reports (already collected and redacted by each shard). Returns where it was stored, and
    what to tell the user. When it cannot be made, each shard's own HTML report is made from its
    blob instead, so that what the shards found stays reachable from the run's page."""
    fetched = Path(tempfile.mkdtemp(prefix="st-blobs-"))
    try:
        blobs = _fetch_blobs(run, fetched)
        if not blobs:
            return None, "No shard left a report to merge."
        store, failure = _merge_blobs(run, list(blobs.values()), MERGED, run.id)
        if store:
            missing = [shard.index for shard in run.run_shards if shard.index not in blobs]
            return store, (f"{_named(missing)} left no report; the merged report lacks those tests."
                           if missing else None)
        return None, f"The shards' reports could not be merged.{_own_reports(run, blobs)}\n\n{failure}".strip()
    except Exception as error:  # the run must still end, with its results
        log.exception("run %s: merging the shards' reports failed", run.id)
        return None, f"The shards' reports could not be merged: {error}."
    finally:
        nofollow.remove_tree(fetched)


def _named(indexes: list[int]) -> str:
    """Shards by their number on the run's page: "Shard 2", "Shards 1, 3"."""
    return f"Shard{'s' if len(indexes) > 1 else ''} {', '.join(str(index + 1) for index in sorted(indexes))}"


def _fetch_blobs(run: Run, into: Path) -> dict[int, Path]:
    """Each shard's stored blob report, copied into `into`, by shard index (those that have one)."""
    reports = current_app.extensions["reports"]
    blobs = {}
    for shard in run.run_shards:
        if not shard.blob_store:
            continue
        name = blob_name(shard.index)
        try:
            stored = reports.open(shard.blob_store, run.kind, f"{blob_prefix(run.id, shard.index)}/report/{name}", None)
            if stored is not None:
                with open(into / name, "wb") as file:
                    for chunk in stored.body:
                        file.write(chunk)
                blobs[shard.index] = into / name
        except Exception:  # storage unreachable: merged without it, and the user told so
            log.exception("run %s: could not fetch shard %s's blob report", run.id, shard.index)
    return blobs


def _own_reports(run: Run, blobs: dict[int, Path]) -> str:
    """Each shard's own HTML report, made from its blob alone and linked from its line on the run's
    page; returns what to tell the user of them."""
    made: list[int] = []
    failed = [shard.index for shard in run.run_shards if shard.index not in blobs]
    for index, blob in blobs.items():
        store, _ = _merge_blobs(run, [blob], OWN, f"{run.id}/shard-{index}")
        try:
            kept = store is not None and shards.keep_report(run.id, index, store)
        except Exception:  # the run must still end
            log.exception("run %s: could not record shard %s's own report", run.id, index)
            db.session.rollback()
            kept = False
        (made if kept else failed).append(index)
    said = ""
    if made:
        said += (f" {_named(made)} has its own report instead, linked from its line below." if len(made) == 1 else
                 f" {_named(made)} have their own reports instead, linked from their lines below.")
    if failed:
        said += f" {_named(failed)} {'has' if len(failed) == 1 else 'have'} no report to show."
    return said


def _merge_blobs(run: Run, blobs: list[Path], reporters: list[Any], prefix: str) -> tuple[str | None, str | None]:
    """`playwright merge-reports` of these blob reports with these reporters, in the sandbox like a
    run (a blob is the test's output, so hostile), then collected, redacted and stored under
    `prefix`. Returns where it was stored, or None and why not."""
    config = current_app.config
    merge_dir = Path(config["RUNS_DIR"]) / f"{run.id}-merge"
    kept = merge_dir.with_name(f"{merge_dir.name}.kept")
    tmp_dir = Path(tempfile.mkdtemp(prefix="st-"))
    try:
        nofollow.remove_tree(merge_dir)
        (merge_dir / "blobs").mkdir(parents=True)
        (merge_dir / "tests").mkdir()
        for blob in blobs:
            shutil.copyfile(blob, merge_dir / "blobs" / blob.name)
        settings = {"testDir": str(merge_dir / "tests"), "reporter": reporters}
        (merge_dir / MERGE_CONFIG).write_text(f"module.exports = {json.dumps(settings)};\n")
        node, readable = node_and_readable(config)
        cli = Path(config["NODE_MODULES"]) / "@playwright" / "test" / "cli.js"
        command = [node, str(cli), "merge-reports", "--config", MERGE_CONFIG, "blobs"]
        box = sandbox_of(config)
        with box.users.hold() if box.users else nullcontext(None) as ids:
            launched = box.launch(command, merge_dir, tmp_dir, readable, ids)
            try:
                outcome = runner.run_playwright(
                    launched.argv, merge_dir, runner.child_env(merge_dir, tmp_dir, config["PLAYWRIGHT_BROWSERS_PATH"]),
                    MERGE_SECONDS, lambda event: None, None, launched.preexec)
            finally:
                if ids:
                    processes.kill_user(ids[0])
            limits = collecting.Limits(config["REPORT_MAX_MB"] * collecting.MB, config["REPORT_MAX_FILES"])
            collecting.collect(merge_dir, ["report"], kept, limits, ids)
        redact_kept(run, kept, variables.for_run()[1], config)
        if not (kept / "report" / "index.html").is_file():  # what it said, without node's stack (our paths)
            said = results.clean(outcome.log[-2000:], merge_dir).splitlines()
            return None, "\n".join(line for line in said if not STACK_LINE.match(line))
        return current_app.extensions["reports"].save(prefix, run.kind, kept / "report"), None
    except Exception as error:  # the run still ends, with its results
        log.exception("run %s: merge-reports into %s failed", run.id, prefix)
        return None, f"Supertest could not merge them: {error}."
    finally:
        for folder in (merge_dir, kept, tmp_dir):
            nofollow.remove_tree(folder)


def _drop_blobs(run: Run) -> None:
    """The shards' blob reports, once merged: their traces and videos are in the run's report now."""
    reports = current_app.extensions["reports"]
    for shard in run.run_shards:
        if shard.blob_store:
            try:
                reports.delete(blob_prefix(run.id, shard.index), run.kind, shard.blob_store)
                shards.drop_blob(run.id, shard.index)
            except Exception:  # kept, and deleted with the run
                log.warning("run %s: could not delete shard %s's merged blob report", run.id, shard.index,
                            exc_info=True)
                db.session.rollback()
