"""The code under test is contained: it sees none of the app's settings, cannot read the app's source,
instance folder or the worker's environment, cannot write outside its own two directories, cannot
reach the worker's loopback (but reaches other addresses, and its own loopback), runs as an
unprivileged user, and meets limits on file size, processes, open files and memory. Each script goes
the real way: HTTP request, queue, worker, `playwright test` inside the sandbox."""
from __future__ import annotations

import http.server
import json
import os
import resource
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask

from supertest import config
from supertest.execution import network, processes, sandbox
from tests.conftest import ProcfileProcess, make_app, start_worker
from tests.helpers import (
    ENV_PROBE,
    idle_runners,
    passing_script,
    run_processes,
    save_job,
    save_test,
    start_job,
    start_run,
    wait_for_run,
    wait_until,
)

# Root workers hand each run a uid of its own from SANDBOX_UIDS; any other worker keeps its own user.
FIRST_UID, LAST_UID = config.from_env({})["SANDBOX_UIDS"] if os.geteuid() == 0 else (os.geteuid(), os.geteuid())

# Reads every path it is given and fails naming those it could read; a file of its own and
# Playwright's package.json show reading works at all. `secrets` must appear in nothing it reads,
# including every /proc/<pid>/environ it can see.
PRYING = """import { test, expect } from '@playwright/test';
const fs = require('fs');

const targets = __TARGETS__;
const secrets = __SECRETS__;

function read(path) {
  try { return fs.statSync(path).isDirectory() ? fs.readdirSync(path).join('\\n') : fs.readFileSync(path, 'latin1'); }
  catch (error) { return null; }
}

test('cannot read the app', async () => {
  fs.writeFileSync('mine.txt', 'my own');
  expect(read('mine.txt')).toBe('my own');
  expect(read(require.resolve('@playwright/test/package.json'))).toContain('"name"');
  expect(process.getuid()).toBeGreaterThanOrEqual(__FIRST__);
  expect(process.getuid()).toBeLessThanOrEqual(__LAST__);
  // The runs directory holds this run alone: the other runs, side by side with it, are not there.
  expect(fs.readdirSync(require('path').dirname(process.cwd()))).toEqual([require('path').basename(process.cwd())]);
  const read_ = targets.filter(path => read(path) !== null);
  const environs = fs.readdirSync('/proc').filter(name => /^\\d+$/.test(name)).map(pid => `/proc/${pid}/environ`)
    .concat(['/proc/1/environ', `/proc/${process.ppid}/environ`, '/proc/__WORKER__/environ']);
  const told = [...targets, ...environs].filter(path => secrets.some(secret => (read(path) || '').includes(secret)));
  expect({ read: read_, told }).toEqual({ read: [], told: [] });
});
"""

# Writes to every path it is given and fails naming those it could write to; its own directory
# (HOME) and TMPDIR must work.
SCRIBBLING = """import { test, expect } from '@playwright/test';
const fs = require('fs');

test('cannot write outside its directory', async () => {
  fs.writeFileSync(`${process.env.HOME}/mine.txt`, 'mine');
  fs.writeFileSync(`${process.env.TMPDIR}/mine.txt`, 'mine');
  const wrote = __TARGETS__.filter(path => {
    try { fs.writeFileSync(path, 'scribbled'); return true; } catch (error) { return false; }
  });
  expect(wrote).toEqual([]);
});
"""

# The process limit counts threads too, of every process of the run's uid: a warm runner's node
# processes and the Chromium its spare launched ahead take a hundred or so of them already.
LIMITS = {"TEST_MAX_FILE_MB": "2", "TEST_MAX_PROCESSES": "256", "TEST_MAX_OPEN_FILES": "256",
          "TEST_MEMORY_MB": "512"}

# Each limit met for real (see LIMITS), with a check that the same thing under the limit works.
LIMITED = """import { test, expect } from '@playwright/test';
const fs = require('fs');
const { spawn } = require('child_process');

test('a file over the size limit is cut off', async () => {
  fs.writeFileSync('small.bin', Buffer.alloc(1024 * 1024));
  let code = 'wrote it';
  try { fs.writeFileSync('big.bin', Buffer.alloc(3 * 1024 * 1024)); } catch (error) { code = error.code; }
  expect(code).toBe('EFBIG');
  expect(fs.statSync('big.bin').size).toBe(2 * 1024 * 1024);
});

test('a spawning spree meets the process limit', async () => {
  const children = [], errors = [];
  for (let i = 0; i < 400; i++) {
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    child.on('error', error => errors.push(error.code));
    children.push(child);
  }
  await new Promise(resolve => setTimeout(resolve, 1000));
  const started = children.filter(child => child.pid && child.exitCode === null).length;
  children.forEach(child => { try { child.kill('SIGKILL'); } catch (error) {} });
  expect(started).toBeGreaterThan(5);
  expect(started).toBeLessThan(256);
  expect(errors).toContain('EAGAIN');
});

test('opening too many files fails', async () => {
  const fds = [];
  let code = 'opened them all';
  try { for (let i = 0; i < 1000; i++) fds.push(fs.openSync('small.bin', 'r')); } catch (error) { code = error.code; }
  fds.forEach(fd => fs.closeSync(fd));
  expect(code).toBe('EMFILE');
  expect(fds.length).toBeGreaterThan(100);
});

test('a process cannot take more memory than its limit', async () => {
  expect(Buffer.alloc(64 * 1024 * 1024, 1).length).toBe(64 * 1024 * 1024);
  expect(() => Buffer.alloc(1024 * 1024 * 1024, 1)).toThrow(/allocation failed/i);
});
"""


# Connects to every (host, port) of the worker's loopback it is given, all of which listen there, and
# fails naming those it reached; then browses to a server on the machine's own non-loopback address
# (the way out works) and to a server it starts on its own 127.0.0.1 (a loopback of its own).
NETWORKING = """import { test, expect } from '@playwright/test';
const net = require('net');
const http = require('http');
const os = require('os');

function connect(host, port) {
  return new Promise(resolve => {
    const socket = net.connect({ host, port });
    socket.setTimeout(3000);
    socket.on('connect', () => { socket.destroy(); resolve('connected'); });
    socket.on('timeout', () => { socket.destroy(); resolve('timed out'); });
    socket.on('error', error => resolve(error.code));
  });
}

test('cannot reach the worker loopback', async () => {
  const results = {};
  for (const [host, port] of __LOOPBACK__) results[`${host}:${port}`] = await connect(host, port);
  expect(Object.entries(results).filter(([, result]) => result === 'connected')).toEqual([]);
  expect(Object.values(os.networkInterfaces()).flat().map(address => address.address)).toContain('__ADDRESS__');
});

test('reaches the machine address and a server on its own loopback', async ({ page }) => {
  await page.goto('__OUTSIDE__');
  await expect(page.locator('body')).toHaveText('__MARK__');
  const server = http.createServer((request, response) => response.end('<h1>my own server</h1>'));
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await expect(page.getByRole('heading')).toHaveText('my own server');
  server.close();
});
"""


def script(template: str, **values: Any) -> str:
    for name, value in values.items():
        template = template.replace(f"__{name.upper()}__", value if isinstance(value, str) else json.dumps(value))
    return template


@pytest.fixture(scope="module")
def secret_file() -> Iterator[Path]:
    """A secret in the app's instance folder, where the SQLite database and local reports live."""
    config.INSTANCE_DIR.mkdir(exist_ok=True)
    path = config.INSTANCE_DIR / f"sandbox-secret-{uuid.uuid4().hex[:8]}.txt"
    path.write_text("instance-secret-" + uuid.uuid4().hex)
    path.chmod(0o644)  # world-readable: only the sandbox keeps it from the test
    try:
        yield path
    finally:
        path.unlink()


@pytest.fixture(scope="module")
def contained(app: Flask, worker: ProcfileProcess, settings: dict[str, str], secret_file: Path
              ) -> dict[str, dict[str, Any]]:
    """The probes, queued together so the worker runs them side by side."""
    root = config.PROJECT_ROOT
    marker = f"sandbox-marker-{uuid.uuid4().hex[:8]}"
    secrets = [settings["SECRET_KEY"], settings["AWS_SECRET_ACCESS_KEY"], settings["DATABASE_URL"],
               secret_file.read_text()]
    reads = [str(root / "supertest" / "config.py"), str(root / "supertest"), str(root / ".git" / "config"),
             str(root / "pyproject.toml"), str(config.INSTANCE_DIR), str(secret_file), settings["REPORTS_DIR"],
             "/root", "/home", "/etc/shadow"]
    writes = [str(root / marker), str(root / "node_modules" / marker), str(config.INSTANCE_DIR / marker),
              str(Path(settings["RUNS_DIR"]) / marker), str(Path(settings["REPORTS_DIR"]) / marker),
              f"/tmp/{marker}", f"/root/{marker}", f"/{marker}"]
    client = app.test_client()
    started = {
        "env": start_run(client, ENV_PROBE),
        "reads": start_run(client, script(PRYING, targets=reads, secrets=secrets, first=FIRST_UID, last=LAST_UID,
                                          worker=str(worker.process.pid))),
        "writes": start_run(client, script(SCRIBBLING, targets=writes)),
    }
    finished = {name: wait_for_run(client, run["runId"]) for name, run in started.items()}
    return {**finished, "written": {"paths": writes}}


def test_the_test_process_sees_none_of_the_app_settings(contained) -> None:
    assert contained["env"]["status"] == "passed", contained["env"]


def test_the_test_cannot_read_the_app_source_instance_folder_or_worker_environment(contained) -> None:
    run = contained["reads"]
    assert run["status"] == "passed", run["tests"][0]["error"] if run["tests"] else run


def test_the_test_cannot_write_outside_its_directory(contained) -> None:
    run = contained["writes"]
    assert run["status"] == "passed", run["tests"][0]["error"] if run["tests"] else run
    assert [path for path in contained["written"]["paths"] if os.path.lexists(path)] == []


def machine_address() -> str:
    """This machine's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.123", 9))
        return probe.getsockname()[0]


def serve(host: str, body: str, family: socket.AddressFamily = socket.AF_INET) -> http.server.HTTPServer:
    """A server answering `body` to everything, on a free port of `host`, until shutdown()."""
    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server_class = type("Server", (http.server.ThreadingHTTPServer,), {"address_family": family})
    server = server_class((host, 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=3).close()
        return True
    except OSError:
        return False


def live_pastas() -> list[int]:
    """pasta's processes on this machine (it runs as passt or passt.avx2), zombies left out."""
    found = []
    for pid in processes.pids():
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                head, tail = stat.read().rsplit(b")", 1)
        except OSError:
            continue
        if head.split(b"(", 1)[1].startswith(b"passt") and tail.split()[0] != b"Z":
            found.append(pid)
    return found


@pytest.fixture(scope="module")
def networked(app: Flask, worker: ProcfileProcess, settings: dict[str, str]) -> Iterator[dict[str, Any]]:
    """NETWORKING, run by the shared worker (SANDBOX_NETWORK=auto), against the services the tests
    themselves use on this machine's loopback, and servers of our own."""
    mark = f"outside-{uuid.uuid4().hex[:8]}"
    outside = serve(machine_address(), mark)
    own = [serve("127.0.0.1", "the worker's loopback"), serve("::1", "the worker's loopback", socket.AF_INET6)]
    services = [urlsplit(settings["REDIS_URL"]), urlsplit(settings["S3_ENDPOINT"])]
    if settings["DATABASE_URL"].startswith("postgresql"):
        services.append(urlsplit(settings["DATABASE_URL"]))
    loopback = [[url.hostname, url.port or {"redis": 6379, "postgresql": 5432}[url.scheme.split("+")[0]]]
                for url in services]
    loopback += [["127.0.0.1", 5432], ["127.0.0.1", 6379]]  # PostgreSQL and Redis, trusting local connections
    loopback += [[server.server_address[0], server.server_address[1]] for server in own]
    try:
        client = app.test_client()
        run_id = start_run(client, script(NETWORKING, loopback=loopback, address=network.NET_ADDRESS,
                                          outside=f"http://{outside.server_address[0]}:{outside.server_address[1]}/",
                                          mark=mark))["runId"]
        # pasta is one of the run's processes while it runs (the run can take a while to start)...
        wait_until(lambda: set(run_processes(run_id)) & set(live_pastas()), 90, "pasta started for the run")
        pastas = sorted(set(run_processes(run_id)) & set(live_pastas()))
        run = wait_for_run(client, run_id)
        # ... and gone with it.
        wait_until(lambda: not set(pastas) & set(live_pastas()), 10, "pasta ended with the run")
        yield {"run": run, "loopback": loopback, "pastas": pastas, "left": live_pastas()}
    finally:
        for server in [outside, *own]:
            server.shutdown()
            server.server_close()


def test_the_test_cannot_reach_the_worker_loopback_but_reaches_the_machine_and_its_own_loopback(networked
                                                                                              ) -> None:
    # Each of those listens on the worker's loopback: the test would reach it without its own network.
    assert [address for address in networked["loopback"] if not reachable(*address)] == []
    run = networked["run"]
    statuses = {test["title"]: (test["status"], test["error"]) for test in run["tests"]}
    assert all(status == "passed" for status, _ in statuses.values()) and len(statuses) == 2, statuses


def test_pasta_ends_with_the_run(networked) -> None:
    # The run's own pastas: other runs on this machine (another suite, say) may have theirs.
    assert networked["pastas"] and not set(networked["pastas"]) & set(networked["left"])


@pytest.fixture(scope="module")
def limited(app: Flask, settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[dict[str, Any]]:
    """A worker of its own with low limits, on its own queue namespace; the run goes on the warm
    runner it started under those limits (execution/warm.py), which it waits for."""
    own = {**settings, **LIMITS, "QUEUE_NAMESPACE": f"supertest-sandbox-{uuid.uuid4().hex[:8]}",
           "RUNS_DIR": str(tmp_path_factory.mktemp("limited-runs"))}
    process = start_worker(own, tmp_path_factory.mktemp("limited") / "worker.log")
    try:
        wait_until(lambda: idle_runners(own["RUNS_DIR"]), 60, "the worker's warm runners started")
        client = make_app(own).test_client()
        run = wait_for_run(client, start_run(client, LIMITED)["runId"])
        yield {**run, "warm": f"run {run['id']}: attempt 1 started (test) warm" in process.log()}
    finally:
        process.stop()


def test_limits_on_file_size_processes_open_files_and_memory_hold(limited) -> None:
    statuses = {test["title"]: (test["status"], test["error"]) for test in limited["tests"]}
    assert all(status == "passed" for status, _ in statuses.values()) and len(statuses) == 4, statuses
    assert limited["warm"], "the run went on a warm runner"


@pytest.fixture(scope="module")
def shared_runtime() -> Iterator[dict[str, str]]:
    """What a run needs (the runs directory, node_modules, the browsers path) where every user can reach
    it. Without bubblewrap the test's user walks the real paths: a checkout under a folder others
    cannot enter (CI's mktemp -d, a home of mode 700) would hide them (see the next test)."""
    top = Path(tempfile.mkdtemp(prefix="st-shared-"))
    top.chmod(0o755)
    (top / "runs").mkdir(mode=0o711)
    modules = top / "node_modules"
    for package in ("@playwright", "playwright", "playwright-core"):
        shutil.copytree(config.PROJECT_ROOT / "node_modules" / package, modules / package, symlinks=True)
    shutil.copytree(config.PROJECT_ROOT / ".playwright-browsers", top / "browsers", symlinks=True)
    try:
        yield {"RUNS_DIR": str(top / "runs"), "NODE_MODULES": str(modules),
               "PLAYWRIGHT_BROWSERS_PATH": str(top / "browsers")}
    finally:
        shutil.rmtree(top)


@pytest.fixture(scope="module")
def unwrapped(app: Flask, settings: dict[str, str], shared_runtime: dict[str, str],
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A worker with SANDBOX=none, as on a machine without bubblewrap."""
    own = {**settings, **shared_runtime, "SANDBOX": "none",
           "QUEUE_NAMESPACE": f"supertest-sandbox-{uuid.uuid4().hex[:8]}"}
    process = start_worker(own, tmp_path_factory.mktemp("unwrapped") / "worker.log")
    marker = str(tmp_path_factory.getbasetemp() / f"sandbox-marker-{uuid.uuid4().hex[:8]}")
    try:
        client = make_app(own).test_client()
        probe = script(SCRIBBLING, targets=[str(config.PROJECT_ROOT / "sandbox-marker"), marker, "/root/marker"])
        yield {"env": wait_for_run(client, start_run(client, ENV_PROBE)["runId"]),
               "writes": wait_for_run(client, start_run(client, probe)["runId"]),
               "after": wait_for_run(client, start_run(client, passing_script("runs without bwrap"))["runId"])}
    finally:
        process.stop()


def test_without_bubblewrap_the_test_still_runs_unprivileged_with_a_built_environment(unwrapped) -> None:
    for name in ("env", "writes", "after"):
        run = unwrapped[name]
        assert run["status"] == "passed", (name, run["tests"][0]["error"] if run["tests"] else run)


def test_a_worker_whose_test_user_cannot_reach_node_modules_says_which_folder_and_what_to_do(
        app: Flask, settings: dict[str, str], shared_runtime: dict[str, str],
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """node_modules behind a folder of mode 700, as in a checkout under a home directory: each run
    ends `error` naming that folder and the fix, health says so too, instead of MODULE_NOT_FOUND."""
    assert os.geteuid() == 0, "a worker that is not root runs tests as itself, which reaches its own files"
    home = Path(tempfile.mkdtemp(prefix="st-home-"))  # mode 700, as mkdtemp makes it
    (home / "node_modules").symlink_to(shared_runtime["NODE_MODULES"])
    own = {**settings, **shared_runtime, "SANDBOX": "none", "NODE_MODULES": str(home / "node_modules"),
           "QUEUE_NAMESPACE": f"supertest-sandbox-{uuid.uuid4().hex[:8]}"}
    process = start_worker(own, tmp_path_factory.mktemp("closed") / "worker.log")
    try:
        client = make_app(own).test_client()
        run = wait_for_run(client, start_run(client, passing_script("never starts"))["runId"])
        assert run["status"] == "error", run
        assert f"cannot enter {home} (mode drwx------)" in run["errorMessage"], run["errorMessage"]
        assert f"chmod o+x {home}" in run["errorMessage"]
        assert "MODULE_NOT_FOUND" not in run["errorMessage"]
        health = client.get("/api/health")
        assert health.status_code == 503 and f"cannot enter {home}" in health.get_json()["sandbox"], health.get_json()
        assert f"cannot enter {home}" in process.log()
    finally:
        process.stop()
        shutil.rmtree(home)


# The command line and the limits, without running anything.

def test_bwrap_shows_only_the_system_what_the_run_needs_and_its_own_directories(tmp_path: Path) -> None:
    run_dir, tmp_dir = tmp_path / "runs" / "r-1", Path("/tmp/st-abc")
    command = sandbox.bwrap_command(["node", "cli.js"], run_dir, tmp_dir,
                                    [Path("/usr"), Path("/srv/app/node_modules"), Path("/srv/app/.browsers")],
                                    (65534, 65534))
    text = " ".join(command)
    assert command[:4] == ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc"]
    assert "--unshare-user" not in command  # as root: the user is changed outside any user namespace
    assert "--unshare-net" not in command  # the network namespace is made before bwrap (with pasta)
    assert "--ro-bind /usr /usr" in text and "--ro-bind /etc /etc" in text
    assert "--ro-bind-try /srv/app/node_modules /srv/app/node_modules" in text
    assert "--ro-bind-try /srv/app/.browsers /srv/app/.browsers" in text
    assert text.count("--ro-bind-try /usr") == 0  # already there
    assert f"--bind {tmp_dir} {tmp_dir}" in text and f"--bind {run_dir} {run_dir}" in text
    assert "--tmpfs /tmp" in text and text.index("--tmpfs /tmp") < text.index(f"--bind {tmp_dir}")
    assert f"--perms 0755 --dir {run_dir.parent}" in text and "--perms 0755 --dir /srv/app" in text
    binds = [command[i + 1] for i, arg in enumerate(command) if arg in ("--bind", "--ro-bind", "--ro-bind-try")]
    assert not any(path in ("/", "/root", "/home", "/proc", str(config.PROJECT_ROOT)) for path in binds)
    separator = command.index("--")
    assert command[separator + 1:] == ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                       "--inh-caps=-all", "--bounding-set=-all", "--", "node", "cli.js"]

    unprivileged = sandbox.bwrap_command(["node"], run_dir, tmp_dir, [], None)
    assert "--unshare-user" in unprivileged and "setpriv" not in unprivileged
    assert unprivileged[-2:] == ["--", "node"]


def test_limits_are_the_configured_ones() -> None:
    settings = config.from_env({"TEST_MEMORY_MB": "1000", "TEST_MAX_PROCESSES": "300",
                                "TEST_MAX_OPEN_FILES": "500", "TEST_MAX_FILE_MB": "7"})
    box = sandbox.Sandbox.from_config(settings)
    assert box.limits.rlimits() == [(resource.RLIMIT_DATA, 1000 * 1024 * 1024), (resource.RLIMIT_NPROC, 300),
                                    (resource.RLIMIT_NOFILE, 500), (resource.RLIMIT_FSIZE, 7 * 1024 * 1024)]
    defaults = config.from_env({})
    assert (defaults["SANDBOX"], defaults["SANDBOX_UIDS"], defaults["SANDBOX_NETWORK"]) == (
        "auto", (900_000_000, 900_000_999), "auto")
    for bad in ({"SANDBOX": "docker"}, {"SANDBOX_UIDS": "0-100"}, {"SANDBOX_UIDS": "5000"},
                {"SANDBOX_UIDS": "6000-5000"}, {"SANDBOX_USER": "nobody"}):
        with pytest.raises(config.ConfigError, match="SANDBOX"):
            config.from_env(bad)


def test_bwrap_works_on_this_machine(tmp_path: Path) -> None:
    """CI and the dev machine install bubblewrap (scripts/install-system-deps): a worker there must
    use it, not fall back quietly."""
    assert sandbox.Sandbox.from_config(config.from_env({})).uses_bwrap()


def test_the_private_network_works_on_this_machine(tmp_path: Path) -> None:
    """install-system-deps installs pasta: a root worker here must give the test its own network,
    with /etc/resolv.conf pointing at pasta's DNS address; with SANDBOX_NETWORK=host, as before."""
    box = sandbox.Sandbox.from_config(config.from_env({}))
    assert box.uses_private_network() == (os.geteuid() == 0)
    (tmp_path / "run").mkdir()
    ids = box.probe_ids()
    launch = box.launch(["node"], tmp_path / "run", tmp_path, [], ids)
    assert launch.private_network == (os.geteuid() == 0)
    if launch.private_network:
        assert f"--ro-bind {tmp_path / 'resolv.conf'} /etc/resolv.conf" in " ".join(launch.argv)
        assert (tmp_path / "resolv.conf").read_text().startswith(f"nameserver {network.NET_DNS}\n")
    host = sandbox.Sandbox.from_config(config.from_env({"SANDBOX_NETWORK": "host"}))
    assert not host.launch(["node"], tmp_path / "run", tmp_path, [], ids).private_network
    insisting = sandbox.Sandbox.from_config(config.from_env({"SANDBOX": "none", "SANDBOX_NETWORK": "private"}))
    with pytest.raises(RuntimeError, match="SANDBOX_NETWORK=private needs bubblewrap"):
        insisting.launch(["node"], tmp_path / "run", tmp_path, [], ids)


def test_the_sandbox_resolv_conf_sends_queries_through_pasta_and_keeps_reachable_nameservers() -> None:
    host = "# made by hand\nnameserver 127.0.0.53\nnameserver 10.1.2.3\nnameserver ::1\nsearch corp.example\n" \
           "options edns0 trust-ad\n"
    assert network.sandbox_resolv_conf(host) == (f"nameserver {network.NET_DNS}\nnameserver 10.1.2.3\n"
                                                 "search corp.example\noptions edns0 trust-ad\n")


def test_without_bwrap_the_command_is_unchanged_and_the_user_changes_in_the_child(tmp_path: Path) -> None:
    box = sandbox.Sandbox.from_config(config.from_env({"SANDBOX": "none"}))
    (tmp_path / "run").mkdir()
    launch = box.launch(["node", "cli.js"], tmp_path / "run", tmp_path, [], box.probe_ids())
    assert launch.argv == ["node", "cli.js"] and not launch.wrapped
    assert (tmp_path / "run").stat().st_uid == FIRST_UID


# Forks until the process limit refuses it, and holds what it got while another run starts.
FORKS = """import { test, expect } from '@playwright/test';
const { spawn } = require('child_process');

test('forks until it may not', async () => {
  test.setTimeout(90_000);
  const children = [];
  let refused = 0;
  for (let i = 0; i < 2000 && !refused; i++) {
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    child.on('error', () => refused++);
    children.push(child);
    if (i % 20 === 0) await new Promise(resolve => setTimeout(resolve, 5));  // errors arrive as events
  }
  await new Promise(resolve => setTimeout(resolve, 15_000));
  expect(refused).toBeGreaterThan(0);
});
"""


def test_one_runs_fork_bomb_leaves_another_run_untouched(
        app: Flask, settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each run is a user of its own, and the process limit is counted per user: a run that forks
    up to its limit (a job) does not starve a run beside it (a playground run, on the other queue)."""
    own = {**settings, "TEST_MAX_PROCESSES": "400", "QUEUE_NAMESPACE": f"supertest-forks-{uuid.uuid4().hex[:8]}"}
    process = start_worker(own, tmp_path_factory.mktemp("forks") / "worker.log")
    try:
        client = make_app(own).test_client()
        bomb = start_job(client, save_job(client, "forks", [save_test(client, "forks", FORKS)]))["runId"]
        wait_until(lambda: len(run_processes(bomb)) > 300, 90, "the fork bomb reached hundreds of processes")
        beside = wait_for_run(client, start_run(client, passing_script("runs beside a fork bomb"))["runId"])
        assert beside["status"] == "passed", beside["tests"][0]["error"] if beside["tests"] else beside
        bombed = wait_for_run(client, bomb)
        assert bombed["status"] == "passed", bombed["tests"][0]["error"] if bombed["tests"] else bombed
    finally:
        process.stop()
