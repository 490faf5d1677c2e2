"""Contain the code under test: resource limits, an unprivileged user, and (with bubblewrap) a
filesystem that holds only what a run needs.

What each deployment gets (the README says the same):
- bubblewrap usable, worker root: bwrap (as root, so it can mount any path) builds a new mount,
  PID and IPC namespace; inside, setpriv drops to SANDBOX_USER with no capabilities. Only /usr,
  /etc, the node binary's tree, node_modules and the Playwright browsers path are visible (read-only),
  plus the run's directory and its temporary directory (writable). Not the app's source, instance/,
  .env, the other runs, /root, /home or the worker's /proc.
- bubblewrap usable, worker not root: the same view through an unprivileged user namespace; the
  process keeps the worker's uid outside it (there is no other user to become).
- no bubblewrap: no private view. As root the test still runs as SANDBOX_USER, so it can read only
  what is world-readable and write only where that user may; not root, it runs as the worker's user.
- always: the rlimits below, set before exec and inherited by every process the test starts.
"""
from __future__ import annotations

import logging
import os
import pwd
import resource
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supertest.execution.runner import die_with_worker

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
    processes: int  # RLIMIT_NPROC: processes and threads of the sandbox user on this machine, all runs together
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


@dataclass
class Sandbox:
    mode: str  # "auto", "bwrap" or "none"
    user: str  # whom to run as when the worker is root
    limits: Limits
    _bwrap_works: bool | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: Any) -> Sandbox:
        return cls(config["SANDBOX"], config["SANDBOX_USER"],
                   Limits(config["TEST_MEMORY_MB"], config["TEST_MAX_PROCESSES"],
                          config["TEST_MAX_OPEN_FILES"], config["TEST_MAX_FILE_MB"]))

    def uid_gid(self) -> tuple[int, int] | None:
        """The user to become: SANDBOX_USER when the worker is root; None (stay) otherwise."""
        if os.geteuid() != 0:
            return None
        entry = pwd.getpwuid(int(self.user)) if self.user.isdigit() else pwd.getpwnam(self.user)
        return entry.pw_uid, entry.pw_gid

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
        if shutil.which("bwrap") is None or (self.uid_gid() and shutil.which("setpriv") is None):
            return False
        with tempfile.TemporaryDirectory(prefix="st-probe-") as scratch:
            # Without the limits: the sandbox user's process count, shared by all runs, is not bwrap's fault.
            command = bwrap_command(["true"], Path(scratch), Path(scratch), [], self.uid_gid())
            try:
                return subprocess.run(command, capture_output=True, timeout=10, env={"PATH": "/usr/bin:/bin"},
                                      preexec_fn=die_with_worker).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                return False

    def launch(self, argv: list[str], run_dir: Path, tmp_dir: Path, readable: Iterable[Path]) -> Launch:
        """The command line that runs `argv` contained, with run_dir and tmp_dir its own (given to
        the sandbox user) and `readable` visible read-only."""
        ids = self.uid_gid()
        if ids:
            for path in (run_dir, tmp_dir):
                _chown_tree(path, *ids)
        if not self.uses_bwrap():
            # No namespaces: the child itself drops to the user, so the user owns every process it starts.
            return Launch(argv, lambda: _contain(self.limits, ids))
        command = bwrap_command(argv, run_dir, tmp_dir, readable, ids)
        return Launch(command, lambda: _contain(self.limits, None, ignore_sigint=True), wrapped=True)


def bwrap_command(argv: list[str], run_dir: Path, tmp_dir: Path, readable: Iterable[Path],
                  ids: tuple[int, int] | None) -> list[str]:
    """bwrap's command line. As root, bwrap keeps its capabilities to set up the mounts and setpriv
    then drops them and becomes `ids`, so the test is that user outside the sandbox too (a user
    namespace would map it to root outside). Not root, bwrap makes a user namespace itself."""
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


def _contain(limits: Limits, ids: tuple[int, int] | None, ignore_sigint: bool = False) -> None:
    """In the child, before exec: limits, then the user (no way back), then a SIGKILL when the worker
    dies (set last: changing the user clears it)."""
    limits.apply()
    if ignore_sigint:
        # bwrap would die of the SIGINT the runner sends the group on a deadline, and take the test
        # with it before Playwright writes its report. Node installs its own handler over this.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if ids is not None:
        uid, gid = ids
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    die_with_worker()


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid, follow_symlinks=False)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)
