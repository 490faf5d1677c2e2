"""A user of its own for every run at once, so that runs share no per-user limit and no files.

A root worker runs each test as a uid from SANDBOX_UIDS, one no account on the machine uses. The
number of processes (RLIMIT_NPROC) is counted per user by the kernel, and so are file permissions:
with one user for all runs, one run's fork bomb would starve every other run of processes. A run
holds its uid through a lock file (flock), so worker processes on one machine never share one,
and a worker that dies lets go of its uids with its locks. What a uid's last run left running is
killed before the uid is handed out again and when the run ends.
"""
from __future__ import annotations

import fcntl
import os
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from supertest.execution.processes import kill_user

# Machine-wide, so that every worker process (of every Supertest on the machine) sees the same locks.
LOCK_DIR = Path("/run/supertest-sandbox-uids")


class NoFreeUser(RuntimeError):
    """Every uid of the range is held by a run on this machine."""


class UserRange:
    """The uids first..last; each run holds one while it runs."""

    def __init__(self, first: int, last: int, lock_dir: Path | None = None) -> None:
        self.first, self.last = first, last
        self.lock_dir = lock_dir or (LOCK_DIR if os.access(LOCK_DIR.parent, os.W_OK)
                                     else Path(tempfile.gettempdir()) / LOCK_DIR.name)

    @contextmanager
    def hold(self) -> Iterator[tuple[int, int]]:
        """A free (uid, gid) for one run; when the run is over, its processes are killed and it is free."""
        folder = self._lock_folder()
        try:
            uids = list(range(self.first, self.last + 1))
            start = random.randrange(len(uids))  # workers starting together try different uids first
            for uid in uids[start:] + uids[:start]:
                fd = os.open(str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                try:
                    kill_user(uid)  # left by a run whose worker died before it could clean up
                    yield uid, uid
                finally:
                    kill_user(uid)
                    os.close(fd)  # lets go of the lock
                return
        finally:
            os.close(folder)
        raise NoFreeUser(f"all {len(uids)} sandbox users (SANDBOX_UIDS) are busy on this machine")

    def _lock_folder(self) -> int:
        """The lock folder, opened without following a link, and only if it is root's alone: in a
        world-writable /tmp, anyone could have made it first and so hand two runs one uid."""
        self.lock_dir.mkdir(mode=0o700, exist_ok=True)
        folder = os.open(self.lock_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        status = os.fstat(folder)
        if status.st_uid != os.geteuid() or status.st_mode & 0o022:
            os.close(folder)
            raise RuntimeError(f"{self.lock_dir} belongs to someone else or others may write to it; "
                               "remove it (the worker makes it again)")
        return folder
