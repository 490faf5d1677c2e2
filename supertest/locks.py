"""Locks that hold across every process of this machine: an flock on one of a set of named files,
in a folder only this user can write to. A process that dies lets go of its locks with its files.
Run slots (slots.py) and the runs' uids (execution/users.py) are held this way."""
from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class LockFolder:
    """/run/<name> (else <tmp>/<name>): machine-wide, so every worker process sees the same files."""

    def __init__(self, name: str, path: Path | None = None) -> None:
        self.path = path or (Path("/run") / name if os.access("/run", os.W_OK) else Path(tempfile.gettempdir()) / name)

    def take_one(self, names: Iterable[T]) -> tuple[T, int] | None:
        """The first of `names` nobody holds, and its lock (a descriptor: close it to let go); None
        when every one is held."""
        folder = self._open()
        try:
            for name in names:
                fd = os.open(str(name), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                return name, fd
            return None
        finally:
            os.close(folder)

    def _open(self) -> int:
        """The folder, opened without following a link, and only if it is this user's alone: in a
        world-writable /tmp, anyone could make it first and hold (or hand out twice) every lock."""
        self.path.mkdir(mode=0o700, exist_ok=True)
        folder = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        status = os.fstat(folder)
        if status.st_uid != os.geteuid() or status.st_mode & 0o022:
            os.close(folder)
            raise RuntimeError(f"{self.path} belongs to someone else or others may write to it; "
                               "remove it (the worker makes it again)")
        return folder
