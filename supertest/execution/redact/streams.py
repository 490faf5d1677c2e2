"""Reading and rewriting files a chunk at a time: streams metered against the budget, the windows
that keep back only what could start an occurrence, scanning and copying with secrets replaced,
and writing a file anew through a temporary file beside it."""
from __future__ import annotations

import codecs
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from supertest.execution.redact.limits import _Budget
from supertest.execution.redact.patterns import Matcher, _apply

CHUNK = 1024 * 1024


class _Source(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Metered:
    """A stream that checks the deadline at every read and, when it is read out of an archive
    (`expanded`), spends what it reads from the budget. Reads are CHUNK-sized: this costs
    nothing per byte. An archive's entry is never read more than a byte past the budget."""

    def __init__(self, stream: IO[bytes], budget: _Budget, expanded: bool) -> None:
        self.stream = stream
        self.budget = budget
        self.expanded = expanded

    def read(self, size: int = -1, /) -> bytes:
        if self.expanded:
            most = max(self.budget.left, 0) + 1
            size = most if size < 0 else min(size, most)
        data = self.stream.read(size)
        if self.expanded:
            self.budget.spend(len(data))
        else:
            self.budget.check_time()
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self.stream.seek(offset, whence)

    def __enter__(self) -> _Metered:
        return self

    def __exit__(self, *_: object) -> None:
        self.stream.close()


def _open(path: Path, budget: _Budget) -> _Metered:
    """A file on disk: reading it only takes time."""
    return _Metered(path.open("rb"), budget, expanded=False)


def _scan(source: _Source, matcher: Matcher, limit: int | None = None) -> tuple[bool, bool]:
    """Read a stream (at most `limit` bytes): (whether a secret is in it, whether it is UTF-8)."""
    found = False
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8 = True
    for window in _windows(source, matcher, limit):
        if utf8:
            try:
                decoder.decode(window.fresh, final=window.last)
            except UnicodeDecodeError:
                utf8 = False
        found = found or bool(matcher.spans(window.data, window.stop))
        if found and not utf8:
            break
    return found, utf8


def _copy_redacted(source: _Source, target: IO[bytes], matcher: Matcher, mask: bool, limit: int | None = None) -> None:
    """Copy a stream with every secret replaced (text) or masked (binary), a chunk at a time."""
    for window in _windows(source, matcher, limit):
        spans = matcher.spans(window.data, window.stop)
        cut = window.stop
        for start, end in spans:  # never cut through an occurrence: it is found again next time
            if start < cut < end:
                cut = start if start > 0 else end
        target.write(_apply(window.data[:cut], [(s, e) for s, e in spans if e <= cut], mask))
        window.keep_from(cut)


class _Window:
    """The bytes in hand while streaming: `data`, of which occurrences starting before `stop` are
    whole (an occurrence takes at most `matcher.longest` bytes); `fresh`, the bytes read since the
    last window. What follows `kept` (`stop` unless the reader says) is held for the next window."""

    def __init__(self) -> None:
        self.data = self.fresh = b""
        self.stop = self.kept = 0
        self.last = False

    def keep_from(self, cut: int) -> None:
        self.kept = cut


def _windows(source: _Source, matcher: Matcher, limit: int | None) -> Iterable[_Window]:
    """A stream (at most `limit` bytes of it) as windows of about CHUNK bytes. Memory: a window
    holds CHUNK bytes plus what was held back, normally less than one occurrence's length."""
    window = _Window()
    remaining = limit
    held = fresh = b""
    while True:
        size = CHUNK if remaining is None else min(CHUNK, remaining)
        chunk = source.read(size) if size > 0 else b""
        if remaining is not None:
            remaining -= len(chunk)
        fresh += chunk
        data = held + fresh
        last = not chunk
        stop = len(data) if last else len(data) - (matcher.longest - 1)
        if stop <= 0 and not last:  # not enough yet to tell anything
            continue
        window.data, window.fresh, window.stop, window.kept, window.last = data, fresh, stop, stop, last
        yield window
        if last:
            return
        held, fresh = data[window.kept:], b""


def _rewrite(path: Path, budget: _Budget, copy: Callable[[_Metered, BinaryIO], None]) -> None:
    """Write a new version of `path` through a temporary file beside it, then put it in place."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name[:40]}.", suffix=".redact", dir=path.parent)
    try:
        with open(handle, "wb") as target, _open(path, budget) as source:
            copy(source, target)
        shutil.copymode(path, temporary)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _copy_limited(source: _Source, target: BinaryIO, length: int) -> None:
    while length > 0 and (chunk := source.read(min(CHUNK, length))):
        target.write(chunk)
        length -= len(chunk)
