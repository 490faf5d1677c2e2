"""Unit tests around the real path: settings, storage keys, report parsing, SSE framing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from flask_migrate import Config as AlembicConfig

from supertest import config
from supertest.events import format_sse
from supertest.execution import results
from supertest.services.runs import run_test_filename
from supertest.services.validation import default_title
from supertest.storage import BadReportPath, report_key

RUN = "0b7c1c38-4a4e-4c2b-9a57-6a0e1d2f3c4d"


@pytest.mark.parametrize(("name", "value", "words"), [
    ("MAX_CONCURRENT_TESTS", "three", "whole number"),
    ("MAX_CONCURRENT_TESTS", "0", "at least 1"),
    ("TEST_EXECUTION_TIMEOUT_MS", "-5", "at least"),
    ("DATABASE_URL", "mysql://x", "URL starting with"),
    ("REDIS_URL", "localhost:6379", "URL starting with"),
    ("S3_ENDPOINT", "minio:9000", "URL starting with"),
    ("REPORTS_ORIGIN", "https://reports.example.com/app", "must be an origin"),
    ("SESSION_COOKIE_SECURE", "maybe", "true or false"),
    ("LOGIN_MAX_ATTEMPTS", "0", "at least 1"),
    ("SANDBOX", "docker", "must be one of"),
    ("SANDBOX_NETWORK", "none", "must be one of"),
    ("MAX_STREAMS", "lots", "whole number"),
    ("MAX_STREAMS", "3998", "leave room"),  # WEB_CONNECTIONS is 4000 by default
    ("WEB_CONNECTIONS", "5", "at least 10"),
])
def test_a_bad_setting_fails_naming_the_variable(name: str, value: str, words: str) -> None:
    with pytest.raises(config.ConfigError) as failure:
        config.from_env({name: value})
    assert name in str(failure.value) and words in str(failure.value)


def test_settings_have_the_documented_defaults() -> None:
    settings = config.from_env({})
    assert settings["S3_TEST_BUCKET_NAME"] == "playwright-test-artifacts"
    assert settings["S3_JOB_BUCKET_NAME"] == "playwright-job-artifacts"
    assert settings["MAX_CONCURRENT_TESTS"] == 3
    assert settings["MAX_STREAMS"] == 3000  # three quarters of WEB_CONNECTIONS (4000)
    assert settings["TEST_EXECUTION_TIMEOUT_MS"] == 900_000
    assert settings["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert settings["S3_ENDPOINT"] == ""


def test_heroku_postgres_urls_use_psycopg() -> None:
    url = config.from_env({"DATABASE_URL": "postgres://u:p@db:5432/app"})["SQLALCHEMY_DATABASE_URI"]
    assert url == "postgresql+psycopg://u:p@db:5432/app"


@pytest.mark.parametrize(("path", "key"), [
    ("report/index.html", f"{RUN}/report/index.html"),
    ("report/data/abc.webm", f"{RUN}/report/data/abc.webm"),
    ("report/trace/index.html", f"{RUN}/report/trace/index.html"),
])
def test_report_keys_stay_under_the_run(path: str, key: str) -> None:
    assert report_key(RUN, path) == key


@pytest.mark.parametrize("path", ["", "/etc/passwd", "report/../x", "report/../../x", "report//index.html",
                                  "report\\index.html", "report/x\x00", "other/report/index.html", "report/.",
                                  "report/.."])
def test_report_keys_refuse_escapes(path: str) -> None:
    with pytest.raises(BadReportPath):
        report_key(RUN, path)


def test_spec_filenames_are_safe_and_recognisable() -> None:
    assert run_test_filename("Log in / out: works?") == "Log-in-out-works.spec.ts"
    assert run_test_filename("../../etc") == "etc.spec.ts"
    assert run_test_filename("…") == "test.spec.ts"


def test_sse_frames_prefix_every_data_line() -> None:
    assert format_sse("status", "a\nb") == "event: status\ndata: a\ndata: b\n\n"
    assert format_sse("done", "") == "event: done\ndata: \n\n"


def test_report_parsing_maps_statuses_and_cleans_errors(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    error = {"message": "\x1b[31mError: boom\x1b[39m", "location": {"file": f"{run_dir}/tests/a.spec.ts",
                                                                      "line": 3, "column": 7}}
    report = {"errors": [], "tests": [
        {"title": "ok", "file": "a.spec.ts", "outcome": "expected", "results": [
            {"status": "passed", "duration": 10, "errors": []}]},
        {"title": "wobbly", "file": "a.spec.ts", "outcome": "flaky", "results": [
            {"status": "failed", "duration": 5, "errors": [error]}, {"status": "passed", "duration": 6}]},
        {"title": "group › bad", "file": "a.spec.ts", "outcome": "unexpected", "results": [
            {"status": "timedOut", "duration": 30, "errors": [error]}]},
        {"title": "never started", "file": "a.spec.ts", "outcome": "skipped", "results": []},
        {"title": "stopped at the limit", "file": "a.spec.ts", "outcome": "skipped", "results": [
            {"status": "interrupted", "duration": 3, "errors": []}]},
    ]}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(report))
    parsed = results.read_report(path, run_dir, {"a.spec.ts"})
    assert parsed is not None
    assert [(t.title, t.status, t.retries, t.duration_ms) for t in parsed.tests] == [
        ("ok", "passed", 0, 10), ("wobbly", "flaky", 1, 11), ("group › bad", "timedOut", 0, 30),
        ("never started", "skipped", 0, 0), ("stopped at the limit", "interrupted", 0, 3)]
    assert parsed.tests[0].error is None
    assert parsed.tests[2].error == "a.spec.ts:3:7\nError: boom"


def test_missing_or_broken_report_reads_as_none(tmp_path: Path) -> None:
    assert results.read_report(tmp_path / "absent.json", tmp_path, {"a.spec.ts"}) is None
    for name, body in [("broken", "{"), ("a list", "[]"), ("deep", "[" * 100_000 + "]" * 100_000),
                       ("huge", " " * (results.MAX_RESULTS_BYTES + 1) + "{}")]:
        (tmp_path / f"{name}.json").write_text(body)
        assert results.read_report(tmp_path / f"{name}.json", tmp_path, {"a.spec.ts"}) is None, name


def test_a_report_the_test_wrote_itself_is_bounded_and_clipped(tmp_path: Path) -> None:
    """The test can write the results file: what it says about itself is checked, clipped and
    counted before anything of it is stored, and it cannot speak for files that are not the run's."""
    forged = {"errors": ["not an object", {"message": 42, "location": "nowhere"}] * 50, "tests": [
        {"title": "x" * 100_000, "file": "a.spec.ts", "outcome": "expected" * 10,
         "results": [{"status": "s" * 40, "duration": float("inf"), "errors": [{"message": "m" * 100_000}]}] * 50},
        {"title": "another run's", "file": "../other.spec.ts", "outcome": "expected", "results": []},
        ["not", "a", "test"],
        *[{"title": "padding", "file": "a.spec.ts", "outcome": "expected", "results": []}] * (results.MAX_CASES + 10),
    ]}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(forged))
    parsed = results.read_report(path, tmp_path, {"a.spec.ts"})
    assert parsed is not None and len(parsed.tests) <= results.MAX_CASES
    first = parsed.tests[0]
    assert len(first.title) == results.MAX_TITLE_CHARS and first.file == "a.spec.ts"
    assert first.status == "skipped" and first.duration_ms == 0 and first.retries == results.MAX_ATTEMPTS - 1
    assert first.error is not None and len(first.error) <= results.MAX_ERROR_CHARS
    assert {test.file for test in parsed.tests} == {"a.spec.ts"}
    assert len(parsed.errors) == results.MAX_ERRORS and "unknown error" in parsed.errors[0]


def test_migrations_have_exactly_one_head() -> None:
    alembic = AlembicConfig(str(config.PROJECT_ROOT / "migrations" / "alembic.ini"))
    alembic.set_main_option("script_location", str(config.PROJECT_ROOT / "migrations"))
    assert len(ScriptDirectory.from_config(alembic).get_heads()) == 1


@pytest.mark.parametrize(("script", "title"), [
    ("import { test } from '@playwright/test';\ntest('logs in', async () => {});", "logs in"),
    ('test.only("checks out", async () => {}); test("later", async () => {});', "checks out"),
    ("test(`a ${'template'}`, async () => {})", "a ${'template'}"),
    ("console.log('no tests here')", "Playground test"),
])
def test_untitled_runs_are_named_after_their_first_test(script: str, title: str) -> None:
    assert default_title(script) == title


def test_sqlite_keeps_foreign_keys_on_after_migrating(tmp_path: Path) -> None:
    """Migrations turn them off for batch table copies; the pooled connection must not stay so."""
    from flask_migrate import upgrade

    from supertest.extensions import db
    from tests.conftest import make_app

    app = make_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'fk.db'}"})
    with app.app_context():
        upgrade()
        assert db.session.execute(db.text("PRAGMA foreign_keys")).scalar() == 1


@pytest.mark.parametrize(("env", "says"), [
    ({"SMTP_URL": "smtp://mailer:hunter2@"}, "smtp://mailer:***@"),
    ({"SMTP_URL": "http://mailer:hunter2@mail.example.com"}, "http://mailer:***@mail.example.com"),
    ({"DATABASE_URL": "mysql://app:hunter2@db/app"}, "mysql://app:***@db/app"),
])
def test_a_bad_url_setting_is_named_without_its_password(env: dict[str, str], says: str) -> None:
    """Startup errors go to the log: the URL is shown so the operator sees what is wrong, its password is not."""
    with pytest.raises(config.ConfigError) as refused:
        config.from_env({"SECRET_KEY": "x", **env})
    assert says in str(refused.value) and "hunter2" not in str(refused.value)


def test_a_warm_runner_is_ready_when_a_line_came_before_ready_in_the_same_read() -> None:
    """Both lines wait in the pipe when a run takes a runner started ahead: READY must not be left
    in a buffer that select() cannot see (the run would wait READY_SECONDS, then start cold)."""
    import subprocess
    import time
    from contextlib import ExitStack

    from supertest.execution import warm

    process = subprocess.Popen(["sh", "-c", "echo 'a warning'; echo '@@supertest-warm ready'; exec sleep 30"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.5)
        runner = warm.Warm(process, Path("/nonexistent"), Path("/nonexistent"), None, {}, (("", 0),), ExitStack())
        assert runner.ready(3)
    finally:
        process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout):
            assert pipe is not None
            pipe.close()


def test_a_warm_runner_discarded_lets_go_of_its_uid_even_when_its_end_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    from contextlib import ExitStack

    from supertest.execution import runner, warm

    def fails(process: subprocess.Popen, home: str) -> None:
        process.kill()
        process.wait()
        raise OSError("could not kill its strays")

    monkeypatch.setattr(runner, "end", fails)
    held = ExitStack()
    let_go: list[bool] = []
    held.callback(lambda: let_go.append(True))
    process = subprocess.Popen(["sleep", "30"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    (tmp_path / "run").mkdir()
    taken = warm.Warm(process, tmp_path / "run", tmp_path / "tmp", None, {"HOME": str(tmp_path / "run")},
                      (("", 0),), held)
    with pytest.raises(OSError):
        taken.discard()
    assert let_go == [True] and not (tmp_path / "run").exists()
    assert process.stdout is not None
    process.stdout.close()


@pytest.mark.parametrize("runs_wait", [True, False])
def test_a_slots_next_warm_runner_starts_when_its_run_takes_one_only_while_runs_wait(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runs_wait: bool) -> None:
    """With runs waiting in the queues, a run that takes a runner starts its slot's next at once;
    with none, only after the head start (60 s here), or when the run gives its runner back."""
    import subprocess
    import time
    from contextlib import ExitStack

    from supertest.execution import warm
    from tests.helpers import wait_until

    monkeypatch.setattr(warm, "HEADSTART_SECONDS", 60)
    started: list[warm.Warm] = []

    def starter(recipe: warm.Recipe) -> warm.Warm:
        home = tmp_path / f"warm-{len(started)}"
        home.mkdir()
        process = subprocess.Popen(["sleep", "60"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   start_new_session=True)
        started.append(warm.Warm(process, home, tmp_path / "tmp", None, {"HOME": str(home)}, recipe.key(), ExitStack()))
        return started[-1]

    recipe = warm.Recipe(None, "node", tmp_path / "cli.js", [], tmp_path, "")  # type: ignore[arg-type]
    pool = warm.WarmRunners(recipe, starter, backlog=lambda: runs_wait)
    try:
        pool.resize(1)
        wait_until(lambda: len(started) == 1, 10, "the slot's first runner started")
        taken = pool.take()
        assert taken is started[0]
        if runs_wait:
            wait_until(lambda: len(started) == 2, 10, "the slot's next runner started with the run")
        else:
            time.sleep(0.5)
            assert len(started) == 1, "a runner started within the head start with no run waiting"
            pool.give_back(taken)
            wait_until(lambda: len(started) == 2, 10, "the slot's next runner started after the run")
    finally:
        pool.close()
        for runner in started:
            if runner.process.stdout and not runner.process.stdout.closed:
                runner.discard()


def test_a_child_whose_worker_dies_before_it_asks_for_the_death_signal_does_not_run_on() -> None:
    """The death signal is asked for at the end of a child's set-up (sandbox._contain), which on a
    busy machine can take seconds (pasta's network, at nice 19 for a warm runner): a worker killed
    meanwhile sent no signal, and the sandbox ran on with nobody to end it. Given the worker's pid,
    die_with_worker sees the worker is gone and ends the child there."""
    import subprocess
    import sys
    import time

    from supertest.execution.processes import pids
    from tests.helpers import cmdline, kill

    marker = f"{time.time() % 1000:.6f}"  # sleep's argument: this test's child and nobody else's
    worker = subprocess.Popen([sys.executable, "-c", f"""
import os, subprocess, time
from supertest.execution.processes import die_with_worker
worker = os.getpid()
print("starting", flush=True)
subprocess.Popen(["sleep", "{marker}"], start_new_session=True,
                 preexec_fn=lambda: (time.sleep(1.5), die_with_worker(worker)))
"""], stdout=subprocess.PIPE, text=True)
    assert worker.stdout is not None and worker.stdout.readline() == "starting\n"
    time.sleep(0.5)
    worker.kill()  # while its child still sets up (Popen waits for the exec)
    worker.stdout.close()
    worker.wait()
    time.sleep(2)
    left = [pid for pid in pids() if cmdline(pid) == b"sleep\0" + marker.encode() + b"\0"]
    kill(left)
    assert left == [], "the child ran on after its worker was gone"


def test_a_sandbox_a_dead_worker_left_in_the_runs_folder_is_killed_and_nothing_else(tmp_path: Path) -> None:
    """Stand-ins for bwrap (named so, with its --chdir): one whose parent died, in the runs folder
    (killed); one whose parent died, elsewhere; one whose parent lives (ours), in the runs folder."""
    import subprocess
    import sys
    import time

    from supertest.execution.processes import kill_orphaned_sandboxes, parent_of, pids
    from tests.helpers import cmdline, kill, wait_until

    runs, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    marker = f"{time.time() % 1000:.6f}"

    def bwrap(folder: Path, orphaned: bool) -> str:
        command = f"exec -a bwrap {sys.executable} -c 'import time; time.sleep(60)' {marker} --chdir {folder}"
        if orphaned:  # started in the background by a shell that ends at once: its parent becomes init
            subprocess.run(["bash", "-c", command + " &"], check=True)
        else:
            kept.append(subprocess.Popen(["bash", "-c", command]))
        return str(folder)

    def found() -> dict[str, int | None]:
        return {args[-1].decode(): parent_of(pid) for pid in pids()
                if (args := cmdline(pid).split(b"\0")[:-1]) and args[0] == b"bwrap" and marker.encode() in args}

    kept: list[subprocess.Popen] = []
    try:
        stuck, other = bwrap(runs / "warm-1", True), bwrap(elsewhere / "warm-1", True)
        live = bwrap(runs / "warm-2", False)
        wait_until(lambda: len(found()) == 3 and found()[stuck] == 1 == found()[other], 10,
                   "the three stand-ins started")
        assert kill_orphaned_sandboxes(str(runs)) == 1
        wait_until(lambda: stuck not in found(), 10, "the stuck sandbox killed")
        assert set(found()) == {other, live}
    finally:
        kill([pid for pid in pids() if marker.encode() in cmdline(pid)])
        for process in kept:
            process.wait()
