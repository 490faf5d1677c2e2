"""Warm runners (execution/warm.py): a run on a runner started ahead of it sees nothing of the run
before it on the same worker (files, variables, browser profile, processes); a runner that died
while idle is replaced and no run fails for it; runners die with their worker. Each run goes the
real way: HTTP request, queue, worker, `playwright test` in Chromium inside the sandbox."""
from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from supertest.execution import processes, warm
from tests.conftest import ProcfileProcess, make_app, start_worker
from tests.helpers import (
    cmdline,
    idle_runners,
    kill,
    passing_script,
    run_processes,
    start_run,
    wait_for_run,
    wait_until,
    warm_processes,
)
from tests.s3server import S3Server

# Leaves all it can behind: files in HOME, TMPDIR and its browser's profile, a variable, a detached
# process (its own session: the runner's group kill does not reach it). Fails on purpose, telling
# where it left them.
LEAVING = """import { test } from '@playwright/test';
const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');

test('leaves things behind', async ({ page }) => {
  await page.setContent('<p>here</p>');
  fs.writeFileSync(path.join(process.env.HOME, 'left.txt'), 'run 1');
  fs.writeFileSync(path.join(process.env.TMPDIR, 'left.txt'), 'run 1');
  const profiles = fs.readdirSync(process.env.TMPDIR).filter(name => name.startsWith('playwright'));
  for (const profile of profiles) fs.writeFileSync(path.join(process.env.TMPDIR, profile, 'left.txt'), 'run 1');
  process.env.LEFT_BY_RUN_1 = 'yes';
  spawn('sleep', ['__MARK__'], { detached: true, stdio: 'ignore' }).unref();
  throw new Error('LEFT ' + JSON.stringify({ home: process.env.HOME, tmp: process.env.TMPDIR, profiles }));
});
"""

# Looks for what LEAVING left, from inside the next run's sandbox.
LOOKING = """import { test, expect } from '@playwright/test';
const fs = require('fs');
const path = require('path');

test('finds nothing left', async ({ page }) => {
  await page.setContent('<p>here</p>');
  const left = __LEFT__;
  const found = [];
  for (const where of [left.home, left.tmp, process.env.HOME, process.env.TMPDIR]) {
    if (fs.existsSync(path.join(where, 'left.txt'))) found.push(path.join(where, 'left.txt'));
  }
  for (const profile of fs.readdirSync(process.env.TMPDIR).filter(name => name.startsWith('playwright'))) {
    if (fs.existsSync(path.join(process.env.TMPDIR, profile, 'left.txt'))) found.push(profile);
  }
  if (process.env.LEFT_BY_RUN_1) found.push('LEFT_BY_RUN_1');
  for (const pid of fs.readdirSync('/proc').filter(name => /^\\d+$/.test(name))) {
    try { if (fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('__MARK__')) found.push(`process ${pid}`); }
    catch (error) {}
  }
  expect({ found, home: process.env.HOME === left.home, tmp: process.env.TMPDIR === left.tmp })
    .toEqual({ found: [], home: false, tmp: false });
});
"""

# Where its test runs: in the warm runner's spare test worker process (warm-worker.js, forked
# ahead), not a fresh fork, with the environment Playwright gives its worker processes.
IN_THE_SPARE = """import { test, expect } from '@playwright/test';
const fs = require('fs');

test('runs in the spare', async ({ page }) => {
  await page.setContent('<p>here</p>');
  await expect(page.locator('p')).toHaveText('here');
  expect({ spare: fs.readFileSync('/proc/self/cmdline', 'latin1').includes('warm-worker.js'),
           worker: process.env.TEST_WORKER_INDEX, color: process.env.FORCE_COLOR, run: !!process.env.SUPERTEST_RUN })
    .toEqual({ spare: true, worker: '0', color: '1', run: true });
});
"""


# Passes when it runs in the spare test worker process forked ahead (its command line is still
# warm-worker.js's) and its browser is the one that process launched ahead: Chromium started before
# this spec was loaded (a browser launched for the run starts after).
AHEAD = """import { test, expect } from '@playwright/test';
const fs = require('fs');
const os = require('os');
const loaded = os.uptime();
// When a process started, in seconds since boot (/proc/<pid>/stat field 22, in clock ticks of 1/100 s).
const startOf = (pid) => Number(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[19]) / 100;

test('runs on what was started ahead', async ({ page }) => {
  await page.setContent('<h1>ahead</h1>');
  await expect(page.getByRole('heading')).toHaveText('ahead');
  const children = fs.readdirSync('/proc').filter((pid) => /^\\d+$/.test(pid)).filter((pid) => {
    try { return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[1] === String(process.pid); }
    catch (error) { return false; }
  });
  const program = (pid) => fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\\0')[0];
  const browsers = children.filter((pid) => program(pid).includes('chrom'));
  expect({
    spare: fs.readFileSync('/proc/self/cmdline', 'latin1').includes('warm-worker.js'),
    browsers: browsers.length,
    launchedAhead: browsers.every((pid) => startOf(pid) < loaded),
  }).toEqual({ spare: true, browsers: 1, launchedAhead: true });
});
"""

# The time zone its browser has: TZ from the run's variables, else `zone` set by the spec itself.
TIME_ZONE = """import { test, expect } from '@playwright/test';
__SET__
test('has its time zone', async ({ page }) => {
  expect(await page.evaluate(() => [new Date(Date.UTC(2026, 0, 1)).getTimezoneOffset(),
                                    Intl.DateTimeFormat().resolvedOptions().timeZone]))
    .toEqual(__EXPECTED__);
});
"""

# Playwright's launch asks a Selenium Grid for the browser when SELENIUM_REMOTE_URL is set (one
# that refuses here): a spec that sets it gets that, not the browser its warm runner launched ahead.
SELENIUM = """import { test, expect, chromium } from '@playwright/test';
const fs = require('fs');
process.env.SELENIUM_REMOTE_URL = 'http://127.0.0.1:9/wd/hub';

test('asks the grid for its browser', async () => {
  expect(fs.readFileSync('/proc/self/cmdline', 'latin1')).toContain('warm-worker.js');  // the spare
  const got = await chromium.launch().then((browser) => browser.close().then(() => 'a browser of its own'),
                                          (error) => error.message);
  expect(got).toMatch(/selenium|127\\.0\\.0\\.1:9/i);
});
"""


def started(worker: ProcfileProcess, run_id: str) -> str:
    """How the worker started the run: "warm" or "cold" (its log line)."""
    found = re.search(rf"run {run_id}: attempt \d+ started \(\w+\) (warm|cold)", worker.log())
    assert found, f"no start of run {run_id} in the worker's log"
    return found.group(1)


@pytest.fixture(scope="module")
def one_slot(app: Flask, settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[dict[str, Any]]:
    """A worker of its own with one run slot (so one warm runner), its own runs directory and queues."""
    own = {**settings, "WORKER_THREADS": "1", "RUNS_DIR": str(tmp_path_factory.mktemp("warm-runs")),
           "QUEUE_NAMESPACE": f"supertest-warm-{uuid.uuid4().hex[:8]}"}
    process = start_worker(own, tmp_path_factory.mktemp("warm") / "worker.log")
    try:
        wait_until(lambda: idle_runners(own["RUNS_DIR"]), 60, "the worker's warm runner started")
        yield {"worker": process, "client": make_app(own).test_client(), "runs_dir": own["RUNS_DIR"]}
    finally:
        process.stop()


def test_a_run_on_a_warm_runner_sees_nothing_of_the_run_before_it(one_slot) -> None:
    client, worker = one_slot["client"], one_slot["worker"]
    mark = f"1{uuid.uuid4().int % 10**8}"  # sleep's argument: a number no other process has
    first = wait_for_run(client, start_run(client, LEAVING.replace("__MARK__", mark))["runId"])
    error = first["tests"][0]["error"] or ""
    left = json.loads(re.search(r"LEFT (\{.*?\})", error).group(1))  # type: ignore[union-attr]
    assert left["profiles"], "the first run's browser had a profile folder in its TMPDIR"
    # Out of the sandbox too: its folders go (just after its outcome is recorded), and its detached process.
    wait_until(lambda: not Path(left["home"]).exists() and not Path(left["tmp"]).exists(), 10,
               "the first run's folders were removed")
    assert not [pid for pid in processes.pids() if mark.encode() in cmdline(pid)]
    assert run_processes(first["id"]) == []

    second = wait_for_run(client, start_run(client, LOOKING.replace("__LEFT__", json.dumps(left))
                                            .replace("__MARK__", mark))["runId"])
    assert second["status"] == "passed", second["tests"][0]["error"] if second["tests"] else second
    assert (started(worker, first["id"]), started(worker, second["id"])) == ("warm", "warm")


def test_a_warm_runs_test_runs_in_the_worker_process_forked_ahead(one_slot) -> None:
    client, worker = one_slot["client"], one_slot["worker"]
    wait_until(lambda: idle_runners(one_slot["runs_dir"]), 60, "a warm runner waits")
    run = wait_for_run(client, start_run(client, IN_THE_SPARE)["runId"])
    assert run["status"] == "passed", run["tests"][0]["error"] if run["tests"] else run
    assert started(worker, run["id"]) == "warm"


def test_an_idle_runners_folder_is_not_its_users_until_its_run_comes(one_slot) -> None:
    """The worker (root) writes a run's files into an idle runner's folder: no process of the runner's
    uid may put a link there first, so the folder is the worker's until the run's files are in."""
    runs_dir = one_slot["runs_dir"]
    wait_until(lambda: idle_runners(runs_dir), 60, "a warm runner waits")
    for pid in idle_runners(runs_dir):
        home = next(var for var in processes.environ_of(pid) if var.startswith(b"HOME=")).split(b"=", 1)[1]
        owner = os.lstat(home).st_uid
        runner_uid = os.stat(f"/proc/{pid}").st_uid
        assert runner_uid != os.getuid() and owner == os.getuid(), (owner, runner_uid)
        with pytest.raises(subprocess.CalledProcessError):  # as the runner's uid: refused
            subprocess.run(["setpriv", f"--reuid={runner_uid}", f"--regid={runner_uid}", "--clear-groups",
                            "ln", "-s", "/etc/passwd", os.path.join(home, b"playwright.config.js")],
                           check=True, capture_output=True)


def test_a_warm_runner_killed_while_idle_is_replaced_and_no_run_fails(one_slot) -> None:
    client, worker, runs_dir = one_slot["client"], one_slot["worker"], one_slot["runs_dir"]
    wait_until(lambda: idle_runners(runs_dir), 60, "a warm runner waits")
    kill(warm_processes(runs_dir))
    # At once: the run finds the runner dead and starts cold.
    at_once = wait_for_run(client, start_run(client, passing_script("right after the kill"))["runId"])
    assert at_once["status"] == "passed", at_once
    # The worker starts another; killed while idle, that one too is replaced before a run comes.
    wait_until(lambda: idle_runners(runs_dir), 60, "a fresh warm runner waits")
    killed = idle_runners(runs_dir)
    kill(warm_processes(runs_dir))
    # Seen by the worker's own thread (its log line names no run), not only in /proc: a runner killed
    # as it starts may leave a moment a fork of it that looks like a new idle runner.
    wait_until(lambda: any("died or went stale while idle" in line and " run=" not in line
                           for line in worker.log().splitlines())
               and idle_runners(runs_dir) and not set(killed) & set(idle_runners(runs_dir)), 60,
               "the killed runner was replaced")
    later = wait_for_run(client, start_run(client, passing_script("on the replacement"))["runId"])
    assert later["status"] == "passed", later
    assert started(worker, later["id"]) == "warm"


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_warm_runners_end_with_their_worker(app: Flask, settings: dict[str, str],
                                            tmp_path_factory: pytest.TempPathFactory, how: str) -> None:
    """Stopped (SIGTERM), the worker kills its idle runners; killed (SIGKILL), they die with it."""
    runs_dir = str(tmp_path_factory.mktemp(f"warm-{how}"))
    own = {**settings, "RUNS_DIR": runs_dir, "QUEUE_NAMESPACE": f"supertest-warm-{uuid.uuid4().hex[:8]}"}
    process = start_worker(own, tmp_path_factory.mktemp(f"warm-{how}") / "worker.log")
    try:
        wait_until(lambda: len(idle_runners(runs_dir)) == 2, 60, "a warm runner per slot (2)")
        if how == "kill":
            os.killpg(process.process.pid, signal.SIGKILL)
    finally:
        process.stop()
    wait_until(lambda: warm_processes(runs_dir) == [], 15, f"warm runners gone ({how})")


def test_a_run_whose_variables_set_how_node_or_playwright_start_goes_cold() -> None:
    assert warm.suits({"BASE_URL": "https://example.test", "API_TOKEN": "x", "MY_DEBUG_LEVEL": "2", "PWD": "/",
                       "TZ": "Asia/Tokyo"})
    for name in ("NODE_OPTIONS", "node_extra_ca_certs", "DEBUG", "PWDEBUG", "PW_TEST_REPORTER",
                 "PLAYWRIGHT_SKIP_VALIDATE_HOST_REQUIREMENTS", "UV_THREADPOOL_SIZE", "OPENSSL_CONF",
                 "SSL_CERT_FILE", "LANG", "LC_ALL", "NO_COLOR", "FORCE_COLOR", "GLIBC_TUNABLES", "MALLOC_ARENA_MAX"):
        assert not warm.suits({"BASE_URL": "x", name: "1"}), name


def test_a_runner_is_stale_once_playwright_or_its_chromium_is_installed_anew(tmp_path: Path) -> None:
    """An idle runner's browser is the Chromium installed when it started: after an upgrade, a run
    would launch another."""
    cli, chromium = tmp_path / "test" / "cli.js", tmp_path / "chromium"
    cli.parent.mkdir()
    for path in (cli, cli.parent / "package.json", chromium):
        path.write_text("installed")
    recipe = warm.Recipe(None, "node", cli, [], tmp_path, "", {"executablePath": str(chromium)})  # type: ignore[arg-type]
    before = recipe.key()
    assert recipe.key() == before
    os.utime(chromium, ns=(0, 10**18))
    assert recipe.key() != before
    before = recipe.key()
    os.utime(cli.parent / "package.json", ns=(0, 10**18))
    assert recipe.key() != before


def browser_launched_ahead(runs_dir: str) -> bool:
    """An idle warm runner's spare test worker has launched its Chromium."""
    return bool(idle_runners(runs_dir)) and any(b"chrom" in cmdline(pid).split(b"\0")[0]
                                                for pid in warm_processes(runs_dir))


def test_a_warm_run_gets_the_worker_process_and_the_browser_started_ahead_and_a_full_trace(
        one_slot, s3: S3Server, settings: dict[str, str]) -> None:
    client, worker, runs_dir = one_slot["client"], one_slot["worker"], one_slot["runs_dir"]
    wait_until(lambda: browser_launched_ahead(runs_dir), 60, "a warm runner with its browser launched waits")
    run = wait_for_run(client, start_run(client, AHEAD)["runId"])
    assert run["status"] == "passed", run["tests"][0]["error"] if run["tests"] else run
    assert started(worker, run["id"]) == "warm"
    # The trace viewer gets the test's actions, with their DOM snapshots and screencast frames.
    keys = [obj["Key"] for obj in s3.client().list_objects_v2(
        Bucket=settings["S3_TEST_BUCKET_NAME"], Prefix=f"{run['id']}/report/data/")["Contents"]]
    [trace_key] = [key for key in keys if key.endswith(".zip")]
    trace = client.get(f"/api/test-results/{run['id']}/{trace_key.split('/', 1)[1]}")
    assert trace.status_code == 200
    with zipfile.ZipFile(io.BytesIO(trace.data)) as archive:
        events = [json.loads(line) for name in archive.namelist() if name.endswith(".trace")
                  for line in archive.read(name).decode().splitlines() if line]
    methods = {event.get("method") for event in events if event["type"] == "before"}
    kinds = {event["type"] for event in events}
    assert {"setContent", "expect"} <= methods and {"frame-snapshot", "screencast-frame"} <= kinds, (methods, kinds)


# Fails on purpose, telling the priority (its session's autogroup nice value: processes.set_session_nice)
# of every process in its sandbox, its browser's among them, by program.
PRIORITIES = """import { test } from '@playwright/test';
const fs = require('fs');

test('tells its priorities', async ({ page }) => {
  await page.setContent('<p>here</p>');
  const nice = {};
  for (const pid of fs.readdirSync('/proc').filter((pid) => /^\\d+$/.test(pid))) {
    try {
      const program = fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\\0')[0];
      const value = fs.readFileSync(`/proc/${pid}/autogroup`, 'utf8').split(' nice ')[1].trim();
      (nice[program] = nice[program] || []).push(value);
    } catch (error) {}
  }
  throw new Error('NICE ' + JSON.stringify(nice));
});
"""


def session_nice(pid: int) -> str | None:
    """The nice value of `pid`'s session (its autogroup's), None without autogroups."""
    try:
        return Path(f"/proc/{pid}/autogroup").read_text().split(" nice ")[1].strip()
    except (OSError, IndexError):
        return None


AUTOGROUPS = Path("/proc/self/autogroup").exists()  # else the priorities are left as they are


def test_a_warm_runner_loads_at_the_lowest_priority_and_its_run_runs_at_the_normal_one(one_slot) -> None:
    client, worker, runs_dir = one_slot["client"], one_slot["worker"], one_slot["runs_dir"]
    wait_until(lambda: browser_launched_ahead(runs_dir), 60, "a warm runner with its browser launched waits")

    def priorities() -> set[tuple[str, str | None]]:
        """(program, its session's nice value) of the warm runner's processes but Chromium's crash
        reporter (idle, in a session of its own)."""
        return {(cmdline(pid).split(b"\0")[0].decode(), session_nice(pid)) for pid in warm_processes(runs_dir)
                if b"crashpad" not in cmdline(pid)}
    loading = str(warm.LOADING_NICE) if AUTOGROUPS else None
    # Waited for: the runner of the run before may still be going away, at the normal priority.
    wait_until(lambda: {nice for _, nice in priorities()} == {loading}, 10, f"the idle runner at {loading}")
    programs = {program for program, _ in priorities()}
    assert any("chrom" in program for program in programs) and any("node" in program for program in programs)

    run = wait_for_run(client, start_run(client, PRIORITIES)["runId"])
    assert started(worker, run["id"]) == "warm"
    error = run["tests"][0]["error"] or ""
    nice = json.loads(re.search(r"NICE (\{.*?\})", error).group(1))  # type: ignore[union-attr]
    if AUTOGROUPS:
        assert any("chrom" in program for program in nice) and any("node" in program for program in nice), nice
        assert {value for values in nice.values() for value in values} == {"0"}, nice
    else:
        assert nice == {}


def test_a_runs_priority_is_set_for_the_sessions_its_processes_started(tmp_path: Path) -> None:
    """As Playwright starts its browser: in a session of its own, with the run's HOME."""
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    run = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    browser = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    other = subprocess.Popen(["sleep", "60"], env={**env, "HOME": f"{tmp_path}-other"}, start_new_session=True)
    try:  # (Popen returns once the command runs: its environment is the one given)
        processes.set_run_nice(run.pid, str(tmp_path), 7)
        expected = ("7", "7", "0") if AUTOGROUPS else (None, None, None)
        assert tuple(session_nice(p.pid) for p in (run, browser, other)) == expected
    finally:
        for process in (run, browser, other):
            process.kill()
            process.wait()


@pytest.mark.parametrize("how", ["variable", "spec"])
def test_a_run_that_sets_a_time_zone_gets_it_in_its_browser(one_slot, how: str) -> None:
    """Chromium reads TZ as it starts: a run that sets it, as a variable or in its spec, gets a
    browser launched with it rather than the one its warm runner launched ahead."""
    client, worker, runs_dir = one_slot["client"], one_slot["worker"], one_slot["runs_dir"]
    if how == "variable":
        script = TIME_ZONE.replace("__SET__", "").replace("__EXPECTED__", "[-630, 'Australia/Adelaide']")
        assert client.post("/api/variables", json={"name": "TZ", "value": "Australia/Adelaide"}).status_code == 201
    else:
        script = TIME_ZONE.replace("__SET__", "process.env.TZ = 'America/St_Johns';") \
            .replace("__EXPECTED__", "[210, 'America/St_Johns']")
    try:
        wait_until(lambda: browser_launched_ahead(runs_dir), 60, "a warm runner with its browser launched waits")
        run = wait_for_run(client, start_run(client, script)["runId"])
    finally:
        if how == "variable":
            client.delete("/api/variables/TZ")
    assert run["status"] == "passed", run["tests"][0]["error"] if run["tests"] else run
    assert started(worker, run["id"]) == "warm"


def test_a_spec_that_asks_for_a_selenium_grid_does_not_get_the_browser_launched_ahead(one_slot) -> None:
    client, worker, runs_dir = one_slot["client"], one_slot["worker"], one_slot["runs_dir"]
    wait_until(lambda: browser_launched_ahead(runs_dir), 60, "a warm runner with its browser launched waits")
    run = wait_for_run(client, start_run(client, SELENIUM)["runId"])
    assert run["status"] == "passed", run["tests"][0]["error"] if run["tests"] else run
    assert started(worker, run["id"]) == "warm"


# Forks warm-worker.js as warm.js does (no sandbox: what is tested is the spare's own choice), tells
# it to launch its browser ahead, and then, by `take`: hands it a run at once ("now": ENTRY, which
# prints how many browsers the spare has started, a second and a half later), leaves it idle
# ("never"), or leaves it behind ("orphan": this runner ends).
SPARE = """const { fork } = require('child_process');
const [worker, lib, options, entry, take] = process.argv.slice(2);
const spare = fork(worker, [lib, options], { stdio: 'inherit' });
console.log('SPARE ' + spare.pid);
spare.send({ launch: true });
if (take === 'now') spare.send({ env: process.env, entry });
if (take === 'orphan') process.exit(0); // as a runner killed with its worker
"""
ENTRY = """const fs = require('fs');
const children = () => fs.readdirSync('/proc').filter((pid) => /^\\d+$/.test(pid)).filter((pid) => {
  try { return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[1] === String(process.pid)
               && fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('chrom'); }
  catch (error) { return false; }
});
setTimeout(() => { console.log('BROWSERS ' + children().length); process.exit(0); }, 1500);
"""


@pytest.mark.parametrize("take", ["now", "never", "orphan"])
def test_a_spare_launches_its_browser_ahead_only_while_idle_and_ends_with_its_runner(app: Flask, tmp_path: Path,
                                                                                    take: str) -> None:
    """A run that takes the spare before its launch ahead starts gets no browser from it (it launches
    one itself if its tests ask for one); an idle spare launches its browser, once the CPU is free
    or within warm-worker.js's WAIT_MS; a spare whose runner is gone ends, and launches nothing
    (the test suite once found one, with its browser, alive long after its worker was killed)."""
    from supertest.execution import workspace

    harness, entry = tmp_path / "spare.js", tmp_path / "entry.js"
    harness.write_text(SPARE)
    entry.write_text(ENTRY)
    lib = Path(app.config["NODE_MODULES"]) / "playwright" / "lib"
    options = json.dumps(workspace.launch_options(workspace.find_chromium(app.config["CHROMIUM_PATH"])))
    process = subprocess.Popen(["node", str(harness), str(warm.WARM_WORKER_JS), str(lib.resolve()), options,
                                str(entry), take],
                               cwd=tmp_path, stdout=subprocess.PIPE, text=True, start_new_session=True)
    browsers: list[int] = []

    def launched() -> bool:
        browsers[:] = [pid for pid in processes.pids()
                       if processes.parent_of(pid) == spare and b"chrom" in cmdline(pid)]
        return bool(browsers)
    try:
        assert process.stdout is not None
        spare = int(process.stdout.readline().split()[1])
        if take == "now":
            assert process.stdout.readline().strip() == "BROWSERS 0"
        elif take == "never":
            wait_until(launched, 30, "the idle spare launched its browser")
        else:
            wait_until(lambda: processes.parent_of(spare) is None, 10,
                       "the spare ended with its runner")
            assert not launched(), "the spare left a browser behind"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        kill(browsers)  # in a session of their own
        process.wait()
        assert process.stdout is not None
        process.stdout.close()
