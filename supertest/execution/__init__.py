"""Executing a run: claim it, prepare its directory, run Playwright, keep the report, record the outcome."""
from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from dramatiq.middleware import Shutdown
from flask import current_app
from sqlalchemy.exc import DBAPIError, OperationalError

from supertest import events
from supertest.execution import redact, results, runner, sandbox, workspace
from supertest.execution.progress import GOOD, Progress, spec_outcome
from supertest.execution.watch import RunWatch
from supertest.extensions import db
from supertest.models import CANCELLED, ERROR, FAILED, PASSED, SKIPPED, TIMEOUT, Run
from supertest.services import runs, variables

log = logging.getLogger(__name__)
BROWSER_FAILURE = "browserType.launch"
T = TypeVar("T")


def execute_run(run_id: str) -> None:
    """Run one queued run to its terminal status. Safe to call twice: only a pending run starts."""
    run = runs.claim(run_id, worker=f"{socket.gethostname()}:{os.getpid()}")
    if run is None:
        log.info("run %s is not pending; nothing to do", run_id)
        return
    config = current_app.config
    attempt = run.attempt
    # Per attempt: a lost worker's leftovers never share a directory with the attempt after it.
    run_dir = Path(config["RUNS_DIR"]) / f"{run_id}-{attempt}"
    tmp_dir = Path(tempfile.mkdtemp(prefix="st-"))
    try:
        with RunWatch(db.engine, run_id, attempt, config["HEARTBEAT_SECONDS"]) as watch:
            _execute(run, run_dir, tmp_dir, config, watch.stop)
    except Shutdown:  # the worker is stopping: the runner has killed the test; another worker starts it again
        log.warning("run %s: worker shutting down; handing it back to the queue", run_id)
        runs.hand_back(run_id, "handed back when its worker shut down", attempt)
    except Exception as error:  # our fault, not the test's: say so rather than leave it running
        log.exception("run %s failed inside Supertest", run_id)
        runs.finish(run_id, ERROR, error_message=f"Supertest could not run this test: {error}", attempt=attempt)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _execute(run: Run, run_dir: Path, tmp_dir: Path, config: Any, stop: threading.Event) -> None:
    specs = [workspace.Spec(spec.filename, spec.script) for spec in run.specs]
    # One browser for a single test; a job's tests share MAX_CONCURRENT_TESTS Playwright workers.
    workers = config["MAX_CONCURRENT_TESTS"] if run.kind == "job" else 1
    settings = workspace.playwright_config(workspace.find_chromium(config["CHROMIUM_PATH"]), workers, run.retries)
    workspace.prepare(run_dir, specs, config["NODE_MODULES"], settings)
    given, secrets = variables.for_run()
    redis = events.redis_client()  # the reporter's lines are read on a thread without an app context
    progress = Progress({spec.filename: (spec.position, spec.test_id) for spec in run.specs},
                        lambda name, data: events.publish(run.id, name, redact.redact_json(data, secrets), redis))
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("Node.js is not installed on this worker")
    node_modules = Path(config["NODE_MODULES"])
    command = runner.playwright_command(node, node_modules / "@playwright" / "test" / "cli.js")
    # The sandbox sees node's own tree (when it is not under /usr), node_modules and the browsers path.
    readable = [Path(node).resolve().parent.parent, node_modules, Path(config["PLAYWRIGHT_BROWSERS_PATH"])]
    launch = _sandbox(config).launch(command, run_dir, tmp_dir, readable)
    outcome = runner.run_playwright(
        launch.argv, run_dir, {**given, **runner.child_env(run_dir, tmp_dir, config["PLAYWRIGHT_BROWSERS_PATH"])},
        run.timeout_ms / 1000, progress, stop, launch.preexec,
    )
    if outcome.stopped:
        log.info("run %s was stopped: cancelled, or handed to another worker", run.id)
        return
    # Secrets out of everything this run keeps, before any of it is read, stored or uploaded.
    redact.redact_file(run_dir / "supertest-results.json", secrets)
    redact.redact_folder(run_dir / "report", secrets)
    report = results.read_report(run_dir / "supertest-results.json", run_dir)
    status, message = _verdict(outcome, report, run_dir, run.timeout_ms)
    message = redact.redact_text(message, secrets) if message else message
    store = None
    reports = current_app.extensions["reports"]
    if (run_dir / "report" / "index.html").is_file():
        store = reports.save(run.id, run.kind, run_dir / "report")
    cases = tuple(report.tests) if report else ()
    finished = _patiently(lambda: runs.finish(run.id, status, error_message=message, report_store=store,
                                              results=cases, spec_statuses=_spec_statuses(specs, report, status),
                                              attempt=run.attempt))
    if finished is None and store and runs.get(run.id) is None:
        reports.delete(run.id, run.kind, store)  # the run was deleted while it ran: keep nothing of it


def _sandbox(config: Any) -> sandbox.Sandbox:
    """One per worker process, so whether bwrap works here is found out once."""
    box = current_app.extensions.get("sandbox")
    if box is None:
        box = current_app.extensions["sandbox"] = sandbox.Sandbox.from_config(config)
    return box


def _patiently(record: Callable[[], T], waits: tuple[float, ...] = (1, 2, 4, 8, 15)) -> T:
    """Record an outcome through a database hiccup: the results are only in this process, so
    waiting a little beats running the whole test again (which the reaper would do after)."""
    for wait in waits:
        try:
            return record()
        except DBAPIError as error:
            # A lost connection may surface as OperationalError or, once closed, InterfaceError.
            if not (isinstance(error, OperationalError) or error.connection_invalidated):
                raise
            db.session.rollback()
            log.warning("database unreachable while recording a run's outcome; trying again in %s s", wait)
            time.sleep(wait)
    return record()


def _spec_statuses(specs: list[workspace.Spec], report: results.Report | None, status: str) -> dict[str, str]:
    """Each test's outcome from its cases. A test without results did not compile (its file is
    named in an error), was not run because another file did not (Playwright then runs none), or
    shares the run's fate."""
    outcomes = {}
    errors = "\n".join(report.errors) if report else ""
    for spec in specs:
        statuses = [case.status for case in report.tests if case.file == spec.filename] if report else []
        if statuses:
            outcomes[spec.filename] = spec_outcome(statuses)
        elif spec.filename in errors:
            outcomes[spec.filename] = ERROR
        elif errors:
            outcomes[spec.filename] = SKIPPED
        else:
            outcomes[spec.filename] = status if status in (ERROR, TIMEOUT, CANCELLED) else ERROR
    return outcomes


def _verdict(outcome: runner.Outcome, report: results.Report | None, run_dir: Path,
             timeout_ms: int) -> tuple[str, str | None]:
    """The run's status and, where it is not a plain pass or fail, a message a user can act on."""
    if outcome.timed_out:
        return TIMEOUT, f"The run took longer than its limit of {timeout_ms / 1000:g} s and was stopped."
    if report is None:
        tail = results.clean(outcome.log[-4000:], run_dir)
        return ERROR, f"Playwright exited with code {outcome.exit_code} without a report.\n\n{tail}".strip()
    if report.errors and not report.tests:
        return ERROR, "\n\n".join(report.errors)
    if not report.tests:
        return ERROR, "No tests found: the script must call test(...) at least once."
    if all(test.error and BROWSER_FAILURE in test.error for test in report.tests):
        return ERROR, "The browser would not start on the worker.\n\n" + (report.tests[0].error or "")
    if not report.errors and all(test.status in GOOD for test in report.tests):
        return PASSED, None
    return FAILED, "\n\n".join(report.errors) or None
