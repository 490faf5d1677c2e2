"""Report files read from S3 (and disk) for the proxy: whole, in part, missing, a client that leaves
early, and a body never read (a HEAD request)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from flask import Flask

from supertest.stack import free_port
from supertest.storage import CHUNK, LocalReports, RangeNotSatisfiable, S3Reports, StorageError
from tests.s3server import S3Server

SIZE = 3 * CHUNK + 12345  # some whole chunks and a piece


@pytest.fixture(scope="module")
def stored(app: Flask, s3: S3Server, settings: dict[str, str]) -> tuple[S3Reports, str, bytes]:
    bucket = S3Reports(app.config, settings["S3_TEST_BUCKET_NAME"])
    bucket.check()  # makes the bucket
    key, data = f"{uuid.uuid4()}/report/data/big.bin", os.urandom(SIZE)
    s3.client().put_object(Bucket=settings["S3_TEST_BUCKET_NAME"], Key=key, Body=data)
    return bucket, key, data


def test_a_file_is_read_whole_or_in_part(stored: tuple[S3Reports, str, bytes]) -> None:
    bucket, key, data = stored
    whole = bucket.open(key, None)
    assert whole is not None and not whole.partial
    assert (whole.length, whole.total, whole.content_type) == (SIZE, SIZE, "application/octet-stream")
    assert b"".join(whole.body) == data
    part = bucket.open(key, f"bytes={CHUNK - 5}-{CHUNK + 4}")
    assert part is not None and part.partial
    assert (part.start, part.length, part.total) == (CHUNK - 5, 10, SIZE)
    assert b"".join(part.body) == data[CHUNK - 5:CHUNK + 5]
    tail = bucket.open(key, "bytes=-7")
    assert tail is not None and b"".join(tail.body) == data[-7:]


def test_missing_files_and_ranges_outside_a_file(stored: tuple[S3Reports, str, bytes]) -> None:
    bucket, key, _ = stored
    assert bucket.open(key + ".missing", None) is None
    with pytest.raises(RangeNotSatisfiable):
        bucket.open(key, f"bytes={SIZE + 10}-")


def test_a_client_that_leaves_early_stops_the_reading(stored: tuple[S3Reports, str, bytes]) -> None:
    bucket, key, data = stored
    before = open_fds()
    file = bucket.open(key, None)
    assert file is not None
    body = iter(file.body)
    first = next(body)  # what had arrived: up to a CHUNK
    assert first and data.startswith(first)
    body.close()  # type: ignore[attr-defined]  # what the server does when the client is gone
    assert open_fds() <= before  # the connection, half read, is closed rather than pooled
    again = bucket.open(key, None)  # the pool's connections are still good
    assert again is not None and b"".join(again.body) == data


def test_unreachable_storage_is_a_storage_error(app: Flask, settings: dict[str, str]) -> None:
    nowhere = {**app.config, "S3_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    bucket = S3Reports(nowhere, settings["S3_TEST_BUCKET_NAME"])
    with pytest.raises(StorageError):
        bucket.open("run/report/index.html", None)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_several_ranges_get_the_whole_file(stored: tuple[S3Reports, str, bytes]) -> None:
    """As the local disk serves them: S3's multipart answer would have no single Content-Range."""
    bucket, key, data = stored
    whole = bucket.open(key, "bytes=0-1,5-6")
    assert whole is not None and not whole.partial and b"".join(whole.body) == data


def test_a_body_never_read_frees_its_connection_when_closed(stored: tuple[S3Reports, str, bytes]) -> None:
    """A HEAD request never starts the body: the server's close() must still free the S3 connection."""
    bucket, key, _ = stored
    before = open_fds()
    files = [bucket.open(key, None) for _ in range(5)]  # held: nothing is left to the garbage collector
    assert all(files) and open_fds() >= before + 4
    for file in files:
        assert file is not None
        file.body.close()
    assert open_fds() <= before


def test_a_file_on_disk_never_read_is_closed_when_its_body_is(tmp_path: Path) -> None:
    (tmp_path / "run" / "report").mkdir(parents=True)
    (tmp_path / "run" / "report" / "index.html").write_text("<p>report</p>")
    reports = LocalReports(tmp_path)
    before = open_fds()
    files = [reports.open("run/report/index.html", None) for _ in range(5)]
    assert all(files) and open_fds() == before + 5
    for file in files:
        assert file is not None
        file.body.close()
        file.body.close()  # twice: the second closes nothing (the number may be another file's by then)
    assert open_fds() == before
    read = reports.open("run/report/index.html", None)
    assert read is not None and b"".join(read.body) == b"<p>report</p>" and open_fds() == before
