"""Executing one shard of a sharded run (services/shards.py), and merging the run's report after
its last shard: each shard is an attempt of a part of the run, through the same stages as a run."""
from __future__ import annotations

import json
import logging
import tempfile
from contextlib import nullcontext
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
    collect_output,
    launch,
    node_and_readable,
    patiently,
    processes,
    redact,
    redact_kept,
    results,
    runner,
    sandbox_of,
    sandbox_problem,
    test_statuses,
    verdict,
    worker_id,
)
from supertest.execution import collect as collecting
from supertest.execution.watch import RunWatch
from supertest.extensions import db
from supertest.models import Run, RunShard, as_utc, utcnow
from supertest.outcomes import ERROR
from supertest.services import runs, shards, variables

log = logging.getLogger(__name__)
MERGE_SECONDS = 600  # merge-reports reads every shard's blob report; a backstop, not a budget
MERGE_CONFIG = "merge.config.js"


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
    if shard is None:
        log.info("run %s: shard %s is not pending; nothing to do", run_id, index)
        return
    run = shard.run
    logs.set_run(run_id, run.job_id)
    attempt = shard.attempt
    log.info("run %s: shard %s, attempt %s started", run_id, index, attempt)
    config = current_app.config
    run_dir = Path(config["RUNS_DIR"]) / f"{run_id}-s{index}-{attempt}"
    kept = run_dir.with_name(f"{run_dir.name}.kept")
    tmp_dir = Path(tempfile.mkdtemp(prefix="st-"))
    try:
        problem = sandbox_problem()
        if problem:
            shards.finish(run_id, index, ERROR, attempt, error_message=problem)
            return
        box = sandbox_of(config)
        with box.users.hold() if box.users else nullcontext(None) as ids, \
                RunWatch(db.engine, run_id, attempt, config["HEARTBEAT_SECONDS"], shard=index) as watch:
            _run_shard(run, shard, Workspace(run_dir, tmp_dir, kept, ids), config, watch.stop)
    except Shutdown:
        log.warning("run %s: worker shutting down; handing shard %s back to the queue", run_id, index)
        shards.hand_back(run_id, index, "handed back when its worker shut down", attempt)
    except Exception as error:
        log.exception("run %s: shard %s failed inside Supertest", run_id, index)
        db.session.rollback()
        why = "a database error" if isinstance(error, DBAPIError) else error
        shards.finish(run_id, index, ERROR, attempt, error_message=f"Supertest could not run this shard: {why}")
    finally:
        for folder in (run_dir, kept, tmp_dir):
            nofollow.remove_tree(folder)


def _run_shard(run: Run, shard: RunShard, space: Workspace, config: Any, stop: Any) -> None:
    """The stages of a run for the shard's tests: launch, collect, redact, judge, store, record."""
    given, secrets = variables.for_run()
    mine = set(shard.files)
    run_tests = [run_test for run_test in run.run_tests if run_test.filename in mine]
    # The run's time limit is the whole run's: a shard gets what is left of it.
    started = as_utc(run.started_at) if run.started_at else utcnow()
    left = max(1.0, run.timeout_ms / 1000 - (utcnow() - started).total_seconds())
    blob = f"shard-{shard.index}.zip"
    part = Part(run_tests, left, blob, _publisher(run.id, shard.index, redis_client(), config["QUEUE_NAMESPACE"]))
    outcome = launch(run, space, config, given, secrets, stop, part)
    if outcome.stopped:
        log.info("run %s: shard %s was stopped: cancelled, or handed to another worker", run.id, shard.index)
        return
    collected = collect_output(run, space, config, (RESULTS, "report", BLOB))
    dropped = redact_kept(run, space.kept, secrets, config)  # before anything is stored or merged
    report = results.read_report(space.kept / RESULTS, space.run_dir, mine)
    status, message = verdict(outcome, report, space.run_dir, run.timeout_ms)
    notes = [message, collected.summary(), dropped]
    message = redact.redact_text("\n\n".join(note for note in notes if note), secrets) or None
    reports = current_app.extensions["reports"]
    store = reports.save(f"{run.id}/shard-{shard.index}", run.kind, space.kept / "report") \
        if (space.kept / "report" / "index.html").is_file() else None
    blob_store = reports.save(f"{run.id}/blob-{shard.index}", run.kind, space.kept / BLOB) \
        if (space.kept / BLOB / blob).is_file() else None
    cases = tuple(report.tests) if report else ()
    finished = patiently(lambda: shards.finish(
        run.id, shard.index, status, shard.attempt, error_message=message, report_store=store,
        blob_store=blob_store, results=cases,
        test_statuses=test_statuses([run_test.filename for run_test in run_tests], report, status)))
    log.info("run %s: shard %s, attempt %s ended %s", run.id, shard.index, shard.attempt,
             status if finished else f"{status}, too late to count")


def _publisher(run_id: str, index: int, client: redis_lib.Redis, namespace: str) -> Any:
    """A shard's live progress as the run's: `done` and `total` count the cases of every shard
    (each shard's counts kept in Redis, a retried shard's replacing its earlier attempt's)."""
    totals, dones = f"{namespace}:shards:{run_id}:total", f"{namespace}:shards:{run_id}:done"

    def publish(name: str, data: dict[str, Any]) -> None:
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
    # Beating while it merges: the reaper takes a merge over only from a lost worker (shards.unmerged).
    with RunWatch(db.engine, run_id, run.attempt, current_app.config["HEARTBEAT_SECONDS"]):
        store, note = merge(run)
    text = "\n\n".join(part for part in (message, note) if part) or None
    ended = patiently(lambda: runs.end_sharded(run_id, status, text, store))
    log.info("run %s: all %s shards ended; the run ends %s", run_id, len(run.run_shards),
             status if ended else f"{status}, too late to count")
    if ended is None and store and runs.get(run_id) is None:
        current_app.extensions["reports"].delete(run_id, run.kind, store)


def merge(run: Run) -> tuple[str | None, str | None]:
    """The run's one HTML and JUnit report, made by `playwright merge-reports` from the shards'
    blob reports (already collected and redacted by each shard), in the sandbox like a run, then
    collected and redacted again. Returns where it was stored, and what to tell the user if it failed."""
    config = current_app.config
    reports = current_app.extensions["reports"]
    merge_dir = Path(config["RUNS_DIR"]) / f"{run.id}-merge"
    kept = merge_dir.with_name(f"{merge_dir.name}.kept")
    tmp_dir = Path(tempfile.mkdtemp(prefix="st-"))
    own = [shard.index + 1 for shard in run.run_shards if shard.report_store]
    kept_note = (f" Each shard's own report is kept (shards {', '.join(map(str, own))})." if own else "")
    try:
        blobs = merge_dir / "blobs"
        nofollow.remove_tree(merge_dir)
        blobs.mkdir(parents=True)
        found = 0
        for shard in run.run_shards:
            if shard.blob_store:
                name = f"shard-{shard.index}.zip"
                stored = reports.open(shard.blob_store, run.kind, f"{run.id}/blob-{shard.index}/report/{name}", None)
                if stored is not None:
                    with open(blobs / name, "wb") as file:
                        for chunk in stored.body:
                            file.write(chunk)
                    found += 1
        if not found:
            return None, "No shard left a report to merge." + kept_note
        missing = len(run.run_shards) - found
        settings = {"testDir": str(merge_dir / "tests"), "reporter": [
            ["html", {"outputFolder": "report", "open": "never"}], ["junit", {"outputFile": "report/junit.xml"}]]}
        (merge_dir / "tests").mkdir()
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
        if not (kept / "report" / "index.html").is_file():
            tail = results.clean(outcome.log[-2000:], merge_dir)
            return None, f"The shards' reports could not be merged.{kept_note}\n\n{tail}".strip()
        store = reports.save(run.id, run.kind, kept / "report")
        return store, (f"{missing} shard(s) left no report; the merged report lacks their tests." if missing else None)
    except Exception as error:  # the run still ends, with its results; its shards' reports stay
        log.exception("run %s: merging the shards' reports failed", run.id)
        return None, f"The shards' reports could not be merged: {error}.{kept_note}"
    finally:
        for folder in (merge_dir, kept, tmp_dir):
            nofollow.remove_tree(folder)
