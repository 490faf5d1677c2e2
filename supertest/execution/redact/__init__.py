"""Secrets out of what we store: a test's secret values are replaced by `[secret]` in text, and in
every file of a run's folder (the Playwright HTML report with its traces) before it is uploaded.

What a secret is found as, character by character, so any mix of these forms in one occurrence:
- itself (as UTF-8 bytes);
- JSON-escaped once or twice, the way JSON.stringify and json.dumps write it inside a string:
  `\\"`, `\\\\`, `\\/`, `\\n`..., `\\u00e9` in either case, surrogate pairs for emoji; twice is
  what Playwright stores for an expect failure (`Received: \\"s3cr\\\\\\"et\\"`, a quoted value
  inside a JSON string);
- percent-encoded (UTF-8 bytes as %XX in either case, `+` for a space), as in a URL's query;
- HTML-escaped (&amp; &lt; &gt; &quot; &#39; &apos; and numeric references), as in page.content();
- with ANSI colour codes between its characters (raw or JSON-escaped): expect's diff highlights
  the part of a received string that differs, which cuts a secret into pieces.
Where occurrences of one or several secrets overlap, the whole stretch they cover is replaced.

Not found: a secret that a test transforms (base64, hex, reversed, split, upper-cased, hashed,
compressed: a gzip body, a zip the test attaches is searched though, see below), a text file in
another encoding than UTF-8 (UTF-16...), a secret inside base64 that we do not decode (a data:
URL in a DOM snapshot, except the report's own embedded zip), and pixels: a secret shown on a
page is in the screenshots, the video and the trace's screencast frames, and stays there.

Files: text (anything that is valid UTF-8) gets `[secret]`; zips (any file or entry starting
with a local file header: traces, attachments) are searched entry by entry and rewritten with the
same names, order, dates and compression; the report's index.html has its data as a base64 zip
in `<template id="playwrightReportBase64">data:application/zip;base64,...</template>` (1.65;
older versions had `window.playwrightReportBase64 = "data:application/zip;base64,..."`), which
is decoded, redacted and put back. Any other file (png, jpeg, webm) is binary: it is searched
too, and an occurrence of a secret's bytes is overwritten with as many `*`, so that offsets in
the file stay right; in practice that never happens, as pixels and compressed data do not spell
a secret.

Memory stays bounded whatever the size of a file: everything is read in CHUNK-sized pieces,
keeping back only what could be the start of an occurrence, and rewritten through a temporary
file next to it (a zip entry that is itself a zip is extracted to one). A file with no secret in
it is read once and left as it is, byte for byte.

Limits: what a run leaves behind is hostile input (its test wrote it, and we run as root), and a
few KB of zip in a zip in a zip can hold gigabytes of zeros. So the work is bounded by `Limits`:
- `max_expanded_bytes`, per file: every byte read out of an archive, at any depth, counts (an
  entry scanned, extracted to a temporary file, or read again to write the zip anew, and the
  report's embedded base64 zip as it is decoded). It is counted as it is read, a chunk at a time,
  so no temporary file grows past it; a zip's declared sizes are not trusted, they only let us
  refuse an entry early that already says it is bigger than what is left;
- `seconds`: one deadline (time.monotonic) for a whole call, a folder's files together,
  checked at every read. It is what bounds the time: searching runs at 100 MB/s and more on
  ordinary bytes, but a test that knows a secret can fill a file with its first character and
  make that ten times slower;
- `max_depth`: how many archives within each other we open (a zip in a zip in the report's
  embedded zip is 3); a zip deeper than that cannot be searched, since its entries are compressed.
Past any of them the file being redacted is removed, never kept as it was (past the deadline,
every file not redacted yet is too), and redact_folder says which and why, in words for the user
(redact_file raises Unredactable). Temporary files are removed on every path. A legitimate
report (trace zips of tens of MB, a job's many traces) stays well within DEFAULT_LIMITS.

Only regular files are opened, as lstat tells (a link is not followed, a FIFO would block us
forever, a device is endless); a file with other hard links is removed (its directory entry
only), since it is also somewhere else that we do not redact.

A very short secret (one or two characters) is found everywhere and leaves the report broken:
the form that takes secrets should ask for a length that makes that unlikely.

Here: the public API. Its parts, each importing only those listed before it: patterns.py (a
secret's forms, Matcher), limits.py (Limits, and the budget and deadline counted while reading),
streams.py (chunked reading, scanning and copying), archives.py (a file by its kind: zips and the
report's embedded zip).
"""
from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supertest.execution.redact.archives import _redact_file
from supertest.execution.redact.limits import DEFAULT_LIMITS, Limits, _Budget, _Exceeded
from supertest.execution.redact.patterns import REPLACEMENT, Matcher

__all__ = ["DEFAULT_LIMITS", "REPLACEMENT", "Limits", "Matcher", "Redacted", "Unredactable", "redact_bytes",
           "redact_file", "redact_folder", "redact_json", "redact_text"]

log = logging.getLogger(__name__)


def redact_text(text: str, secrets: Sequence[str]) -> str:
    """`text` with every occurrence of every secret, in any of the forms above, as `[secret]`."""
    matcher = Matcher.of(secrets)
    if matcher is None:
        return text
    return matcher.replace(text.encode("utf-8", "surrogatepass")).decode("utf-8", "surrogatepass")


def redact_json(data: Any, secrets: Sequence[str]) -> Any:
    """A JSON-able value (a live event's data) with every secret in its strings as `[secret]`."""
    if not any(secrets):
        return data
    return json.loads(redact_text(json.dumps(data), secrets))


def redact_bytes(data: bytes, secrets: Sequence[str]) -> bytes:
    """Text-like bytes (UTF-8, or ASCII-compatible) with every secret as `[secret]`. The length
    changes: for binary formats, whose offsets must hold, redact_file masks instead."""
    matcher = Matcher.of(secrets)
    return data if matcher is None else matcher.replace(data)


@dataclass(frozen=True)
class Redacted:
    """What redact_folder did: the files it rewrote, and those it removed, with why."""

    changed: list[Path] = field(default_factory=list)
    dropped: list[tuple[Path, str]] = field(default_factory=list)


class Unredactable(Exception):
    """A file could not be redacted within its limits, and has been removed; `reason` says why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path.name}: {reason}")
        self.path = path
        self.reason = reason


def redact_file(path: Path, secrets: Sequence[str], limits: Limits = DEFAULT_LIMITS) -> bool:
    """Rewrite one file in place so that no secret remains in it (see the module's docstring for
    how text, zips, the report's index.html and binary files are treated). True if it changed.
    Past `limits` the file is removed and Unredactable raised, as it is when it has other hard
    links. Anything but a regular file (a link, a FIFO) is not touched: False."""
    matcher = Matcher.of(secrets)
    path = Path(path)
    status = _regular(path)
    if matcher is None or status is None:
        return False
    return _redact_within(path, status, matcher, limits, time.monotonic() + limits.seconds)


def redact_folder(folder: Path, secrets: Sequence[str], limits: Limits = DEFAULT_LIMITS) -> Redacted:
    """Redact every regular file under `folder` (a run's report folder, or the run folder whose
    files we keep), in place. Symbolic links, FIFOs, sockets and devices are neither followed,
    opened nor touched; `folder` itself, when it is a link, is removed rather than walked. Each
    file has `limits.max_expanded_bytes` of its own; `limits.seconds` is for them all. Returns the
    files that changed, and those removed (see the module's docstring), with why."""
    matcher = Matcher.of(secrets)
    redacted = Redacted()
    if matcher is None:
        return redacted
    folder = Path(folder)
    try:
        if stat.S_ISLNK(os.lstat(folder).st_mode):
            # os.walk would follow it: a test can put a link to / where its report should be.
            folder.unlink()
            redacted.dropped.append((folder, "a symbolic link, not a folder"))
            return redacted
    except FileNotFoundError:
        return redacted
    deadline = time.monotonic() + limits.seconds
    for root, dirs, files in os.walk(folder):  # os.walk does not follow linked folders
        dirs.sort()
        for name in sorted(files):
            path = Path(root, name)
            status = _regular(path)
            if status is None:
                continue
            try:
                if _redact_within(path, status, matcher, limits, deadline):
                    redacted.changed.append(path)
            except Unredactable as error:
                redacted.dropped.append((path, error.reason))
    return redacted


def _regular(path: Path) -> os.stat_result | None:
    """The status of `path` itself (lstat) if it is a regular file, else None: never open the
    rest, a FIFO blocks whoever opens it until someone writes to it."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return None
    return status if stat.S_ISREG(status.st_mode) else None


def _redact_within(path: Path, status: os.stat_result, matcher: Matcher, limits: Limits, deadline: float) -> bool:
    """Redact a regular file with a budget of its own; past a limit, remove it (never keep it as
    it was) and raise Unredactable."""
    if status.st_nlink > 1:
        # Rewriting it would leave its other names as they were, and those may be outside the
        # folder: removing this name (unlink touches no other) is all we may do.
        log.warning("%s: removed, as it has other hard links", path)
        path.unlink(missing_ok=True)
        raise Unredactable(path, "a hard link to a file that has other names, which are not redacted")
    budget = _Budget(limits, deadline)
    try:
        budget.check_time()  # past the deadline, a folder's remaining files are not even opened
        return _redact_file(path, matcher, budget, depth=0)
    except _Exceeded as error:
        log.warning("%s: removed, as it could not be redacted: %s", path, error.reason)
        path.unlink(missing_ok=True)
        raise Unredactable(path, error.reason) from None
