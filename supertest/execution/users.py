"""A user of its own for every run at once, so that runs share no per-user limit and no files.

A root worker runs each test as a uid from SANDBOX_UIDS, one no account on the machine uses. The
number of processes (RLIMIT_NPROC) is counted per user by the kernel, and so are file permissions:
with one user for all runs, one run's fork bomb would starve every other run of processes. A run
holds its uid through a lock file (flock), so worker processes on one machine never share one,
and a worker that dies lets go of its uids with its locks. What a uid's last run left running is
killed before the uid is handed out again and when the run ends.
"""
from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from supertest.execution.processes import kill_user
from supertest.locks import LockFolder


class NoFreeUser(RuntimeError):
    """Every uid of the range is held by a run on this machine."""


class UserRange:
    """The uids first..last; each run holds one while it runs."""

    def __init__(self, first: int, last: int, lock_dir: Path | None = None) -> None:
        self.first, self.last = first, last
        self.locks = LockFolder("supertest-sandbox-uids", lock_dir)

    @contextmanager
    def hold(self) -> Iterator[tuple[int, int]]:
        """A free (uid, gid) for one run; when the run is over, its processes are killed and it is free."""
        uids = list(range(self.first, self.last + 1))
        start = random.randrange(len(uids))  # workers starting together try different uids first
        taken = self.locks.take_one(uids[start:] + uids[:start])
        if taken is None:
            raise NoFreeUser(f"all {len(uids)} sandbox users (SANDBOX_UIDS) are busy on this machine")
        uid, fd = taken
        try:
            kill_user(uid)  # left by a run whose worker died before it could clean up
            yield uid, uid
        finally:
            kill_user(uid)
            os.close(fd)  # lets go of the lock
