"""Secrets are replaced by `[secret]` in text and in every stored file of a run: unit tests of the
forms a secret takes, then a real Playwright HTML report (traces, attachments, the embedded
report zip) that still opens, report and trace viewer, once redacted. No app services needed."""
from __future__ import annotations

import base64
import functools
import html
import http.server
import io
import json
import os
import re
import shutil
import threading
import time
import types
import urllib.parse
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from supertest import config
from supertest.execution import redact, runner, workspace
from supertest.execution.redact import (
    Limits,
    Redacted,
    Unredactable,
    archives,
    limits,
    redact_bytes,
    redact_file,
    redact_folder,
    redact_text,
    streams,
)

SECRET = "S3cr3t-Sup3r \"qu0te\\back\" <tag> & é€ 🔑/x+y 'z'"
# No secret form can leave this out: it is the same raw, escaped and encoded. Not finding even
# this shows no occurrence was cut short (by a colour code, a truncation) and half left behind.
SECRET_PREFIX = SECRET.split(" ")[0]
ZIP_TEMPLATE = re.compile(rb'<template id="playwrightReportBase64">data:application/zip;base64,([A-Za-z0-9+/=]*)'
                          rb'</template>')


def forms(secret: str) -> dict[str, bytes]:
    """The ways a secret is written down in the files Playwright stores."""
    json_once = json.dumps(secret, ensure_ascii=False)[1:-1]
    return {
        "raw": secret,
        "JSON": json_once,
        "JSON, ASCII": json.dumps(secret)[1:-1],
        "JSON twice": json.dumps(json_once, ensure_ascii=False)[1:-1],
        "JSON twice, ASCII": json.dumps(json.dumps(secret)[1:-1])[1:-1],
        "URL": urllib.parse.quote(secret, safe=""),
        "URL path": urllib.parse.quote(secret),
        "URL, lower-case hex": re.sub("%..", lambda escape: escape[0].lower(), urllib.parse.quote(secret, safe="")),
        "form": urllib.parse.quote_plus(secret),
        "encodeURIComponent": urllib.parse.quote(secret, safe="-_.!~*'()"),
        "URL of JSON": urllib.parse.quote(json_once, safe=""),
        "HTML": html.escape(secret),
        "HTML, as the page wrote it": html.escape(secret).replace("&#x27;", "&#39;"),
        "HTML numeric": "".join(c if c.isascii() and c.isalnum() else f"&#{ord(c)};" for c in secret),
        "coloured": "\x1b[31m".join(secret[:5]) + "\x1b[7m" + secret[5:],  # codes inside it, as a diff puts them
        "coloured, JSON": json.dumps(secret[:6] + "\x1b[7m" + secret[6:])[1:-1],
    }


@pytest.mark.parametrize("form", forms(SECRET))
def test_every_form_of_a_secret_is_replaced(form: str) -> None:
    written = forms(SECRET)[form]
    text = f'{{"message": "before {written} after", "again": "{written}"}}'
    assert written in text and text != redact_text(text, [SECRET])
    assert redact_text(text, [SECRET]) == '{"message": "before [secret] after", "again": "[secret]"}'


def test_a_json_string_stays_json() -> None:
    document = json.dumps({"a": f"x {SECRET} y", "b": json.dumps({"inner": SECRET}), "c": SECRET + "\\"})
    redacted = json.loads(redact_text(document, [SECRET]))
    assert redacted == {"a": "x [secret] y", "b": json.dumps({"inner": "[secret]"}), "c": "[secret]\\"}


def test_overlapping_and_repeated_secrets_leave_nothing_of_either() -> None:
    assert redact_text("xabcdef and xab and abcdef", ["abcdef", "xab"]) == "[secret] and [secret] and [secret]"
    assert redact_text("abcabcabc", ["abcabc"]) == "[secret]"
    assert redact_text("token=hunter2hunter2;", ["hunter2"]) == "token=[secret];"
    assert redact_text("a-secret-key", ["secret", "a-secret"]) == "[secret]-key"


def test_no_secrets_or_empty_ones_change_nothing() -> None:
    text = "nothing to see é \\u00e9 %41 &amp;"
    assert redact_text(text, []) == text
    assert redact_text(text, ["", ""]) == text
    assert redact_text(text, ["absent"]) == text
    assert redact_bytes(b"\xff\x00binary", ["absent"]) == b"\xff\x00binary"


def test_a_secret_is_case_sensitive_but_its_escapes_are_not() -> None:
    assert redact_text("Hunter2 hunter2", ["hunter2"]) == "Hunter2 [secret]"
    assert redact_text("p%C3%a9 p\\u00E9", ["pé"]) == "[secret] [secret]"


def test_redact_bytes_replaces_in_text_like_bytes() -> None:
    assert redact_bytes(b"log: " + SECRET.encode() + b"\n", [SECRET]) == b"log: [secret]\n"


def read_in_chunks_of(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make redaction read `size` bytes at a time: CHUNK, in each module that reads by it."""
    for module in (streams, archives):
        monkeypatch.setattr(module, "CHUNK", size)


def test_a_file_without_a_secret_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "clean.txt"
    path.write_bytes(b"nothing here\n" * 1000)
    before = path.stat()
    assert not redact_file(path, [SECRET])
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize("chunk", [7, 100, 4096])
def test_streaming_finds_secrets_across_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         chunk: int) -> None:
    """Files are read a chunk at a time: an occurrence cut by a chunk's end is still found."""
    read_in_chunks_of(chunk, monkeypatch)
    escaped = json.dumps(SECRET)[1:-1]
    text = "".join(f"{'.' * offset}{SECRET}|{escaped}|" for offset in range(0, 300, 7)) + "end"
    path = tmp_path / "log.txt"
    path.write_text(text, encoding="utf-8")
    assert redact_file(path, [SECRET, "end"])
    assert path.read_text(encoding="utf-8") == redact_text(text, [SECRET, "end"])
    assert SECRET_PREFIX not in path.read_text(encoding="utf-8")


def test_a_binary_file_is_masked_keeping_its_length(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    data = b"\x89PNG\r\n\x1a\n\xff\xfe" + SECRET.encode() + b"\x00\xff tail"
    path.write_bytes(data)
    assert redact_file(path, [SECRET])
    masked = path.read_bytes()
    assert len(masked) == len(data) and SECRET.encode() not in masked
    assert masked == data.replace(SECRET.encode(), b"*" * len(SECRET.encode()))


def make_zip(path: Path, entries: list[tuple[str, bytes, int]]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data, compression in entries:
            info = zipfile.ZipInfo(name, (2024, 5, 6, 7, 8, 10))
            info.compress_type = compression
            archive.writestr(info, data)


def test_zip_entries_are_redacted_keeping_names_order_dates_and_compression(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("deep.txt", "deep " + SECRET)
    entries = [
        ("test.trace", json.dumps({"title": f"step {SECRET}"}).encode() + b"\n", zipfile.ZIP_DEFLATED),
        ("resources/abc.jpeg", b"\xff\xd8\xff\xe0 " + SECRET.encode() + b"\xff\xd9", zipfile.ZIP_DEFLATED),
        ("folder/", b"", zipfile.ZIP_STORED),
        ("stored.txt", SECRET.encode(), zipfile.ZIP_STORED),
        ("nested.zip", inner.getvalue(), zipfile.ZIP_STORED),
        ("untouched.bin", bytes(range(256)), zipfile.ZIP_DEFLATED),
    ]
    path = tmp_path / "trace.zip"
    make_zip(path, entries)
    assert redact_file(path, [SECRET])
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        infos = archive.infolist()
        assert [(i.filename, i.compress_type, i.date_time) for i in infos] == [
            (name, compression, (2024, 5, 6, 7, 8, 10)) for name, _, compression in entries]
        assert json.loads(archive.read("test.trace")) == {"title": "step [secret]"}
        jpeg = archive.read("resources/abc.jpeg")
        assert len(jpeg) == len(entries[1][1]) and SECRET.encode() not in jpeg
        assert archive.read("stored.txt") == b"[secret]"
        with zipfile.ZipFile(io.BytesIO(archive.read("nested.zip"))) as nested:
            assert nested.read("deep.txt") == b"deep [secret]"
        assert archive.read("untouched.bin") == bytes(range(256))


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_entries_of_the_same_name_are_each_redacted(tmp_path: Path) -> None:
    path = tmp_path / "twice.zip"
    make_zip(path, [("a.txt", b"clean", zipfile.ZIP_DEFLATED), ("a.txt", SECRET.encode(), zipfile.ZIP_DEFLATED)])
    assert redact_file(path, [SECRET])
    with zipfile.ZipFile(path) as archive:
        assert [archive.open(info).read() for info in archive.infolist()] == [b"clean", b"[secret]"]


def test_a_zip_without_the_secret_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "trace.zip"
    make_zip(path, [("a.txt", b"hello", zipfile.ZIP_DEFLATED)])
    data = path.read_bytes()
    assert not redact_file(path, [SECRET])
    assert path.read_bytes() == data


def test_an_embedded_base64_zip_is_decoded_redacted_and_put_back(tmp_path: Path) -> None:
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("report.json", json.dumps({"title": SECRET}))
    encoded = base64.b64encode(zipped.getvalue()).decode()
    page = (f"<html><body>{html.escape(SECRET)}</body></html>\n<template id=\"playwrightReportBase64\">"
            f"data:application/zip;base64,{encoded}</template><p>data:application/zip;base64,not*base64</p>")
    path = tmp_path / "index.html"
    path.write_text(page, encoding="utf-8")
    assert redact_file(path, [SECRET])
    redacted = path.read_bytes()
    assert redacted.startswith(b"<html><body>[secret]</body></html>")
    assert redacted.endswith(b"</template><p>data:application/zip;base64,not*base64</p>")
    embedded = base64.b64decode(ZIP_TEMPLATE.search(redacted).group(1))
    with zipfile.ZipFile(io.BytesIO(embedded)) as archive:
        assert json.loads(archive.read("report.json")) == {"title": "[secret]"}


def test_a_damaged_zip_is_searched_as_binary(tmp_path: Path) -> None:
    path = tmp_path / "broken.zip"
    data = b"PK\x03\x04\xff\xfe not really a zip " + SECRET.encode()
    path.write_bytes(data)
    assert redact_file(path, [SECRET])
    assert path.read_bytes() == data.replace(SECRET.encode(), b"*" * len(SECRET.encode()))


def test_links_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file.txt").write_text(SECRET, encoding="utf-8")
    run = tmp_path / "run"
    (run / "report").mkdir(parents=True)
    (run / "report" / "log.txt").write_text(SECRET, encoding="utf-8")
    os.symlink(outside, run / "node_modules", target_is_directory=True)
    os.symlink(outside / "file.txt", run / "report" / "link.txt")
    assert redact_folder(run, [SECRET]) == Redacted(changed=[run / "report" / "log.txt"], dropped=[])
    assert (outside / "file.txt").read_text(encoding="utf-8") == SECRET


def test_a_fifo_is_not_opened_and_a_hard_link_is_removed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text(SECRET, encoding="utf-8")
    report = tmp_path / "report"
    report.mkdir()
    os.mkfifo(report / "fifo")  # opening it would wait for a writer, forever
    os.link(outside, report / "linked.txt")
    (report / "log.txt").write_text(SECRET, encoding="utf-8")
    done: list[Redacted] = []
    thread = threading.Thread(target=lambda: done.append(redact_folder(report, [SECRET])), daemon=True)
    thread.start()
    thread.join(timeout=10)
    if thread.is_alive():  # let the blocked thread go: open the FIFO for writing
        os.close(os.open(report / "fifo", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("redact_folder opened the FIFO")
    assert done == [Redacted(changed=[report / "log.txt"], dropped=[
        (report / "linked.txt", "a hard link to a file that has other names, which are not redacted")])]
    assert sorted(path.name for path in report.iterdir()) == ["fifo", "log.txt"]
    assert outside.read_text(encoding="utf-8") == SECRET and outside.stat().st_nlink == 1
    os.link(outside, report / "again.txt")
    with pytest.raises(Unredactable):
        redact_file(report / "again.txt", [SECRET])
    assert not (report / "again.txt").exists() and outside.read_text(encoding="utf-8") == SECRET
    assert not redact_file(report / "fifo", [SECRET])


def test_a_report_folder_that_is_a_link_is_removed_not_walked(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file.txt").write_text(SECRET, encoding="utf-8")
    os.symlink(outside, tmp_path / "report", target_is_directory=True)
    assert redact_folder(tmp_path / "report", [SECRET]) == Redacted(
        changed=[], dropped=[(tmp_path / "report", "a symbolic link, not a folder")])
    assert not os.path.lexists(tmp_path / "report")
    assert (outside / "file.txt").read_text(encoding="utf-8") == SECRET
    assert redact_folder(tmp_path / "missing", [SECRET]) == Redacted()


# --- limits: what a run leaves behind is hostile ---------------------------------------------------

MB = 1 << 20


def zip_of(name: str, data: bytes, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def zip_bomb(path: Path, shape: str, expanded: int = 256 * MB) -> None:
    """A zip in a zip in a zip holding `expanded` bytes of zeros, a few hundred KB on disk:
    in one entry that says how big it is; in many entries each smaller than the budget; or in
    many zips (stored, so that extracting one writes all of it) each smaller than the budget."""
    block = bytes(4 * MB)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as archive:
        if shape == "one entry":
            with archive.open("zeros.bin", "w", force_zip64=True) as entry:
                for _ in range(expanded // len(block)):
                    entry.write(block)
        elif shape == "many entries":
            for number in range(expanded // len(block)):
                archive.writestr(f"zeros-{number}.bin", block)
        else:  # "many zips"
            stored = zip_of("zeros.bin", block, zipfile.ZIP_STORED)
            for number in range(expanded // len(block)):
                archive.writestr(f"zeros-{number}.zip", stored)
    if shape == "many zips":  # those zips are the third level
        path.write_bytes(zip_of("inner.zip", inner.getvalue()))
    else:
        path.write_bytes(zip_of("middle.zip", zip_of("inner.zip", inner.getvalue())))


@pytest.mark.parametrize("shape", ["one entry", "many entries", "many zips"])
def test_a_nested_zip_bomb_is_removed_once_past_the_budget(tmp_path: Path, shape: str) -> None:
    zip_bomb(tmp_path / "bomb.zip", shape)
    assert (tmp_path / "bomb.zip").stat().st_size < 2 * MB
    (tmp_path / "notes.txt").write_text(f"token {SECRET}\n", encoding="utf-8")
    redacted = redact_folder(tmp_path, [SECRET], Limits(max_expanded_bytes=8 * MB, seconds=60))
    assert redacted == Redacted(changed=[tmp_path / "notes.txt"], dropped=[
        (tmp_path / "bomb.zip", "expands past 8 MB while searching its archives for secrets")])
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "token [secret]\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]  # no temporary file left


def test_the_budget_counts_what_an_embedded_zip_decodes_to(tmp_path: Path) -> None:
    # Not even a zip (searched as binary once decoded): only the decoding counts here.
    encoded = base64.b64encode(b"noise" + os.urandom(2 * MB)).decode()
    path = tmp_path / "index.html"
    path.write_text(f"<p>{SECRET}</p><template id=\"playwrightReportBase64\">data:application/zip;base64,"
                    f"{encoded}</template>", encoding="utf-8")
    with pytest.raises(Unredactable) as raised:
        redact_file(path, [SECRET], Limits(max_expanded_bytes=1 * MB, seconds=60))
    assert raised.value.reason == "expands past 1 MB while searching its archives for secrets"
    assert list(tmp_path.iterdir()) == []
    path.write_text(f"<p>{SECRET}</p><template id=\"playwrightReportBase64\">data:application/zip;base64,"
                    f"{encoded}</template>", encoding="utf-8")
    assert redact_file(path, [SECRET], Limits(max_expanded_bytes=8 * MB, seconds=60))
    assert SECRET_PREFIX.encode() not in path.read_bytes() and list(tmp_path.iterdir()) == [path]


def test_a_zip_whose_directory_is_too_big_to_read_is_removed_before_it_is_read(tmp_path: Path) -> None:
    """zipfile reads a zip's whole directory into memory first: one that declares more than
    MAX_ZIP_DIRECTORY is refused from its end record, whatever the budget."""
    name_length = 300
    entries = archives.MAX_ZIP_DIRECTORY // (46 + name_length) + 10
    with zipfile.ZipFile(tmp_path / "crowded.zip", "w", zipfile.ZIP_STORED) as archive:
        for n in range(entries):
            archive.writestr(f"{n:0{name_length}d}", b"")
        archive.writestr("secret.txt", SECRET)
    redacted = redact_folder(tmp_path, [SECRET], Limits(max_expanded_bytes=1 << 30, seconds=60))
    [(path, reason)] = redacted.dropped
    assert path.name == "crowded.zip" and reason.startswith(f"a zip whose directory lists {entries + 1} entries")
    assert list(tmp_path.iterdir()) == []


def test_finding_embedded_zips_is_linear_and_bounded(tmp_path: Path) -> None:
    """A text file of nothing but the prefix of an embedded zip: searched once over (it used to be
    copied again for every find), and refused past MAX_EMBEDDED_ZIPS."""
    path = tmp_path / "index.html"
    path.write_bytes(f"<p>{SECRET}</p>".encode() + b"data:application/zip;base64,A\n" * 200_000)
    started = time.perf_counter()
    with pytest.raises(Unredactable) as raised:
        redact_file(path, [SECRET], Limits(max_expanded_bytes=1 << 30, seconds=60))
    print(f"refused in {time.perf_counter() - started:.3f} s")
    assert raised.value.reason == f"more than {archives.MAX_EMBEDDED_ZIPS} embedded zips to search for secrets"
    few = tmp_path / "few.html"
    few.write_bytes(b"x" * (streams.CHUNK - 10) + b"data:application/zip;base64,QUJD\n" * 3 + SECRET.encode())
    assert archives._embedded_zips(few, limits._Budget(Limits(), time.monotonic() + 60)) == [
        (streams.CHUNK - 10 + 28 + n * 33, streams.CHUNK - 10 + 32 + n * 33) for n in range(3)]


def test_past_the_deadline_every_file_is_removed(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text(SECRET, encoding="utf-8")
    (tmp_path / "b.txt").write_text("nothing secret", encoding="utf-8")
    make_zip(tmp_path / "sub" / "trace.zip", [("test.trace", b"clean", zipfile.ZIP_DEFLATED)])
    redacted = redact_folder(tmp_path, [SECRET], Limits(max_expanded_bytes=8 * MB, seconds=0))
    assert redacted == Redacted(changed=[], dropped=[
        (tmp_path / name, "redaction took longer than 0 s") for name in ["a.txt", "b.txt", "sub/trace.zip"]])
    assert [path for path in tmp_path.rglob("*") if not path.is_dir()] == []


def test_a_deadline_passed_at_any_point_leaves_no_unredacted_nor_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline is checked at every read: let it pass at each of them in turn (a clock that
    ticks once per look), in a folder with a zip in a zip and an index.html with an embedded zip.
    Every file is then redacted or removed, and no temporary file is left, whatever was under way."""
    read_in_chunks_of(1024, monkeypatch)
    filler = "x" * 5_000
    report = zip_of("report.json", json.dumps({"title": SECRET, "filler": filler}).encode())
    files = {
        "trace.zip": zip_of("inner.zip", zip_of("b.txt", f"{filler} {SECRET}".encode())),
        "index.html": f"<p>{filler}</p><template id=\"playwrightReportBase64\">data:application/zip;base64,"
                      f"{base64.b64encode(report).decode()}</template>".encode(),
        "log.txt": f"{SECRET} {filler}".encode(),
    }
    ticks = 0

    def clock() -> float:
        nonlocal ticks
        ticks += 1
        return float(ticks)

    for module in (redact, limits):  # where the deadline is set, and where it is checked at every read
        monkeypatch.setattr(module, "time", types.SimpleNamespace(monotonic=clock))

    def redact_after(seconds: float) -> Redacted:
        nonlocal ticks
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
        (tmp_path / "run").mkdir()
        for name, data in files.items():
            (tmp_path / "run" / name).write_bytes(data)
        ticks = 0
        return redact_folder(tmp_path / "run", [SECRET], Limits(max_expanded_bytes=8 * MB, seconds=seconds))

    assert redact_after(10_000).changed == [tmp_path / "run" / name for name in ["index.html", "log.txt", "trace.zip"]]
    looks = ticks
    assert looks > 50  # enough reads to stop at (a clock read for the deadline, then one per read)
    for seconds in range(looks):
        redacted = redact_after(seconds)
        assert redacted.dropped and all(reason == f"redaction took longer than {seconds} s"
                                        for _, reason in redacted.dropped)
        kept = sorted(path.name for path in (tmp_path / "run").iterdir())
        assert kept == sorted(path.name for path in redacted.changed), seconds  # no temporary file either
        assert leaks(tmp_path / "run") == [], seconds


def nested(depth: int, data: bytes) -> bytes:
    """`data` in a zip in a zip..., `depth` zips in all."""
    for level in range(depth):
        data = zip_of(f"level-{depth - level}" + (".zip" if level else ".txt"), data)
    return data


def test_archives_nested_deeper_than_max_depth_are_removed(tmp_path: Path) -> None:
    (tmp_path / "three.zip").write_bytes(nested(3, SECRET.encode()))
    (tmp_path / "four.zip").write_bytes(nested(4, SECRET.encode()))
    redacted = redact_folder(tmp_path, [SECRET])
    assert redacted == Redacted(changed=[tmp_path / "three.zip"],
                                dropped=[(tmp_path / "four.zip", "archives nested deeper than 3")])
    assert list(opened("three.zip", (tmp_path / "three.zip").read_bytes()))[-1] == (
        "three.zip!level-1.zip!level-2.zip!level-3.txt", b"[secret]")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["three.zip"]
    (tmp_path / "three.zip").write_bytes(nested(3, SECRET.encode()))
    with pytest.raises(Unredactable, match="^three.zip: archives nested deeper than 2$"):
        redact_file(tmp_path / "three.zip", [SECRET], Limits(max_expanded_bytes=8 * MB, seconds=60, max_depth=2))
    assert not (tmp_path / "three.zip").exists()


# --- a real report -------------------------------------------------------------------------------

SPEC = r"""
const { test, expect } = require('@playwright/test');

const escapeHtml = (text) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
  .replace(/"/g, '&quot;').replace(/'/g, '&#39;');

test('uses the secret', async ({ page }, testInfo) => {
  const secret = process.env.MY_SECRET;
  console.log('the secret is ' + secret);
  console.error(JSON.stringify({ secret }));
  await page.route('http://app.test/**', async (route) => {
    const url = new URL(route.request().url());
    if (url.pathname === '/api/echo') {
      await route.fulfill({ json: { echo: url.searchParams.get('q') } });
    } else {
      await route.fulfill({ contentType: 'text/html; charset=utf-8',
        body: `<h1>Welcome ${escapeHtml(url.searchParams.get('token'))}</h1><input id="token">` });
    }
  });
  await test.step('log in with ' + secret, async () => {
    await page.goto('http://app.test/login?token=' + encodeURIComponent(secret));
  });
  await page.fill('#token', secret);
  const echoed = await page.evaluate(async (s) => {
    console.log('the page says ' + s);
    const response = await fetch('/api/echo?q=' + encodeURIComponent(s));
    return (await response.json()).echo;
  }, secret);
  expect(echoed).toBe(secret);
  await page.setContent(`<h1>${escapeHtml(secret)}</h1><p title="${escapeHtml(secret)}">shown</p>`);
  await testInfo.attach('note', { body: 'attached ' + secret, contentType: 'text/plain' });
  await testInfo.attach('data', { body: JSON.stringify({ secret }), contentType: 'application/json' });
  await testInfo.attach('bytes', { body: Buffer.from('raw ' + secret), contentType: 'application/octet-stream' });
  // Expected is the secret's end: the diff marks its start in Received with colour codes.
  expect(secret, 'close but not ' + secret).toBe(secret.slice(13));
});
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run as the worker makes it: the app's generated config (html reporter; trace, screenshot
    and video on), its environment plus MY_SECRET, `playwright test` from node_modules."""
    settings = config.from_env({})
    run_dir = tmp_path_factory.mktemp("run") / "run"
    workspace.prepare(run_dir, [workspace.TestFile("secret.spec.js", SPEC)], settings["NODE_MODULES"],
                      workspace.playwright_config(workspace.find_chromium(""), workers=1, retries=0))
    tmp_dir = tmp_path_factory.mktemp("t")
    env = runner.child_env(run_dir, tmp_dir, settings["PLAYWRIGHT_BROWSERS_PATH"]) | {"MY_SECRET": SECRET}
    command = runner.playwright_command(shutil.which("node") or "node",
                                       Path(settings["NODE_MODULES"]) / "@playwright" / "test" / "cli.js")
    outcome = runner.run_playwright(command, run_dir, env, 120, lambda _: None)
    assert outcome.exit_code == 1 and not outcome.timed_out, outcome.log  # the test fails, on purpose
    assert (run_dir / "report" / "index.html").is_file(), outcome.log
    return run_dir


def opened(name: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    """A stored file's bytes, and every entry of every zip in it (also the report data zip inside
    index.html), named by where it was found."""
    yield name, data
    if data.startswith(b"PK\x03\x04"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for entry in archive.namelist():
                yield from opened(f"{name}!{entry}", archive.read(entry))
    for embedded in ZIP_TEMPLATE.finditer(data):
        yield from opened(f"{name}!base64", base64.b64decode(embedded.group(1)))


def stored(folder: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield from opened(str(path.relative_to(folder)), path.read_bytes())


def leaks_in(files: Iterable[tuple[str, bytes]], secret: str, prefix: str) -> list[str]:
    """Where any form of `secret` (or its `prefix`, which every form keeps) is found in `files`."""
    needles = {name: form.encode() for name, form in forms(secret).items()} | {"prefix": prefix.encode()}
    return [f"{where}: {name}" for where, data in files for name, needle in needles.items()
            if needle in data or needle in where.encode()]


def leaks(folder: Path) -> list[str]:
    return leaks_in(stored(folder), SECRET, SECRET_PREFIX)


@pytest.fixture(scope="module")
def redacted_report(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    report = tmp_path_factory.mktemp("redacted") / "report"
    shutil.copytree(run_dir / "report", report)
    started = time.perf_counter()
    assert redact_folder(report, [SECRET, "unused secret"]).dropped == []
    print(f"redacting the report took {time.perf_counter() - started:.3f} s")
    return report


def test_the_report_holds_the_secret_everywhere_before_redaction(run_dir: Path) -> None:
    """So that the next test means something: the secret is in every kind of stored file."""
    found = leaks(run_dir / "report")
    index = (run_dir / "report" / "index.html").read_bytes()
    assert ZIP_TEMPLATE.search(index), "Playwright 1.65 keeps the report's data in this template"
    for where in ["index.html!base64!", "data/", ".zip!test.trace", "-trace.trace", ".zip!resources/",
                  ".zip!attachments/", ".md: raw", ".bin: raw", ".network: URL", "HTML, as the page wrote it"]:
        assert any(where in leak for leak in found), (where, found)


def test_no_stored_file_of_the_run_holds_the_secret_once_redacted(redacted_report: Path) -> None:
    assert leaks(redacted_report) == []
    names = dict(stored(redacted_report))
    assert any(b"[secret]" in data for where, data in names.items() if where.endswith(".trace"))
    for trace in redacted_report.glob("data/*.zip"):
        with zipfile.ZipFile(trace) as archive:
            assert archive.testzip() is None


def test_our_logs_and_error_messages_are_redacted_too(run_dir: Path) -> None:
    results = (run_dir / "supertest-results.json").read_text(encoding="utf-8")
    assert SECRET_PREFIX in results
    redacted = redact_text(results, [SECRET])
    assert SECRET_PREFIX not in redacted
    assert json.loads(redacted)  # still JSON


@pytest.fixture(scope="module")
def served(redacted_report: Path) -> Iterator[str]:
    """The report over HTTP: the trace viewer needs a service worker, which file:// cannot have."""
    handler = functools.partial(Quiet, directory=str(redacted_report))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_redacted_report_and_its_trace_still_open(browser: Browser, served: str,
                                                      redacted_report: Path) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{served}/index.html")
        page.get_by_text("uses the secret").first.click()
        expect(page.get_by_text("log in with [secret]")).to_be_visible()  # read from the re-embedded zip
        assert SECRET_PREFIX not in page.content()

        trace = next(redacted_report.glob("data/*.zip")).name
        page.goto(f"{served}/trace/index.html?trace={served}/data/{trace}")
        expect(page.get_by_text("log in with [secret]")).to_be_visible()
        page.get_by_text("Set content").click()
        page.get_by_text("After", exact=True).click()
        snapshot = page.frame_locator("iframe.snapshot-visible[name=snapshot]")
        expect(snapshot.locator("h1")).to_have_text("[secret]")
        assert not errors, errors
    finally:
        context.close()
