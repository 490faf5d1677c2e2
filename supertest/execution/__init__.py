"""Executing a run: claim it, prepare its directory, run Playwright, keep the report, record the outcome."""
from __future__ import annotations

import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from flask import current_app

from supertest import events
from supertest.execution import results, runner, workspace
from supertest.models import ERROR, FAILED, PASSED, TIMEOUT, Run
from supertest.services import runs

log = logging.getLogger(__name__)
BROWSER_FAILURE = "browserType.launch"
GOOD_OUTCOMES = frozenset({"passed", "flaky", "skipped"})  # a test that passed on a retry still passed


def execute_run(run_id: str) -> None:
    """Run one queued run to its terminal status. Safe to call twice: only a pending run starts."""
    run = runs.claim(run_id)
    if run is None:
        log.info("run %s is not pending; nothing to do", run_id)
        return
    config = current_app.config
    run_dir = Path(config["RUNS_DIR"]) / run_id
    tmp_dir = Path(tempfile.mkdtemp(prefix="st-"))
    try:
        _execute(run, run_dir, tmp_dir, config)
    except Exception as error:  # our fault, not the test's: say so rather than leave it running
        log.exception("run %s failed inside Supertest", run_id)
        runs.finish(run_id, ERROR, error_message=f"Supertest could not run this test: {error}")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(tmp_dir, ignore_errors=True)


def spec_filename(title: str) -> str:
    """A file name Playwright will pick up, recognisable in the report, safe on any disk."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", title).strip("-")[:60] or "test"
    return f"{stem}.spec.ts"


def _execute(run: Run, run_dir: Path, tmp_dir: Path, config: Any) -> None:
    if run.test is None:
        runs.finish(run.id, ERROR, error_message="The test was deleted before it could run.")
        return
    specs = [workspace.Spec(spec_filename(run.title), run.test.script)]
    settings = workspace.playwright_config(workspace.find_chromium(config["CHROMIUM_PATH"]), workers=1, retries=0)
    workspace.prepare(run_dir, specs, config["NODE_MODULES"], settings)
    redis = events.redis_client()  # the reporter's lines are read on a thread without an app context
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("Node.js is not installed on this worker")
    outcome = runner.run_playwright(
        node, Path(config["NODE_MODULES"]) / "@playwright" / "test" / "cli.js", run_dir,
        runner.child_env(run_dir, tmp_dir, config["PLAYWRIGHT_BROWSERS_PATH"]),
        config["TEST_EXECUTION_TIMEOUT_MS"] / 1000,
        lambda event: _relay(run.id, event, redis),
    )
    report = results.read_report(run_dir / "results.json", run_dir)
    status, message = _verdict(outcome, report, run_dir, config["TEST_EXECUTION_TIMEOUT_MS"])
    store = None
    if (run_dir / "report" / "index.html").is_file():
        store = current_app.extensions["reports"].save(run.id, run.kind, run_dir / "report")
    runs.finish(run.id, status, error_message=message, report_store=store,
                results=tuple(report.tests) if report else ())


def _relay(run_id: str, event: dict[str, Any], redis: Any) -> None:
    """Pass the reporter's live events on to the run's viewers."""
    name = event.pop("event", None)
    if name in ("test", "begin"):
        events.publish(run_id, name, event, redis)


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
    if not report.errors and all(test.status in GOOD_OUTCOMES for test in report.tests):
        return PASSED, None
    return FAILED, "\n\n".join(report.errors) or None
