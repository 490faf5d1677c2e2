"""Opening files that someone else could have planted, without following a link at any step.

A run's processes write its report; a root worker (or the web process serving a report kept on
disk) must never be led by them to another file. Every path below a trusted folder is opened one
component at a time, relative to the descriptor of the folder above it, with O_NOFOLLOW, and only
regular files with a single link are accepted (a hard link could name a file the writer did not
own). A FIFO or device is never opened, so nothing here can hang on one. Trees such a writer
made are removed without following links and however deep they go (remove_tree).
"""
from __future__ import annotations

import ctypes
import errno
import logging
import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)
DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Refused(Exception):
    """Not a regular file with one link (a link, FIFO, socket, device, folder or hard-linked file)."""


def kind(mode: int, links: int = 1) -> str | None:
    """What makes an entry unacceptable, in words; None for a regular file with one link."""
    if stat.S_ISREG(mode):
        return None if links == 1 else "a file with more than one hard link"
    return {stat.S_IFLNK: "a symbolic link", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
            stat.S_IFCHR: "a device", stat.S_IFBLK: "a device", stat.S_IFDIR: "a folder"}.get(
        stat.S_IFMT(mode), "not a regular file")


def open_dir(name: str | os.PathLike[str], dir_fd: int | None = None) -> int:
    """A descriptor of a folder; ELOOP/ENOTDIR when `name` is a link or not a folder."""
    return os.open(name, DIRECTORY, dir_fd=dir_fd)


def open_file(name: str, dir_fd: int) -> tuple[int, os.stat_result]:
    """A descriptor of the regular file `name` in the folder `dir_fd`, and its status; Refused otherwise.
    A device or FIFO is never opened (opening one can have effects of its own); and should the entry
    be swapped between the look and the open, O_NOFOLLOW and the second look still refuse it."""
    seen = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    why = kind(seen.st_mode, seen.st_nlink)
    if why is not None:
        raise Refused(why)
    try:
        fd = os.open(name, FILE, dir_fd=dir_fd)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENXIO):  # it became a link or a socket meanwhile
            raise Refused("changed while it was opened") from None
        raise
    status = os.fstat(fd)
    why = kind(status.st_mode, status.st_nlink) or (
        None if (status.st_dev, status.st_ino) == (seen.st_dev, seen.st_ino) else "changed while it was opened")
    if why is not None:
        os.close(fd)
        raise Refused(why)
    os.set_blocking(fd, True)
    return fd, status


def open_beneath(root: str | os.PathLike[str], relative: str) -> tuple[int, os.stat_result]:
    """Open `relative` (slash-separated, no `..`) below the trusted folder `root`, following no link."""
    *folders, name = relative.split("/")
    fd = open_dir(root)
    try:
        for folder in folders:
            inner = open_dir(folder, dir_fd=fd)
            os.close(fd)
            fd = inner
        return open_file(name, fd)
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Remove a folder a run wrote, however deep (Python's rmtree recurses once a level and a test
    can nest thousands), following no link; a failure is logged, never raised: cleaning up must not
    fail what it cleans up after."""
    try:
        done = subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], capture_output=True, timeout=600)
        if done.returncode:
            log.warning("could not remove %s: %s", path, done.stderr.decode(errors="replace").strip()[:500])
    except (OSError, subprocess.SubprocessError) as error:
        log.warning("could not remove %s: %s", path, error)


_libc = ctypes.CDLL(None, use_errno=True)


@contextmanager
def as_user(ids: tuple[int, int] | None) -> Iterator[None]:
    """Check file permissions in this thread as `ids` (uid, gid) rather than as root: a root worker
    opens a run's files with no more rights than the run had. Linux's filesystem ids are per
    thread, so the worker's other threads keep theirs. None: as we are."""
    if ids is None:
        yield
        return
    uid, gid = ids
    _libc.setfsgid(gid)
    _libc.setfsuid(uid)
    if _libc.setfsuid(uid) != uid:  # setfsuid answers with the previous id, and never fails loudly
        _libc.setfsgid(os.getegid())
        raise PermissionError(f"could not take the filesystem ids {uid}:{gid}")
    try:
        yield
    finally:
        _libc.setfsuid(os.geteuid())
        _libc.setfsgid(os.getegid())
