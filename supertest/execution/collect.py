"""Take what a run left behind into a folder of the worker's own, treating all of it as hostile.

The test's processes could have written anything in the run's directory: links to files only the
worker may read, FIFOs that block whoever opens them, hard links, a million files, a deep tree,
files as large as the disk. Nothing after this step (reading results, redacting, storing) opens a
path the test could have changed: it works on this copy. Every entry is opened relative to its
folder's descriptor without following links (supertest/nofollow.py), as the test's own user, and
only regular files are copied, within limits on files, bytes and depth. What is left out is named.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from supertest import nofollow

CHUNK = 1024 * 1024
MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_bytes: int  # all files together
    max_files: int  # entries of any kind looked at
    max_depth: int = 32  # folders within folders


@dataclass
class Collected:
    """What the copy holds, and what it left out (a path relative to the run's directory, and why)."""

    files: int = 0
    bytes: int = 0
    entries: int = 0
    left_out: list[tuple[str, str]] = field(default_factory=list)

    def leave_out(self, shown: str, why: str) -> None:
        # Shown escaped: a name may hold a newline or a terminal's escape codes, to forge log lines.
        printable = shown if shown.isprintable() else shown.encode("unicode_escape", "backslashreplace").decode()
        self.left_out.append((printable, why))

    def summary(self, shown: int = 10) -> str | None:
        """The left-out entries in a sentence for the run's message; None when nothing was."""
        if not self.left_out:
            return None
        named = "; ".join(f"{path} ({why})" for path, why in self.left_out[:shown])
        more = len(self.left_out) - shown
        return (f"Left out of this run's report: {named}" + (f"; and {more} more" if more > 0 else "") +
                ". Only regular files are kept, within the worker's limits on their number and size.")


def collect(run_dir: Path, names: list[str], target: Path, limits: Limits,
            owner: tuple[int, int] | None) -> Collected:
    """Copy `names` (files or folders directly in `run_dir`) into the new folder `target`.

    `owner`: the test's (uid, gid), whose rights the reading is done with (None: the worker's own).
    """
    collected = Collected()
    target.mkdir(mode=0o700)
    # The run's directory itself is the worker's to name (its parent is not the test's to change),
    # and its parent may be closed to the test's user: opened as the worker, everything in it as the test.
    run_fd = nofollow.open_dir(run_dir)
    try:
        for name in names:
            _entry(run_fd, name, name, target, 0, limits, owner, collected)
    finally:
        os.close(run_fd)
    return collected


def _entry(dir_fd: int, name: str, shown: str, target: Path, depth: int, limits: Limits,
           owner: tuple[int, int] | None, collected: Collected) -> None:
    """Copy one entry of the folder `dir_fd` (shown as `shown`) to `target / name`."""
    if collected.entries >= limits.max_files:
        if collected.entries == limits.max_files:
            collected.leave_out(shown, f"over the limit of {limits.max_files} files; so is the rest")
            collected.entries += 1
        return
    collected.entries += 1
    try:
        with nofollow.as_user(owner):
            seen = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return  # the run did not get as far as writing it
    except OSError as error:
        collected.leave_out(shown, f"could not be read: {error.strerror}")
        return
    if not _plain(name):
        collected.leave_out(shown, "a name that is not plain text")
        return
    if stat.S_ISDIR(seen.st_mode):
        if depth >= limits.max_depth:
            collected.leave_out(shown, f"folders nested deeper than {limits.max_depth}")
            return
        with nofollow.as_user(owner):
            try:
                inner = nofollow.open_dir(name, dir_fd=dir_fd)
            except OSError:
                collected.leave_out(shown, "changed while it was opened")
                return
        try:
            (target / name).mkdir(mode=0o755)
            # Files before folders, so a deep or crowded folder cannot crowd out index.html. Read
            # lazily: a folder of a million names costs no memory, and no work past the limit.
            for folders in (False, True):
                with os.scandir(inner) as entries:
                    for entry in entries:
                        if collected.entries > limits.max_files:
                            break
                        if entry.is_dir(follow_symlinks=False) == folders:
                            _entry(inner, entry.name, f"{shown}/{entry.name}", target / name, depth + 1,
                                   limits, owner, collected)
        finally:
            os.close(inner)
        return
    try:
        with nofollow.as_user(owner):
            fd, status = nofollow.open_file(name, dir_fd)
    except nofollow.Refused as refused:
        collected.leave_out(shown, str(refused))
        return
    except OSError as error:  # not readable by the test's user, or gone meanwhile
        collected.leave_out(shown, f"could not be read: {error.strerror}")
        return
    with os.fdopen(fd, "rb") as source:
        room = limits.max_bytes - collected.bytes
        if status.st_size > room:
            collected.leave_out(shown, f"{status.st_size / MB:.1f} MB would pass the limit of "
                                       f"{limits.max_bytes // MB} MB for a run's report")
            return
        collected.bytes += _copy(source, target / name, room)
        collected.files += 1


def _copy(source: BinaryIO, path: Path, room: int) -> int:
    """Copy at most `room` bytes, however the file may grow meanwhile; returns how many."""
    copied = 0
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644), "wb") as out:
        while copied < room and (chunk := source.read(min(CHUNK, room - copied))):
            out.write(chunk)
            copied += len(chunk)
    return copied


def _plain(name: str) -> bool:
    """A name that will do as an object key and in a URL: UTF-8, no control characters."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.listdir gives undecodable bytes as surrogates
        return False
    return name.isprintable()
