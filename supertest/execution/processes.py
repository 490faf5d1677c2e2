"""Processes on this machine, as /proc shows them: finding and killing what a run left behind, and
tying a child's life to the worker's. Tests and benchmarks use these without loading the runner."""
from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
MAX_SANDBOX_CMDLINE = 256 * 1024  # read of a process kill_orphaned_sandboxes looks at


def kill_strays(session: int, home: str, passes: int = 5) -> int:
    """SIGKILL what is left of a run outside its process group: processes still in its session
    (a child that changed its group), and processes that kept HOME=`home` (a child that started a
    session of its own: setsid, `detached: true`).

    A process that does both and drops its environment escapes this; containing it is the sandbox's
    job. Several passes, since a stray may fork while we look. Returns how many were killed.
    """
    return _kill_matching(_of_run(session, home), passes)


def _of_run(session: int, home: str) -> Callable[[int], bool]:
    """Whether a process is a run's: in its `session`, or one that kept HOME=`home`."""
    marker = f"HOME={home}".encode()
    return lambda pid: session_of(pid) == session or marker in environ_of(pid)


def pids() -> list[int]:
    return [int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit()]


def session_of(pid: int) -> int | None:
    """The session of a live process; None for one that is gone or already dead (a zombie)."""
    stat = _stat(pid)
    return None if stat is None else stat[1]


def parent_of(pid: int) -> int | None:
    """The parent of a live process; None for one that is gone or already dead (a zombie)."""
    stat = _stat(pid)
    return None if stat is None else stat[0]


def _stat(pid: int) -> tuple[int, int] | None:
    """A live process's parent and session."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
            state, ppid, _pgrp, session = stat.read().rsplit(b")", 1)[1].split()[:4]
    except (OSError, ValueError):
        return None
    return None if state == b"Z" else (int(ppid), int(session))


def kill_orphaned_sandboxes(runs_dir: str) -> int:
    """SIGKILL every bwrap whose parent is init and whose folder (--chdir) is under `runs_dir`: a
    sandbox whose worker died while bwrap set it up. Its child then waits for good for a word from
    the bwrap above it (an eventfd: no end of file), a process nobody ends. A live worker's
    sandboxes have the worker, or bwrap, as their parent. Returns how many were killed."""
    prefix = runs_dir.rstrip("/") + "/"

    def orphaned(pid: int) -> bool:
        if parent_of(pid) != 1:  # first: few processes are init's, and only theirs need reading
            return False
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                # ours is a few KB; a process that made its own longer is not ours
                args = cmdline.read(MAX_SANDBOX_CMDLINE).split(b"\0")
            folder = args[args.index(b"--chdir") + 1].decode()
        except (OSError, ValueError, IndexError):
            return False
        return args[0].endswith(b"bwrap") and folder.startswith(prefix)
    return _kill_matching(orphaned, passes=1)


def environ_of(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            return environ.read().split(b"\0")
    except OSError:  # gone already, or not ours to read
        return []


def die_with_worker(worker: int | None = None) -> None:
    """In the child, before exec: a SIGKILL when the worker dies (even by SIGKILL), so a lost
    worker leaves no test running that nobody watches. Linux only; elsewhere a no-op.

    `worker`: the worker's pid, read before the fork. A worker that died before this was asked for
    sends nothing (the child has another parent already): the child then ends here. Without it, a
    worker that dies while the child sets up (sandbox._contain: seconds, at nice 19 on a busy
    machine) leaves the child to run on."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if worker is not None and os.getppid() != worker:
        os._exit(1)


def set_session_nice(pid: int | str, nice: int, tries: int = 1) -> None:
    """Give `pid`'s session ("self": ours) the nice value Linux's scheduler weighs it by against other
    sessions: with autogroups on (the default), a process's own nice value counts only within its
    session. Back to 0 needs no privilege, but without it Linux takes one change in 0.1 s (machine
    wide): `tries` times, 0.1 s apart. Where there are no autogroups, nothing is done."""
    for attempt in range(tries):
        try:
            autogroup = os.open(f"/proc/{pid}/autogroup", os.O_WRONLY)
            try:
                os.write(autogroup, str(nice).encode())
                return
            finally:
                os.close(autogroup)
        except BlockingIOError:
            if attempt + 1 < tries:
                time.sleep(0.11)
        except OSError:
            return


def set_run_nice(session: int, home: str, nice: int) -> None:
    """set_session_nice for each session a run's processes are in (_of_run): its own, and those of
    the processes that started one but kept its HOME (Playwright's browser)."""
    of_run = _of_run(session, home)
    sessions = {session_of(pid): pid for pid in pids() if of_run(pid)}  # a process in each
    sessions.pop(None, None)  # gone meanwhile
    for pid in sessions.values():
        set_session_nice(pid, nice, tries=3)


def kill_user(uid: int, passes: int = 5) -> int:
    """SIGKILL every process running as `uid` (a run's own: users.py)."""
    return _kill_matching(lambda pid: uid in _uids(pid), passes)


def _kill_matching(match: Callable[[int], bool], passes: int) -> int:
    """SIGKILL every process `match` picks; several passes, since one may fork while we look.
    Returns how many were killed."""
    killed = 0
    for _ in range(passes):
        found = [pid for pid in pids() if match(pid)]
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        if not found:
            break
    return killed


def _uids(pid: int) -> tuple[int, ...]:
    """The real, effective, saved and filesystem uids of a live process; () when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"State:") and line.split()[1] == b"Z":
                    return ()
                if line.startswith(b"Uid:"):
                    return tuple(int(value) for value in line.split()[1:])
    except (OSError, ValueError, IndexError):
        pass
    return ()
