"""Redacting one file by its kind: a zip entry by entry (rewritten with the same names, order,
dates and compression), a text file with the report's embedded base64 zip decoded, redacted and
encoded again, anything else as text or masked binary. _redact_file is here with the zips, as
they are searched through each other: an entry that is a zip is a file like any other."""
from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import shutil
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from supertest.execution.redact.limits import _Budget, _Exceeded
from supertest.execution.redact.patterns import Matcher
from supertest.execution.redact.streams import (
    CHUNK,
    _copy_limited,
    _copy_redacted,
    _Metered,
    _open,
    _rewrite,
    _scan,
    _Source,
)

# The package's logger: these warnings are named supertest.execution.redact, like the rest of redaction's.
log = logging.getLogger(__package__)

ZIP_MAGIC = b"PK\x03\x04"
# zipfile reads a zip's whole central directory into objects before the first entry is opened, so
# its size is checked first, from the end record: a trace's lists a few thousand entries.
MAX_ZIP_DIRECTORY = 8 * 1024 * 1024
MAX_ZIP_ENTRIES = 100_000
MAX_EMBEDDED_ZIPS = 16  # data: URLs of zips in one text file; the report's index.html has one
END_RECORD, ZIP64_LOCATOR, ZIP64_END_RECORD = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"
EMBEDDED_ZIP = b"data:application/zip;base64,"
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")


def _check_directory(path: Path) -> None:
    """Refuse a zip whose central directory is too big to read (see MAX_ZIP_DIRECTORY), as its end
    record (or the zip64 one) declares it; zipfile reads no more than that. Without an end record
    it is left to zipfile to refuse."""
    with path.open("rb") as file:
        size = file.seek(0, os.SEEK_END)
        file.seek(max(0, size - (1 << 16) - 22))  # the record, after a comment of at most 64 KB
        tail = file.read()
        at = tail.rfind(END_RECORD)
        if at < 0 or len(tail) - at < 22:
            return
        entries, directory = struct.unpack("<HI", tail[at + 10:at + 16])
        locator = tail.rfind(ZIP64_LOCATOR, 0, at)
        if (entries == 0xFFFF or directory == 0xFFFFFFFF) and locator >= 0 and at - locator >= 20:
            file.seek(struct.unpack("<Q", tail[locator + 8:locator + 16])[0])
            record = file.read(56)
            if record[:4] == ZIP64_END_RECORD and len(record) == 56:
                entries, directory = struct.unpack("<QQ", record[32:48])
    if entries > MAX_ZIP_ENTRIES or directory > MAX_ZIP_DIRECTORY:
        raise _Exceeded(f"a zip whose directory lists {entries} entries in {directory // (1 << 20)} MB, "
                        f"more than the {MAX_ZIP_ENTRIES} entries or {MAX_ZIP_DIRECTORY >> 20} MB searched for secrets")


def _entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> _Metered:
    """An archive's entry, decompressed: what is read of it is spent."""
    return _Metered(archive.open(info), budget, expanded=True)


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


def _redact_zip(path: Path, matcher: Matcher, budget: _Budget, depth: int) -> bool:
    """Search every entry; if a secret is in any, write the zip again with those entries
    redacted and the others as they were (same names, order, dates, compression)."""
    # Entry number (names may repeat in a zip) → ("text" | "binary" | "zip", the redacted zip extracted).
    plan: dict[int, tuple[str, Path | None]] = {}
    _check_directory(path)
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
        for _, leftover in plan.values():
            if leftover is not None and leftover.exists():
                os.unlink(leftover)


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
    run of base64 after that prefix. The report's index.html has one, at its end; a file with more
    than MAX_EMBEDDED_ZIPS is refused. Linear in the file's size: each chunk is searched from
    where the last find left off, with only the prefix's length carried over between chunks."""
    spans: list[tuple[int, int]] = []
    start: int | None = None  # inside a run of base64 that began there
    offset = 0  # of the chunk in the file
    tail = b""  # the end of the last chunk, in case the prefix is cut in two
    with _open(path, budget) as source:
        while chunk := source.read(CHUNK):
            data, base = tail + chunk, offset - len(tail)  # data begins at `base` in the file
            at = 0
            while at < len(data):
                if start is None:
                    found = data.find(EMBEDDED_ZIP, at)
                    if found < 0:
                        break
                    at = found + len(EMBEDDED_ZIP)
                    start = base + at
                else:
                    end = _NOT_BASE64.search(data, at)
                    if end is None:
                        break
                    spans.append((start, base + end.start()))
                    if len(spans) > MAX_EMBEDDED_ZIPS:
                        raise _Exceeded(f"more than {MAX_EMBEDDED_ZIPS} embedded zips to search for secrets")
                    start, at = None, end.start()
            # A prefix cannot hide in what is kept (one byte shorter than it), so none is found twice.
            tail = data[-(len(EMBEDDED_ZIP) - 1):] if start is None else b""
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
        for _, _, leftover in zips:
            if leftover is not None and leftover.exists():
                os.unlink(leftover)


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
