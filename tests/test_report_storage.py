"""Report files read from S3 (and disk) for the proxy: whole, in part, missing, a client that leaves
early, and a body never read (a HEAD request); and through the `web` process, where a large file's
bytes go from S3's socket to the client's in the kernel (splice.py)."""
from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask

from supertest.outcomes import PASSED
from supertest.services import runs
from supertest.stack import answers_health, free_port
from supertest.storage import CHUNK, LocalReports, RangeNotSatisfiable, S3Reports, StorageError
from tests.conftest import ProcfileProcess, token_of_tester
from tests.helpers import open_fds
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


LARGE = 16 * CHUNK + 4321  # more than the sockets between S3, the web process and a client hold


@pytest.fixture(scope="module")
def web_worker(settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """The Procfile's `web` with one gunicorn worker: its URL and the worker's pid, whose pipes show a splice."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    web = ProcfileProcess("web", {**settings, "PORT": str(port), "HOST": "127.0.0.1", "WEB_CONCURRENCY": "1"},
                          tmp_path_factory.mktemp("web") / "web.log", lambda _: answers_health(url))
    try:
        [worker] = Path(f"/proc/{web.process.pid}/task/{web.process.pid}/children").read_text().split()
        yield url, int(worker)
    finally:
        web.stop()


@pytest.fixture(scope="module")
def large_file(app: Flask, s3: S3Server, settings: dict[str, str]) -> tuple[str, bytes]:
    """A finished run whose report (in S3) holds a large file: its proxy URL path and its bytes."""
    with app.app_context():
        run_id = runs.create_playground_run("// never queued", "a large attachment", trigger="api").id
        data = os.urandom(LARGE)
        s3.client().put_object(Bucket=settings["S3_TEST_BUCKET_NAME"], Key=f"{run_id}/report/data/large.bin", Body=data)
        runs.finish(run_id, PASSED, report_store="s3")
    return f"/api/test-results/{run_id}/report/data/large.bin", data


def pipes(pid: int) -> int:
    found = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found += os.readlink(fd).startswith("pipe:")
        except FileNotFoundError:  # closed meanwhile
            pass
    return found


def test_a_large_file_is_spliced_whole_or_in_part_on_one_connection(
        app: Flask, web_worker: tuple[str, int], large_file: tuple[str, bytes]) -> None:
    url, _ = web_worker
    path, data = large_file
    auth = {"Authorization": f"Bearer {token_of_tester(app)}"}
    with requests.Session() as session:  # one kept-alive connection: each body must end where it says
        for wanted, expected in [(None, data), (f"bytes={CHUNK}-{9 * CHUNK}", data[CHUNK:9 * CHUNK + 1]),
                                 ("bytes=-10", data[-10:]), (None, data)]:
            answer = session.get(url + path, headers={**auth, **({"Range": wanted} if wanted else {})}, timeout=30)
            assert answer.status_code == (206 if wanted else 200)
            assert answer.content == expected
            assert int(answer.headers["Content-Length"]) == len(expected)
        # requests would quietly open another connection after one the server closed: none was
        pools = session.get_adapter(url).poolmanager.pools
        assert [pools[key].num_connections for key in pools.keys()] == [1]


def test_a_client_that_stops_reading_then_leaves_frees_the_splice(
        app: Flask, web_worker: tuple[str, int], large_file: tuple[str, bytes]) -> None:
    url, worker = web_worker
    path, data = large_file
    # gevent closes a pipe on its loop's next turn: a request first, so none is still on its way out
    assert requests.get(f"{url}/api/health", timeout=10).ok
    idle = pipes(worker)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # fills soon: the web process must wait
    client.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token_of_tester(app)}\r\n"
                   "\r\n".encode())
    assert client.recv(12, socket.MSG_WAITALL) == b"HTTP/1.1 200"
    deadline = time.monotonic() + 10
    while pipes(worker) < idle + 2 and time.monotonic() < deadline:  # the splice's pipe, held while it waits
        time.sleep(0.05)
    assert pipes(worker) == idle + 2
    client.close()
    while pipes(worker) > idle and time.monotonic() < deadline + 10:
        time.sleep(0.05)
    assert pipes(worker) == idle  # closed once the client was gone
    with requests.get(url + path, headers={"Authorization": f"Bearer {token_of_tester(app)}"}, timeout=30) as again:
        assert again.content == data  # and the worker serves on
