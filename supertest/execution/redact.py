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
"""
from __future__ import annotations

import base64
import binascii
import codecs
import functools
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
import urllib.parse
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

log = logging.getLogger(__name__)

REPLACEMENT = "[secret]"
MASK = b"*"
CHUNK = 1024 * 1024
ZIP_MAGIC = b"PK\x03\x04"
EMBEDDED_ZIP = b"data:application/zip;base64,"
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")
# Up to this many colour codes (ESC[...m, raw or as \u001b) between two characters of a secret.
_ANSI = rb"(?:(?:\x1b|\\u001[bB]|\\\\u001[bB])\[[0-9;]{0,12}m){0,4}"
_ANSI_MAX = 4 * (len(r"\\u001b") + 1 + 12 + 1)
_JSON_SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t"}
_HTML_NAMED = {"&": ["&amp;"], "<": ["&lt;"], ">": ["&gt;"], '"': ["&quot;"], "'": ["&apos;"]}


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
class Limits:
    """How much redacting may take (see the module's docstring); past any, a file is removed."""

    max_expanded_bytes: int = 1 << 30  # read out of archives, per file, at any depth
    seconds: float = 60.0  # for one redact_folder or redact_file call
    max_depth: int = 3  # archives within each other that we open

    def too_big(self) -> str:
        return f"expands past {_megabytes(self.max_expanded_bytes)} MB while searching its archives for secrets"

    def too_long(self) -> str:
        return f"redaction took longer than {self.seconds:g} s"

    def too_deep(self) -> str:
        return f"archives nested deeper than {self.max_depth}"


DEFAULT_LIMITS = Limits()


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


def _megabytes(size: int) -> str:
    return f"{size >> 20}" if size % (1 << 20) == 0 else f"{size / (1 << 20):.1f}"


@dataclass(frozen=True)
class Matcher:
    """Compiled patterns for a set of secrets: `any` finds where some secret may start, `each`
    tells how far each one reaches from there; `longest` bounds the bytes an occurrence can take."""

    any: re.Pattern[bytes]
    each: tuple[re.Pattern[bytes], ...]
    longest: int

    @classmethod
    def of(cls, secrets: Sequence[str]) -> Matcher | None:
        # Built once per set of secrets: a run redacts every live event and every file with the same set.
        return _matcher(frozenset(secret for secret in secrets if secret))

    def spans(self, data: bytes, stop: int | None = None) -> list[tuple[int, int]]:
        """The stretches covered by occurrences starting before `stop`, merged where they overlap.
        Every start is tried (not only the first of overlapping ones), and at each start the
        furthest-reaching secret counts."""
        stop = len(data) if stop is None else stop
        spans: list[tuple[int, int]] = []
        position = 0
        while position < stop and (found := self.any.search(data, position)) is not None:
            start = found.start()
            if start >= stop:
                break
            end = max((m.end() for pattern in self.each if (m := pattern.match(data, start))), default=start)
            if end > start:
                if spans and start <= spans[-1][1]:
                    spans[-1] = (spans[-1][0], max(spans[-1][1], end))
                else:
                    spans.append((start, end))
            position = start + 1
        return spans

    def replace(self, data: bytes, mask: bool = False) -> bytes:
        return _apply(data, self.spans(data), mask)


@functools.lru_cache(maxsize=8)
def _matcher(secrets: frozenset[str]) -> Matcher | None:
    if not secrets:
        return None
    built = [_secret_pattern(secret) for secret in sorted(secrets, key=len, reverse=True)]
    return Matcher(re.compile(b"|".join(source for source, _ in built)),
                   tuple(re.compile(source) for source, _ in built),
                   max(longest for _, longest in built))


def _apply(data: bytes, spans: Iterable[tuple[int, int]], mask: bool) -> bytes:
    out = []
    done = 0
    for start, end in spans:
        out.append(data[done:start])
        out.append(MASK * (end - start) if mask else REPLACEMENT.encode())
        done = end
    out.append(data[done:])
    return b"".join(out)


def _secret_pattern(secret: str) -> tuple[bytes, int]:
    """A regular expression for one secret in all its forms, and the most bytes it can match."""
    parts = []
    longest = 0
    for char in secret:
        forms = sorted(_char_forms(char), key=lambda form: -form[1])  # longest first: `\\\\` before `\\`
        parts.append(b"(?:" + b"|".join(source for source, _ in forms) + b")")
        longest += forms[0][1]
    longest += _ANSI_MAX * (len(secret) - 1)
    return _ANSI.join(parts), longest


def _char_forms(char: str) -> set[tuple[bytes, int]]:
    """Regex fragments for one character, with the most bytes each can match: raw; JSON-escaped
    once and twice; percent-encoded (also its JSON escapes); HTML-escaped."""
    raw = char.encode("utf-8", "surrogatepass")
    forms = {(re.escape(raw), len(raw))}
    hexes = [f"{unit:04x}" for unit in _utf16_units(char)]
    escapes = ["".join(f"\\u{h}" for h in hexes)]  # JSON escapes of the character, once
    forms.add((b"".join(rb"\\u" + _hex(h) for h in hexes), 6 * len(hexes)))
    forms.add((b"".join(rb"\\\\u" + _hex(h) for h in hexes), 7 * len(hexes)))  # and twice
    if char in _JSON_SHORT:
        escapes.append(_JSON_SHORT[char])
        for escaped in (_JSON_SHORT[char], json.dumps(_JSON_SHORT[char])[1:-1]):
            forms.add((re.escape(escaped.encode()), len(escaped)))
    forms.add((b"".join(b"%" + _hex(f"{byte:02X}") for byte in raw), 3 * len(raw)))
    if char == " ":
        forms.add((re.escape(b"+"), 1))
    for escaped in escapes:  # a URL carrying JSON
        encoded = urllib.parse.quote(escaped, safe="").encode()
        forms.add((re.escape(encoded), len(encoded)))
    for named in _HTML_NAMED.get(char, []):
        forms.add((re.escape(named.encode()), len(named)))
    if not (char.isascii() and char.isalnum()):
        forms.add((f"&#0{{0,4}}{ord(char)};".encode(), 16))
        forms.add((b"&#[xX]0{0,4}" + _hex(f"{ord(char):x}") + b";", 16))
    return forms


def _hex(digits: str) -> bytes:
    """Hex digits matching in either case."""
    return "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in digits).encode()


def _utf16_units(char: str) -> list[int]:
    data = char.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


# --- limits ----------------------------------------------------------------------------------------

class _Exceeded(Exception):
    """A limit was passed (not an OSError nor a zip error: nothing must catch it on the way up)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Budget:
    """What is left while redacting one file: of the bytes it may read out of archives (its
    own), and of the time (the deadline, which a folder's files share)."""

    def __init__(self, limits: Limits, deadline: float) -> None:
        self.limits = limits
        self.left = limits.max_expanded_bytes
        self.deadline = deadline

    def check_time(self) -> None:
        if time.monotonic() >= self.deadline:
            raise _Exceeded(self.limits.too_long())

    def spend(self, size: int) -> None:
        """Count `size` bytes read out of an archive; called before they are written anywhere."""
        self.left -= size
        if self.left < 0:
            raise _Exceeded(self.limits.too_big())
        self.check_time()

    def afford(self, declared: int) -> None:
        """Refuse at once an entry that says it is bigger than what is left. (Only this way: a
        smaller declared size is no promise, spend() counts what is really read.)"""
        if declared > self.left:
            raise _Exceeded(self.limits.too_big())

    def enter(self, depth: int) -> None:
        """Before opening an archive at `depth` (the file itself is 0)."""
        if depth >= self.limits.max_depth:
            raise _Exceeded(self.limits.too_deep())


class _Source(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Metered:
    """A stream that checks the deadline at every read and, when it is read out of an archive
    (`expanded`), spends what it reads from the budget. Reads are CHUNK-sized: this costs
    nothing per byte. An archive's entry is never read more than a byte past the budget."""

    def __init__(self, stream: BinaryIO, budget: _Budget, expanded: bool) -> None:
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


def _entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> _Metered:
    """An archive's entry, decompressed: what is read of it is spent."""
    return _Metered(archive.open(info), budget, expanded=True)


# --- streams ---------------------------------------------------------------------------------------

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


def _copy_redacted(source: _Source, target: BinaryIO, matcher: Matcher, mask: bool, limit: int | None = None) -> None:
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


# --- files -----------------------------------------------------------------------------------------

def _redact_file(path: Path, matcher: Matcher, budget: _Budget, depth: int) -> bool:
    with _open(path, budget) as source:
        head = source.read(len(ZIP_MAGIC))
    if head == ZIP_MAGIC:
        # Searched as binary instead, a zip deeper than we open would keep what its compressed
        # entries hold: it is refused.
        budget.enter(depth)
        try:
            return _redact_zip(path, matcher, budget, depth)
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError) as error:
            # Not a zip after all, or one we cannot read (encrypted, odd compression, damaged): its
            # raw bytes are still searched below, which is all we can do. (OSError, a full disk
            # say, is not caught: the caller must not keep a file it could not redact; nor is a
            # limit passed, _Exceeded.)
            log.warning("%s: cannot read it as a zip (%s); searching it as a binary file", path, error)
    with _open(path, budget) as source:
        found, utf8 = _scan(source, matcher)
    embedded = utf8 and depth < budget.limits.max_depth and _embedded_zips(path, budget)
    if not found and not embedded:
        return False
    if embedded:
        return _redact_with_embedded_zips(path, matcher, embedded, budget, depth)
    _rewrite(path, budget, lambda source, target: _copy_redacted(source, target, matcher, mask=not utf8))
    return True


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


def _redact_zip(path: Path, matcher: Matcher, budget: _Budget, depth: int) -> bool:
    """Search every entry; if a secret is in any, write the zip again with those entries
    redacted and the others as they were (same names, order, dates, compression)."""
    # Entry number (names may repeat in a zip) → ("text" | "binary" | "zip", the redacted zip extracted).
    plan: dict[int, tuple[str, Path | None]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for number, info in enumerate(archive.infolist()):
                if info.is_dir():
                    continue
                budget.afford(info.file_size)
                with _entry(archive, info, budget) as entry:
                    head = entry.read(len(ZIP_MAGIC))
                if head == ZIP_MAGIC:
                    budget.enter(depth + 1)  # before extracting it: no work for one we refuse
                    extracted = _extract(archive, info, path.parent, budget)
                    plan[number] = ("zip", extracted)
                    try:
                        if not _redact_file(extracted, matcher, budget, depth + 1):
                            del plan[number]
                            os.unlink(extracted)
                    except BaseException:
                        os.unlink(extracted)
                        raise
                    continue
                with _entry(archive, info, budget) as entry:
                    found, utf8 = _scan(entry, matcher)
                if found:
                    plan[number] = ("text" if utf8 else "binary", None)
        if not plan:
            return False
        with zipfile.ZipFile(path) as archive:
            _rewrite(path, budget, lambda _, target: _write_zip(archive, target, plan, matcher, budget))
        return True
    finally:
        for _, extracted in plan.values():
            if extracted is not None and extracted.exists():
                os.unlink(extracted)


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, folder: Path, budget: _Budget) -> Path:
    handle, name = tempfile.mkstemp(prefix=".entry.", suffix=".zip.redact", dir=folder)
    try:
        with open(handle, "wb") as target, _entry(archive, info, budget) as entry:
            shutil.copyfileobj(entry, target, CHUNK)  # stops with _Exceeded once the budget is spent
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def _write_zip(archive: zipfile.ZipFile, target: BinaryIO, plan: dict[int, tuple[str, Path | None]],
               matcher: Matcher, budget: _Budget) -> None:
    with zipfile.ZipFile(target, "w") as output:
        output.comment = archive.comment
        for number, info in enumerate(archive.infolist()):
            copy = zipfile.ZipInfo(info.filename, info.date_time)
            copy.compress_type = info.compress_type
            copy.external_attr = info.external_attr
            copy.create_system = info.create_system
            copy.comment = info.comment
            if info.is_dir():
                output.writestr(copy, b"")
                continue
            kind, extracted = plan.get(number, ("same", None))
            big = info.file_size > 1 << 30
            with output.open(copy, "w", force_zip64=big) as entry:
                if extracted is not None:
                    with _open(extracted, budget) as source:
                        shutil.copyfileobj(source, entry, CHUNK)
                    continue
                budget.afford(info.file_size)  # read out of the archive a second time: it counts again
                with _entry(archive, info, budget) as source:
                    if kind == "same":
                        shutil.copyfileobj(source, entry, CHUNK)
                    else:
                        _copy_redacted(source, entry, matcher, mask=kind == "binary")


def _embedded_zips(path: Path, budget: _Budget) -> list[tuple[int, int]]:
    """Where a text file carries zips as `data:application/zip;base64,...`: (start, end) of each
    run of base64 after that prefix. The report's index.html has one, at its end."""
    spans = []
    start: int | None = None  # inside a run of base64 that began there
    offset = 0  # of the chunk in the file
    tail = b""  # the end of what was read, in case the prefix is cut in two
    with _open(path, budget) as source:
        while chunk := source.read(CHUNK):
            at = 0
            while at < len(chunk):
                if start is None:
                    data = tail + chunk[at:]
                    found = data.find(EMBEDDED_ZIP)
                    if found < 0:
                        tail = data[-(len(EMBEDDED_ZIP) - 1):]
                        break
                    start = offset + at - len(tail) + found + len(EMBEDDED_ZIP)
                    at, tail = start - offset, b""
                else:
                    end = _NOT_BASE64.search(chunk, at)
                    if end is None:
                        break
                    spans.append((start, offset + end.start()))
                    start, at = None, end.start()
            offset += len(chunk)
    if start is not None:
        spans.append((start, offset))
    return [(begin, end) for begin, end in spans if end > begin]


def _redact_with_embedded_zips(path: Path, matcher: Matcher, spans: list[tuple[int, int]], budget: _Budget,
                               depth: int) -> bool:
    """Redact a text file around its embedded zips, and each zip by decoding it to a temporary
    file, redacting that and encoding it again (it stays as it was when it had no secret). A run of
    base64 that does not decode is text like the rest."""
    zips: list[tuple[int, int, Path | None]] = []  # (start, end, the redacted zip if it changed)
    try:
        with _open(path, budget) as source:
            for start, end in spans:
                source.seek(start)
                handle, name = tempfile.mkstemp(prefix=".embedded.", suffix=".zip.redact", dir=path.parent)
                decoded = Path(name)
                try:
                    with open(handle, "wb") as target:
                        _decode_base64(source, target, end - start, budget)
                    changed = _redact_file(decoded, matcher, budget, depth + 1)
                except binascii.Error:
                    os.unlink(decoded)
                    continue
                except BaseException:
                    os.unlink(decoded)
                    raise
                if not changed:
                    os.unlink(decoded)
                zips.append((start, end, decoded if changed else None))
            found_outside = False
            done = 0
            for start, end, _ in [*zips, (os.path.getsize(path), 0, None)]:
                source.seek(done)
                found_outside = found_outside or _scan(source, matcher, start - done)[0]
                done = end
        if not found_outside and not any(decoded for _, _, decoded in zips):
            return False

        def copy(source: _Metered, target: BinaryIO) -> None:
            done = 0
            for start, end, decoded in zips:
                source.seek(done)
                _copy_redacted(source, target, matcher, mask=False, limit=start - done)
                if decoded is None:
                    source.seek(start)
                    _copy_limited(source, target, end - start)
                else:
                    with _open(decoded, budget) as zipped:
                        _encode_base64(zipped, target)
                done = end
            source.seek(done)
            _copy_redacted(source, target, matcher, mask=False)

        _rewrite(path, budget, copy)
        return True
    finally:
        for _, _, decoded in zips:
            if decoded is not None and decoded.exists():
                os.unlink(decoded)


def _decode_base64(source: _Source, target: BinaryIO, length: int, budget: _Budget) -> None:
    """Decode `length` bytes of base64; what it decodes to is spent, as if read out of an archive."""
    pending = b""
    while length > 0:
        chunk = source.read(min(CHUNK, length))
        if not chunk:
            break
        length -= len(chunk)
        pending += chunk
        whole = len(pending) - len(pending) % 4
        decoded = base64.b64decode(pending[:whole], validate=True)
        budget.spend(len(decoded))
        target.write(decoded)
        pending = pending[whole:]
    if pending:
        decoded = base64.b64decode(pending + b"=" * (-len(pending) % 4), validate=True)
        budget.spend(len(decoded))
        target.write(decoded)


def _encode_base64(source: _Source, target: BinaryIO) -> None:
    while chunk := source.read(CHUNK - CHUNK % 3):  # whole groups of 3 bytes: no padding midway
        target.write(base64.b64encode(chunk))


def _copy_limited(source: _Source, target: BinaryIO, length: int) -> None:
    while length > 0 and (chunk := source.read(min(CHUNK, length))):
        target.write(chunk)
        length -= len(chunk)
