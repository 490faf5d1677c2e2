"""Contain the code under test: resource limits (rlimits) before exec, a uid of the run's own when
the worker is root (users.py), and with bubblewrap a filesystem that holds only what a run needs
(and, with pasta, a network of its own: network.py). What each deployment gets, and why:
docs/isolation.md."""
from __future__ import annotations

import logging
import os
import resource
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supertest.execution.network import NETWORK_READY_SECONDS, _private_network, pasta_command, sandbox_resolv_conf
from supertest.execution.processes import die_with_worker
from supertest.execution.users import UserRange

log = logging.getLogger(__name__)
MB = 1024 * 1024
# Read-only system trees Node, Chromium and ffmpeg need; /etc for fonts, TLS roots, resolv.conf,
# passwd. Everything else of the machine is absent from the sandbox.
SYSTEM_READ_ONLY = ("/usr", "/etc")
# Links into /usr on a merged-/usr system, directories of their own on an older one.
SYSTEM_TOP = ("/bin", "/sbin", "/lib", "/lib64", "/lib32")
# Present when the machine has them: a shared font cache spares every run rebuilding it in its HOME.
OPTIONAL_READ_ONLY = ("/var/cache/fontconfig",)


@dataclass(frozen=True)
class Limits:
    """Per-process rlimits, inherited by everything the test starts."""

    memory_mb: int  # RLIMIT_DATA: each process's heap and private writable mappings, not the run's total
    processes: int  # RLIMIT_NPROC: processes and threads of the run's uid (one run's: see users.py)
    open_files: int  # RLIMIT_NOFILE
    file_mb: int  # RLIMIT_FSIZE: the largest file a process may write

    def rlimits(self) -> list[tuple[int, int]]:
        return [
            # Not RLIMIT_AS: V8 and Chromium reserve many GB of address space they never use.
            (resource.RLIMIT_DATA, self.memory_mb * MB),
            (resource.RLIMIT_NPROC, self.processes),
            (resource.RLIMIT_NOFILE, self.open_files),
            (resource.RLIMIT_FSIZE, self.file_mb * MB),
        ]

    def apply(self) -> None:
        for which, value in self.rlimits():
            resource.setrlimit(which, (value, value))


@dataclass(frozen=True)
class Launch:
    """How to start the test command: the command line, and what the child does before exec."""

    argv: list[str]
    preexec: Callable[[], None]
    wrapped: bool = False  # inside bwrap
    private_network: bool = False  # a network namespace of its own, connected by pasta


@dataclass
class Sandbox:
    mode: str  # "auto", "bwrap" or "none"
    users: UserRange | None  # the uids runs take when the worker is root; None: runs keep the worker's
    limits: Limits
    network: str = "auto"  # "auto", "private" or "host"
    _bwrap_works: bool | None = field(default=None, repr=False)
    _network_works: bool | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: Any) -> Sandbox:
        first, last = config["SANDBOX_UIDS"]
        return cls(config["SANDBOX"], UserRange(first, last) if os.geteuid() == 0 else None,
                   Limits(config["TEST_MEMORY_MB"], config["TEST_MAX_PROCESSES"],
                          config["TEST_MAX_OPEN_FILES"], config["TEST_MAX_FILE_MB"]),
                   config["SANDBOX_NETWORK"])

    def probe_ids(self) -> tuple[int, int] | None:
        """Whom the probes run as: a uid of the range (a probe starts nothing that could outlive it)."""
        return None if self.users is None else (self.users.first, self.users.first)

    def uses_bwrap(self) -> bool:
        """SANDBOX=bwrap insists (a run fails without it); auto uses bwrap when it works here."""
        if self.mode == "none":
            return False
        if self.mode == "bwrap":
            return True
        if self._bwrap_works is None:
            self._bwrap_works = self._probe()
            if not self._bwrap_works:
                log.warning("bubblewrap is missing or cannot start a sandbox here: tests run without a "
                            "private filesystem view (SANDBOX=bwrap makes that an error)")
        return self._bwrap_works

    def _probe(self) -> bool:
        """Whether bwrap (and setpriv, as root) can start a process here: a container may forbid namespaces."""
        if shutil.which("bwrap") is None or (self.users and shutil.which("setpriv") is None):
            return False
        with tempfile.TemporaryDirectory(prefix="st-probe-") as scratch:
            # Without the limits: the sandbox user's process count, shared by all runs, is not bwrap's fault.
            command = bwrap_command(["true"], Path(scratch), Path(scratch), [], self.probe_ids())
            try:
                return subprocess.run(command, capture_output=True, timeout=10, env={"PATH": "/usr/bin:/bin"},
                                      preexec_fn=die_with_worker).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                return False

    def uses_private_network(self) -> bool:
        """SANDBOX_NETWORK=private insists (a run fails without it); auto uses it when it works here.
        It needs bwrap (the sandbox's /etc/resolv.conf is ours), pasta, and a root worker (to make
        the namespace without a user namespace, which would map the test to root outside)."""
        if self.network == "host":
            return False
        possible = self.uses_bwrap() and self.users is not None and pasta_command() is not None
        if self.network == "private":
            if not possible:
                raise RuntimeError("SANDBOX_NETWORK=private needs bubblewrap, pasta (Debian package passt) "
                                   "and a worker running as root")
            return True
        if self._network_works is None:
            self._network_works = possible and self._probe_network()
            if not self._network_works:
                log.warning("the sandbox cannot have a network of its own here (it needs bubblewrap, pasta "
                            "and a root worker, and pasta must start): tests share the worker's network, "
                            "loopback included (SANDBOX_NETWORK=private makes that an error)")
        return self._network_works

    def _probe_network(self) -> bool:
        """Whether a sandbox with its own network starts here (pasta configures it before bwrap runs)."""
        pasta = pasta_command()
        assert pasta is not None
        with tempfile.TemporaryDirectory(prefix="st-probe-") as scratch:
            command = bwrap_command(["true"], Path(scratch), Path(scratch), [], self.probe_ids())

            def connected() -> None:
                _private_network(pasta)
                die_with_worker()

            try:
                return subprocess.run(command, capture_output=True, timeout=NETWORK_READY_SECONDS + 10,
                                      env={"PATH": "/usr/bin:/bin"}, preexec_fn=connected).returncode == 0
            except (OSError, subprocess.SubprocessError):  # SubprocessError: connected() failed
                return False

    def launch(self, argv: list[str], run_dir: Path, tmp_dir: Path, readable: Iterable[Path],
               ids: tuple[int, int] | None) -> Launch:
        """The command line that runs `argv` contained, as `ids` (uid, gid; None: as the worker),
        with run_dir and tmp_dir its own (given to that user) and `readable` visible read-only."""
        if ids:
            for path in (run_dir, tmp_dir):
                chown_tree(path, *ids)
        # First: with SANDBOX_NETWORK=private and no bwrap here, this refuses the run.
        pasta = pasta_command() if self.uses_private_network() else None
        worker = os.getpid()  # the child's parent, as long as it lives (die_with_worker)
        if not self.uses_bwrap():
            # No namespaces: the child itself drops to the user, so the user owns every process it starts.
            return Launch(argv, lambda: _contain(self.limits, ids, worker=worker))
        resolv_conf = None
        if pasta:
            resolv_conf = tmp_dir / "resolv.conf"
            resolv_conf.write_text(sandbox_resolv_conf(_read("/etc/resolv.conf")))
        command = bwrap_command(argv, run_dir, tmp_dir, readable, ids, resolv_conf)
        return Launch(command, lambda: _contain(self.limits, None, ignore_sigint=True, pasta=pasta, worker=worker),
                      wrapped=True, private_network=pasta is not None)


def _read(path: str) -> str:
    try:
        with open(path) as file:
            return file.read()
    except OSError:
        return ""


def bwrap_command(argv: list[str], run_dir: Path, tmp_dir: Path, readable: Iterable[Path],
                  ids: tuple[int, int] | None, resolv_conf: Path | None = None) -> list[str]:
    """bwrap's command line. As root, bwrap keeps its capabilities to set up the mounts and setpriv
    then drops them and becomes `ids`, so the test is that user outside the sandbox too (a user
    namespace would map it to root outside). Not root, bwrap makes a user namespace itself.
    `resolv_conf` replaces /etc/resolv.conf (a private network's). The network namespace, if any, is
    made before bwrap starts (_private_network), not by bwrap."""
    command = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc"]
    if ids is None:
        command.append("--unshare-user")
    for path in SYSTEM_READ_ONLY:
        command += ["--ro-bind", path, path]
    for top in SYSTEM_TOP:
        if os.path.islink(top):
            command += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            command += ["--ro-bind", top, top]
    visible = [path for path in dict.fromkeys(str(Path(p)) for p in readable)  # in order, once each
               if not any(path == top or path.startswith(top + "/") for top in SYSTEM_READ_ONLY)]
    # An empty /tmp the test cannot write to; it writes to TMPDIR (tmp_dir) and HOME (run_dir).
    command += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    # bwrap makes missing parents of a mount point root-only; the user must be able to pass through them.
    for parent in _parents([*OPTIONAL_READ_ONLY, *visible, str(tmp_dir), str(run_dir)]):
        command += ["--perms", "0755", "--dir", parent]
    for path in [*OPTIONAL_READ_ONLY, *visible]:
        command += ["--ro-bind-try", path, path]
    for path in (str(tmp_dir), str(run_dir)):
        command += ["--bind", path, path]
    if resolv_conf is not None:
        command += ["--ro-bind", str(resolv_conf), "/etc/resolv.conf"]
    command += ["--chdir", str(run_dir)]
    command.append("--")
    if ids is not None:
        uid, gid = ids
        command += ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all", "--"]
    return [*command, *argv]


def _parents(paths: Iterable[str]) -> list[str]:
    """The directories above `paths` that bwrap would create, outermost first."""
    made = {"/", "/tmp", *SYSTEM_READ_ONLY}
    found: dict[str, None] = {}
    for path in paths:
        for parent in reversed(Path(path).parents):
            if str(parent) not in made:
                found[str(parent)] = None
    return sorted(found, key=lambda path: path.count("/"))


def _contain(limits: Limits, ids: tuple[int, int] | None, ignore_sigint: bool = False,
             pasta: list[str] | None = None, worker: int | None = None) -> None:
    """In the child, before exec: a network of its own (with `pasta`), limits, then the user (no way
    back), then a SIGKILL when the worker (pid `worker`) dies: set last, as changing the user clears
    it, and the child ends if the worker died before that (die_with_worker)."""
    if ignore_sigint:
        # bwrap would die of the SIGINT the runner sends the group on a deadline, and take the test
        # with it before Playwright writes its report. Node installs its own handler over this.
        # Set first, so pasta inherits it too and the network stays while Playwright finishes.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if pasta is not None:
        _private_network(pasta)  # before the limits, which are the test's, not pasta's
    limits.apply()
    if ids is not None:
        uid, gid = ids
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    die_with_worker(worker)


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give a run's directory to its user, links and all, following none. Bottom up, `root` last:
    a folder becomes the user's only once all below it is done, so that a process of that user
    (a warm runner's, warm.py, is running) can never swap a folder still to be walked for a link."""
    for folder, dirs, files in os.walk(root, topdown=False):
        for name in dirs + files:
            os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)
    os.chown(root, uid, gid, follow_symlinks=False)
