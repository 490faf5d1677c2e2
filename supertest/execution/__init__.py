"""Executing a run: claim it, prepare its directory, run Playwright, keep the report, record the outcome."""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dramatiq.middleware import Shutdown
from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, OperationalError

from supertest import events, logs, nofollow, queues
from supertest.connections import redis_client
from supertest.execution import collect, preflight, processes, redact, results, runner, sandbox, workspace
from supertest.execution import warm as warm_runners
from supertest.execution.progress import Progress
from supertest.execution.watch import RunWatch
from supertest.extensions import db
from supertest.models import Run, RunTest
from supertest.outcomes import ERROR, FAILED, PASSED, TIMEOUT, run_passed, test_fate
from supertest.services import runs, suites, variables

log = logging.getLogger(__name__)
BROWSER_FAILURE = "browserType.launch"
T = TypeVar("T")


RESULTS = "supertest-results.json"
BLOB = "blob-report"  # a shard's blob report's folder
RUN_MARK = "SUPERTEST_RUN"  # in the test's environment: <run id>-<attempt>


def worker_id() -> str:
    """This worker process, as runs (Run.worker) and the worker registry name it: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def execute_run(run_id: str) -> None:
    """Run one queued run to its terminal status. Safe to call twice: only a pending run starts."""
    with logs.run_context(run_id):  # every line logged while it runs names it (logs.py)
        _execute_run(run_id)


def _execute_run(run_id: str) -> None:
    run = runs.claim(run_id, worker=worker_id())
    if run is None:
        log.info("run %s is not pending; nothing to do", run_id)
        return
    logs.set_run(run_id, run.job_id)
    config = current_app.config
    attempt = run.attempt
    # The heartbeat beats from the claim on: also while the run waits for a warm runner still loading.
    with RunWatch(db.engine, run_id, attempt, config["HEARTBEAT_SECONDS"]) as watch, \
            attempt_space(f"{run_id}-{attempt}", config) as (run_dir, tmp_dir, kept, warm):
        log.info("run %s: attempt %s started (%s) %s", run_id, attempt, run.kind, "warm" if warm else "cold")
        try:
            problem = sandbox_problem()
            if problem:
                runs.finish(run_id, ERROR, error_message=problem, attempt=attempt)
                return
            with run_user(sandbox_of(config), warm) as ids:
                _execute(run, Workspace(run_dir, tmp_dir, kept, ids), config, watch.stop, warm)
        except Shutdown:  # the worker is stopping: the runner has killed the test; another worker starts it again
            log.warning("run %s: worker shutting down; handing it back to the queue", run_id)
            runs.hand_back(run_id, "handed back when its worker shut down", attempt)
        except Exception as error:  # our fault, not the test's: say so rather than leave it running
            log.exception("run %s failed inside Supertest", run_id)
            db.session.rollback()  # a failed write leaves the session unusable until then
            # A database error's text holds SQL and the values it was given: the log has it, not the user.
            why = "a database error" if isinstance(error, DBAPIError) else error
            runs.finish(run_id, ERROR, error_message=f"Supertest could not run this test: {why}", attempt=attempt)


@contextmanager
def attempt_space(name: str, config: Any) -> Iterator[tuple[Path, Path, Path, warm_runners.Warm | None]]:
    """Where an attempt (of a run, or of a shard) works: (run_dir, tmp_dir, kept, warm). A warm
    runner's directories when one is ready (HOME names it, SUPERTEST_RUN the run), else new ones,
    named `name` per attempt: a lost worker's leftovers never share a directory with the attempt after
    it. Afterwards the warm runner is thrown away (its pool starts a fresh one for the slot) and
    every folder removed."""
    pool = current_app.extensions.get("warm_runners")
    warm = _warm_runner(pool)
    if warm:
        run_dir, tmp_dir = warm.run_dir, warm.tmp_dir
    else:
        run_dir, tmp_dir = Path(config["RUNS_DIR"]) / name, Path(tempfile.mkdtemp(prefix="st-"))
    kept = run_dir.with_name(f"{run_dir.name}.kept")  # the worker's own copy of what the run left
    try:
        yield run_dir, tmp_dir, kept, warm
    finally:
        if warm and pool:
            pool.give_back(warm)
        for folder in (run_dir, kept, tmp_dir):
            nofollow.remove_tree(folder)


def run_user(box: sandbox.Sandbox, warm: warm_runners.Warm | None) -> AbstractContextManager[tuple[int, int] | None]:
    """The uid an attempt runs as: its warm runner's, else one held from the range now (None: the worker's)."""
    if warm:
        return nullcontext(warm.ids)
    return box.users.hold() if box.users else nullcontext(None)


def _warm_runner(pool: warm_runners.WarmRunners | None) -> warm_runners.Warm | None:
    """A warm runner ready for a run, or None: the run starts cold (none is kept, all are busy,
    or the one taken did not get ready in time)."""
    warm = pool.take() if pool else None
    if warm and pool and not warm.ready(warm_runners.READY_SECONDS):
        log.warning("a warm runner did not get ready; the run starts cold")
        pool.give_back(warm)
        return None
    return warm


@dataclass(frozen=True)
class Workspace:
    """Where one attempt of a run works: its directory and TMPDIR (the test's, hostile once it
    has run), the worker's own copy of what it left, and the user it runs as (None: the worker's)."""

    run_dir: Path
    tmp_dir: Path
    kept: Path
    ids: tuple[int, int] | None


def _execute(run: Run, space: Workspace, config: Any, stop: threading.Event,
             warm: warm_runners.Warm | None = None) -> None:
    """The stages of a run, in order: prepare, launch, collect, redact, judge, store, record."""
    given, secrets = variables.for_run()
    outcome = launch(run, space, config, given, secrets, stop, warm=warm)
    if outcome.stopped:
        log.info("run %s was stopped: cancelled, or handed to another worker", run.id)
        return
    collected = collect_output(run, space, config)
    dropped = redact_kept(run, space.kept, secrets, config)
    report = results.read_report(space.kept / RESULTS, space.run_dir, {test.filename for test in run.run_tests})
    status, message = verdict(outcome, report, space.run_dir, run.timeout_ms)
    notes = [message, collected.summary(), dropped]
    message = redact.redact_text("\n\n".join(note for note in notes if note), secrets) or None
    store = _store(run, space.kept / "report")
    cases = tuple(report.tests) if report else ()
    filenames = [run_test.filename for run_test in run.run_tests]
    finished = patiently(lambda: runs.finish(run.id, status, error_message=message, report_store=store,
                                              results=cases, test_statuses=test_statuses(filenames, report, status),
                                              attempt=run.attempt))
    log.info("run %s: attempt %s ended %s", run.id, run.attempt, status if finished else f"{status}, too late to count")
    if finished is None and store and runs.get(run.id) is None:
        current_app.extensions["reports"].delete(run.id, run.kind, store)  # deleted while it ran: keep nothing


@dataclass(frozen=True)
class Part:
    """What a shard runs of its run (sharded.py): its tests, the seconds left of the run's time
    limit, its blob report's file name, and how its live progress reaches the run's viewers."""

    run_tests: list[RunTest]
    seconds: float
    blob: str
    publish: Callable[[str, dict[str, Any]], None]


def launch(run: Run, space: Workspace, config: Any, given: dict[str, str], secrets: list[str],
            stop: threading.Event, part: Part | None = None, warm: warm_runners.Warm | None = None
            ) -> runner.Outcome:
    """Write the run's directory and run `playwright test` in the sandbox, publishing live progress:
    on `warm` (a runner started in space's directories, as space.ids) when given and still alive,
    else in a sandbox started now."""
    run_tests = part.run_tests if part else run.run_tests
    files = [workspace.TestFile(run_test.filename, run_test.script) for run_test in run_tests]
    # One browser for a single test; a job's tests share MAX_CONCURRENT_TESTS Playwright workers
    # (or fewer, if an ad-hoc run asked for fewer).
    workers = min(run.workers or config["MAX_CONCURRENT_TESTS"], config["MAX_CONCURRENT_TESTS"]) \
        if run.kind == "job" else 1
    settings = workspace.playwright_config(workspace.find_chromium(config["CHROMIUM_PATH"]), workers, run.retries)
    if part:  # a shard reports to our live reporter (the first) and its blob; the merge makes html and junit
        settings["reporter"] = [settings["reporter"][0], ["blob", {"outputDir": BLOB, "fileName": part.blob}]]
    # A warm runner's directory is its sandbox's mount: filled, never made anew.
    workspace.prepare(space.run_dir, files, config["NODE_MODULES"], settings, _suite(run, run_tests), fresh=not warm)
    redis = redis_client()  # the reporter's lines are read on a thread without an app context
    publish = part.publish if part else \
        (lambda name, data: events.publish(run.id, name, data, redis))
    progress = Progress({run_test.filename: (run_test.position, run_test.test_id) for run_test in run_tests},
                        lambda name, data: publish(name, redact.redact_json(data, secrets)))
    # SUPERTEST_RUN marks the run's processes (a warm runner's HOME was named before the run was known).
    env = {**given, **runner.child_env(space.run_dir, space.tmp_dir, config["PLAYWRIGHT_BROWSERS_PATH"]),
           RUN_MARK: f"{run.id}-{run.attempt}"}
    seconds = part.seconds if part else run.timeout_ms / 1000
    try:
        if warm:
            if space.ids:
                sandbox.chown_tree(space.run_dir, *space.ids)
            if not warm_runners.suits(given):
                log.info("run %s: its variables set how node or Playwright start; starting cold", run.id)
            elif warm.go(env):
                return runner.watch(warm.process, env, seconds, progress, stop)
            else:
                log.warning("run %s: its warm runner died before the run reached it; starting cold", run.id)
            runner.end(warm.process, env["HOME"])
            workspace.prepare(space.run_dir, files, config["NODE_MODULES"], settings, _suite(run, run_tests))
        node, readable = node_and_readable(config)
        command = runner.playwright_command(node, Path(config["NODE_MODULES"]) / "@playwright" / "test" / "cli.js")
        launched = sandbox_of(config).launch(command, space.run_dir, space.tmp_dir, readable, space.ids)
        return runner.run_playwright(launched.argv, space.run_dir, env, seconds, progress, stop, launched.preexec)
    finally:
        if space.ids:  # nothing of the test may run on while the worker reads what it left
            processes.kill_user(space.ids[0])


def _suite(run: Run, run_tests: list[RunTest]) -> workspace.Suite | None:
    """An ad-hoc run's support files and config (services/suites.py); None for any other run.
    `run_tests`: the specs Playwright runs (a shard's, or all the run's)."""
    if not run.files:
        return None
    config = next((file.path for file in run.files if file.path == suites.CONFIG_FILE), None)
    return workspace.Suite([workspace.TestFile(file.path, file.content) for file in run.files],
                           [run_test.filename for run_test in run_tests], config)


def collect_output(run: Run, space: Workspace, config: Any,
             names: tuple[str, ...] = (RESULTS, "report")) -> collect.Collected:
    """Copy the results and the report out of the run's directory, links and oddities left out."""
    limits = collect.Limits(config["REPORT_MAX_MB"] * collect.MB, config["REPORT_MAX_FILES"])
    collected = collect.collect(space.run_dir, list(names), space.kept, limits, space.ids)
    if collected.left_out:
        log.warning("run %s: left out of its report: %s", run.id,
                    "; ".join(f"{path} ({why})" for path, why in collected.left_out[:50]))
    return collected


def redact_kept(run: Run, kept: Path, secrets: list[str], config: Any) -> str | None:
    """Secrets out of everything the run keeps, before any of it is read, stored or uploaded.
    A file past the limits is dropped, never kept unredacted; returns what to tell the user of it."""
    limits = redact.Limits(config["REDACT_MAX_MB"] * collect.MB, config["REDACT_SECONDS"])
    dropped = redact.redact_folder(kept, secrets, limits).dropped
    if not dropped:
        return None
    named = [(path.relative_to(kept).as_posix(), why) for path, why in dropped]
    log.warning("run %s: dropped while removing secrets: %s", run.id, "; ".join(f"{p} ({why})" for p, why in named))
    return ("Dropped from this run's report while removing secrets: " +
            "; ".join(f"{path} ({why})" for path, why in named[:10]) +
            (f"; and {len(named) - 10} more" if len(named) > 10 else "") + ".")


def _store(run: Run, report: Path) -> str | None:
    """Put the report where it is served from; where it went ("s3", "local"), None without one."""
    if not (report / "index.html").is_file():
        return None
    return current_app.extensions["reports"].save(run.id, run.kind, report)


def node_and_readable(config: Any) -> tuple[str, list[Path]]:
    """Node, and what the sandbox shows read-only: node's own tree (when not under /usr),
    node_modules and the browsers path."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("Node.js is not installed on this worker")
    return node, [Path(node).resolve().parent.parent, Path(config["NODE_MODULES"]),
                  Path(config["PLAYWRIGHT_BROWSERS_PATH"])]


def sandbox_problem() -> str | None:
    """Why runs cannot start in this worker's sandbox (a path its user cannot reach), or None.
    Checked (preflight.py) at the worker's start or before its first run, until it passes once."""
    extensions = current_app.extensions
    if "sandbox_problem" not in extensions:
        config = current_app.config
        node, readable = node_and_readable(config)
        chromium = workspace.find_chromium(config["CHROMIUM_PATH"])
        targets = [(Path(node), "x"), (Path(config["NODE_MODULES"]) / "@playwright" / "test" / "cli.js", "r"),
                   (Path(config["PLAYWRIGHT_BROWSERS_PATH"]), "r"), *([(Path(chromium), "x")] if chromium else [])]
        env = runner.child_env(Path("/"), Path("/"), config["PLAYWRIGHT_BROWSERS_PATH"])
        problem = preflight.check(sandbox_of(config), node, targets, readable, Path(config["RUNS_DIR"]), env)
        if not problem:
            extensions["sandbox_problem"] = None  # found once: what works stays working
            return None
        if extensions.get("sandbox_problem_said") != problem:  # said once, not at every look
            log.error("%s", problem)
            extensions["sandbox_problem_said"] = problem
        return problem  # looked at again next time: it may be mended meanwhile
    return extensions["sandbox_problem"]


def warm_up(slots: int) -> None:
    """Keep a warm runner for each of this worker process's `slots` (WARM_RUNNERS, warm.py), once
    runs can start in its sandbox. Called again (housekeeping's sandbox check), it only resizes.
    Each call first ends the sandboxes in RUNS_DIR that a dead worker left stuck, cold runs' too
    (processes.kill_orphaned_sandboxes)."""
    config = current_app.config
    if killed := processes.kill_orphaned_sandboxes(str(config["RUNS_DIR"])):
        log.warning("killed %s sandbox(es) left in %s by a worker that died", killed, config["RUNS_DIR"])
    if not config["WARM_RUNNERS"] or sandbox_problem():
        return
    pool = current_app.extensions.get("warm_runners")
    if pool is None:
        node, readable = node_and_readable(config)
        recipe = warm_runners.Recipe(sandbox_of(config), node,
                                     Path(config["NODE_MODULES"]) / "@playwright" / "test" / "cli.js", readable,
                                     Path(config["RUNS_DIR"]), config["PLAYWRIGHT_BROWSERS_PATH"],
                                     workspace.launch_options(workspace.find_chromium(config["CHROMIUM_PATH"])))
        pool = current_app.extensions["warm_runners"] = warm_runners.WarmRunners(recipe, backlog=queue_backlog())
    pool.resize(slots)


def queue_backlog() -> Callable[[], bool]:
    """A check of whether runs wait in the run queues (false when Redis can't say)."""
    from supertest.tasks import RUN_QUEUES  # tasks.py imports this module for its actors

    client, namespace = redis_client(), current_app.config["QUEUE_NAMESPACE"]

    def runs_waiting() -> bool:
        try:
            return queues.any_waiting(client, namespace, RUN_QUEUES)
        except RedisError:
            return False
    return runs_waiting


def cool_down() -> None:
    """The worker is stopping: its idle warm runners are killed, and no more are started."""
    pool = current_app.extensions.pop("warm_runners", None)
    if pool is not None:
        pool.close()


def worker_facts() -> dict[str, Any]:
    """How this worker contains tests and what it runs them with, for its registration: found once
    per process (the probes start a sandbox; the versions start Chromium and read a file)."""
    extensions = current_app.extensions
    if "worker_facts" not in extensions:
        config = current_app.config
        box = sandbox_of(config)
        try:
            private = box.uses_private_network()
        except RuntimeError:  # SANDBOX_NETWORK=private where it cannot be: runs fail, and say why
            private = False
        chromium = workspace.find_chromium(config["CHROMIUM_PATH"])
        node = shutil.which("node")
        extensions["worker_facts"] = {
            "sandbox": {"mode": config["SANDBOX"], "bubblewrap": box.uses_bwrap(), "privateNetwork": private,
                        "ownUser": box.users is not None, "problem": sandbox_problem()},
            "versions": {"chromium": _version([chromium, "--version"]) if chromium else None,
                         "playwright": _package_version(Path(config["NODE_MODULES"]) / "@playwright" / "test"),
                         "node": _version([node, "--version"]) if node else None},
        }
    return extensions["worker_facts"]


def _version(command: list[str]) -> str | None:
    """The version a program prints (`Chromium 131.0.6778.85 built on Debian` → 131.0.6778.85)."""
    try:
        done = subprocess.run(command, capture_output=True, timeout=20, text=True)
    except (OSError, subprocess.SubprocessError):
        return None
    words = [word.lstrip("v") for word in done.stdout.split()]
    return next((word for word in words if word[:1].isdigit() and "." in word), None)


def _package_version(package: Path) -> str | None:
    try:
        return str(json.loads((package / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def sandbox_of(config: Any) -> sandbox.Sandbox:
    """One per worker process, so whether bwrap works here is found out once."""
    box = current_app.extensions.get("sandbox")
    if box is None:
        box = current_app.extensions["sandbox"] = sandbox.Sandbox.from_config(config)
    return box


def patiently(record: Callable[[], T], waits: tuple[float, ...] = (1, 2, 4, 8, 15)) -> T:
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


def test_statuses(filenames: list[str], report: results.Report | None, status: str) -> dict[str, str]:
    """Each test's outcome in the run, from its cases (outcomes.test_fate)."""
    errors = "\n".join(report.errors) if report else ""
    return {filename: test_fate([case.status for case in report.tests if case.file == filename] if report else [],
                                filename in errors, bool(errors), status)
            for filename in filenames}


def verdict(outcome: runner.Outcome, report: results.Report | None, run_dir: Path,
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
    if not report.errors and run_passed(test.status for test in report.tests):
        return PASSED, None
    return FAILED, "\n\n".join(report.errors) or None
