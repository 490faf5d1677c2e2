"""Warm runners: for each run slot of a worker process, a Playwright runner started in its sandbox
before its run arrives, so that node and Playwright's test runner are already loaded when it comes.

A warm runner is a cold run's sandbox started early: the same command (sandbox.py: bubblewrap, a
uid of its own held from SANDBOX_UIDS, the limits, pasta's private network), its own empty run
directory and TMPDIR, the environment runner.child_env builds. It runs warm.js, which loads
Playwright's runner, forks Playwright's first test worker process ahead (warm-worker.js: its
modules loaded, its environment given when it is taken, Chromium launched with the config's launch
options for its `browser` fixture once the runner has loaded and the CPU is free), installs
Playwright's source transform in both (and primes babel in the runner), and waits on stdin, all at
the lowest priority (LOADING_NICE). A run that takes it gives it the normal priority back, writes
its files into that directory, sends the run's own variables, and from then on the runner
(runner.watch) sees it through as a cold run: deadline, stop, event lines, the kill of its group
and strays. Afterwards it is thrown away with its directories and uid, and a fresh one is started
for the slot: no two runs ever share one. docs/architecture.md ("Warm runners") says what it saves
and costs.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from select import select

from supertest import nofollow
from supertest.execution import processes, runner
from supertest.execution.sandbox import Sandbox

log = logging.getLogger(__name__)
WARM_JS = Path(__file__).with_name("warm.js")
WARM_WORKER_JS = Path(__file__).with_name("warm-worker.js")  # Playwright's first worker process, forked ahead
SHARED_JS = Path(__file__).with_name("warm-shared.js")  # what both of them share
REPORTER_JS = Path(__file__).with_name("reporter.js")  # our reporter, which warm.js runs babel on once ahead
READY = b"@@supertest-warm ready\n"
READY_SECONDS = 10  # a run waits this long at most for a runner still loading, then starts cold
# (its heartbeat beats meanwhile: execution.RunWatch is started first)
MAX_AGE_SECONDS = 600  # an idle runner this old is replaced (Playwright may have been upgraded under it)
RETRY_SECONDS = 10  # after a runner failed to start
# A runner loads at the lowest priority, the CPU no run wants: runs at once on a busy machine are not
# slowed by their successors' start. Taken for a run, it gets the normal priority back.
LOADING_NICE = 19
# A slot's next runner starts loading this long after its run took the last one, not when the run
# ends: runs back to back then find it ready (bench/throughput.py), while a run's own start, its
# browser's page and its report (about a second of CPU) are not slowed by the load of the next.
# With runs waiting in the queues it starts at once: the next run is sure to come, and the load,
# at LOADING_NICE, takes only the CPU the runs in progress leave.
HEADSTART_SECONDS = 1.5


# Variables node or Playwright read as they start, before a warm runner's run arrives: a run that
# sets one starts cold, so that it has the effect it would have on `playwright test`. OpenSSL's and
# ICU's (the locale of node's Intl) are read once at start too, as are the colour switches and
# glibc's tunables and malloc settings (LD_* cannot be a variable: services/variables.py).
STARTING_VARIABLES = ("NODE_", "UV_", "DEBUG", "PW", "PLAYWRIGHT", "OPENSSL_", "SSL_CERT_", "LANG", "LC_",
                      "NO_COLOR", "FORCE_COLOR", "GLIBC_TUNABLES", "MALLOC_")
READ_LATER = {"PWD"}  # a shell's variable that only looks like Playwright's (PW…)


def suits(variables: dict[str, str]) -> bool:
    """Whether a run with these variables may go on a warm runner (STARTING_VARIABLES)."""
    return not any(name.upper().startswith(STARTING_VARIABLES) and name.upper() not in READ_LATER
                   for name in variables)


@dataclass(frozen=True)
class Recipe:
    """What a warm runner is started with: a cold run's sandbox and paths (execution.launch)."""

    box: Sandbox
    node: str
    cli: Path  # @playwright/test's cli.js
    readable: list[Path]
    runs_dir: Path
    browsers_path: str
    launch_options: dict | None = None  # workspace.launch_options: Chromium is launched ahead with them

    def key(self) -> tuple[tuple[str, int], ...]:
        """What a runner started earlier must still match: the Playwright installed now, and the
        Chromium it launched ahead (one upgraded since is not the browser a run would launch)."""
        installed = [self.cli.parent / "package.json"]
        if self.launch_options and self.launch_options.get("executablePath"):
            installed.append(Path(self.launch_options["executablePath"]))
        return tuple(_installed(path) for path in installed)


def _installed(path: Path) -> tuple[str, int]:
    """A file as installed: where it really is and when it was last changed."""
    try:
        return str(path.resolve()), path.stat().st_mtime_ns
    except OSError:
        return str(path), 0


@dataclass
class Warm:
    """One warm runner: its process, directories and uid, for one run."""

    process: subprocess.Popen
    run_dir: Path
    tmp_dir: Path
    ids: tuple[int, int] | None
    env: dict[str, str]  # the environment it was started with (runner.child_env)
    key: tuple[tuple[str, int], ...]
    held: ExitStack  # its uid (users.py), let go of when it is discarded
    started: float = field(default_factory=time.monotonic)
    _ready: bool = False

    def alive(self) -> bool:
        return self.process.poll() is None

    def ready(self, timeout: float) -> bool:
        """Whether it has loaded Playwright and waits (its first line), within `timeout` seconds."""
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while not self._ready and select([stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
            # From the pipe itself, not the buffer over it: a buffered readline would take a line
            # printed first (a warning) *and* READY, leaving READY where select() never sees it.
            # Nothing else is read before READY, and warm.js prints nothing after it until go().
            line = stdout.raw.readline(runner.MAX_READ_BYTES)  # type: ignore[attr-defined]
            if not line:  # it ended
                break
            self._ready = line == READY
        return self._ready and self.alive()

    def go(self, env: dict[str, str]) -> bool:
        """Hand it its run (its files are written): the variables of `env` it was not started with.
        False if it is gone: the run then starts cold."""
        stdin = self.process.stdin
        assert stdin is not None
        added = {name: value for name, value in env.items() if self.env.get(name) != value}
        try:
            stdin.write(json.dumps({"env": added}).encode() + b"\n")
            stdin.close()
        except OSError:  # it died since it was taken
            return False
        return True

    def discard(self) -> None:
        """Kill it and everything it started, let go of its uid, remove its directories."""
        try:
            try:
                if self.process.stdin and not self.process.stdin.closed:
                    self.process.stdin.close()
            except OSError:
                pass
            if self.process.returncode is None:  # else its end was seen to already (runner.watch)
                runner.end(self.process, self.env["HOME"])
            if self.process.stdout:
                self.process.stdout.close()
        finally:  # whatever failed above, the uid is not kept for good
            self.held.close()  # users.py kills what the uid still runs, then frees it
            for folder in (self.run_dir, self.tmp_dir):
                nofollow.remove_tree(folder)


def start(recipe: Recipe) -> Warm:
    """Start a warm runner: a uid, an empty run directory and TMPDIR, warm.js in the sandbox."""
    held = ExitStack()
    run_dir = recipe.runs_dir / f"warm-{secrets.token_hex(8)}"
    tmp_dir = Path(tempfile.mkdtemp(prefix="st-"))
    try:
        ids = held.enter_context(recipe.box.users.hold()) if recipe.box.users else None
        run_dir.mkdir(parents=True)
        for script in (WARM_JS, WARM_WORKER_JS, SHARED_JS, REPORTER_JS):
            shutil.copyfile(script, tmp_dir / script.name)
        argv = [recipe.node, str(tmp_dir / "warm.js"), str(recipe.cli)]
        if recipe.launch_options is not None:
            argv.append(json.dumps(recipe.launch_options))
        launched = recipe.box.launch(argv,
                                     run_dir, tmp_dir, recipe.readable, ids)
        if ids:  # ours while idle (the runner writes nothing there): the worker writes the run's files
            # into a folder no other process can put a link in; execution.launch gives it to the run
            os.chown(run_dir, os.getuid(), os.getgid(), follow_symlinks=False)
        env = runner.child_env(run_dir, tmp_dir, recipe.browsers_path)
        process = runner.start(launched.argv, run_dir, env, _at_low_priority(launched.preexec), stdin=subprocess.PIPE)
    except BaseException:
        held.close()
        for folder in (run_dir, tmp_dir):
            nofollow.remove_tree(folder)
        raise
    return Warm(process, run_dir, tmp_dir, ids, env, recipe.key(), held)


def _at_low_priority(preexec: Callable[[], None]) -> Callable[[], None]:
    """`preexec`, in a session at LOADING_NICE (the sandbox's user and limits are set after it)."""
    def preexec_at_low_priority() -> None:
        processes.set_session_nice("self", LOADING_NICE)  # the session runner.start made for it
        preexec()
    return preexec_at_low_priority


class WarmRunners:
    """The warm runners of one worker process: one per run slot, idle or serving its run; a slot's
    next runner loads alongside its run once the run has had HEADSTART_SECONDS to itself, or at
    once while runs wait in the queues.

    A thread of its own starts them, and lives as long as the process: a child's death signal
    (die_with_worker) fires when the *thread* that started it ends, not only the process.
    """

    def __init__(self, recipe: Recipe, starter: Callable[[Recipe], Warm] = start,
                 backlog: Callable[[], bool] = lambda: False) -> None:
        self.recipe = recipe
        self.starter = starter
        self.backlog = backlog  # whether runs wait in the queues (no head start then)
        self.size = 0
        self._idle: list[Warm] = []
        # id() of each runner serving a run → when its slot's next runner starts loading
        self._serving: dict[int, float] = {}
        self._closed = False
        self._changed = threading.Condition()
        threading.Thread(target=self._keep, name="warm-runners", daemon=True).start()

    def resize(self, size: int) -> None:
        """Keep `size` runners (the worker's run slots); 0 keeps none."""
        with self._changed:
            self.size = size
            self._changed.notify_all()
        self._discard(self._surplus())

    def take(self) -> Warm | None:
        """An idle runner for a run, or None (the run starts cold). Give it back() after the run."""
        dropped: list[Warm] = []
        taken = None
        key = self.recipe.key()
        with self._changed:
            while self._idle and taken is None:
                warm = self._idle.pop(0)
                if warm.alive() and warm.key == key and time.monotonic() - warm.started < MAX_AGE_SECONDS:
                    taken = warm
                    self._serving[id(warm)] = time.monotonic() + HEADSTART_SECONDS
                else:
                    dropped.append(warm)
            self._changed.notify_all()
        self._discard(dropped, "died or went stale while idle")
        if taken:
            processes.set_run_nice(taken.process.pid, taken.env["HOME"], 0)  # also while it finishes loading
            if self.backlog():  # asked outside the lock, and only for a run that took a runner
                with self._changed:
                    self._serving[id(taken)] = time.monotonic()
                    self._changed.notify_all()
        return taken

    def give_back(self, warm: Warm) -> None:
        """Its run is over (or never started on it): it is discarded, and a fresh one started."""
        try:
            warm.discard()
        finally:
            with self._changed:
                self._serving.pop(id(warm), None)
                self._changed.notify_all()

    def close(self) -> None:
        """The worker is stopping: no more runners, the idle ones killed."""
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            self._changed.notify_all()
        self._discard(idle)

    def _surplus(self) -> list[Warm]:
        with self._changed:
            extra = max(0, len(self._idle) - self.size)
            surplus, self._idle = self._idle[:extra], self._idle[extra:]
            return surplus

    def _keep(self) -> None:
        """Start a runner whenever fewer than `size` are idle or serving a run within its head
        start; look now and then (also when full) for an idle one that died or went stale, so it is
        replaced before a run finds it."""
        while True:
            with self._changed:
                if self._closed:
                    return
                stale = [warm for warm in self._idle if not warm.alive() or self._old(warm)]
                self._idle = [warm for warm in self._idle if warm not in stale]
                now = time.monotonic()
                starting = [due - now for due in self._serving.values() if due > now]
                if not stale and len(self._idle) + len(starting) >= self.size:
                    self._changed.wait(timeout=min([RETRY_SECONDS, *starting]))
                    continue
            if stale:
                self._discard(stale, "died or went stale while idle")
                continue
            try:
                warm = self.starter(self.recipe)
            except Exception:
                log.warning("could not start a warm runner; runs start cold meanwhile", exc_info=True)
                with self._changed:
                    self._changed.wait(timeout=RETRY_SECONDS)
                continue
            with self._changed:
                keep = not self._closed
                if keep:
                    self._idle.append(warm)
            if not keep:
                warm.discard()

    def _old(self, warm: Warm) -> bool:
        return time.monotonic() - warm.started >= MAX_AGE_SECONDS or warm.key != self.recipe.key()

    @staticmethod
    def _discard(runners: list[Warm], why: str = "") -> None:
        for warm in runners:
            if why:
                log.info("a warm runner %s; replacing it", why)
            try:
                warm.discard()
            except Exception:
                log.warning("could not discard a warm runner", exc_info=True)
