"""splice.py on real sockets: bytes moved socket to socket in the kernel, exactly as many as asked,
an early end, a client gone, a silent or stuck source, no pipe to be had; S3Reports.open splicing
from an S3 that breaks off; and which responses may be spliced at all."""
from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import gevent.socket
import gevent.ssl
import pytest

from supertest import splice
from supertest.storage import CHUNK, S3Reports, StorageError
from tests.helpers import open_fds

SIZE = 5 * splice.PIPE_SIZE + 12345  # several pipefuls and a piece
Sockets = tuple[socket.socket, socket.socket, socket.socket, socket.socket]


def pair() -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair on loopback: (near end, gevent's, as the web process has; far end, a
    plain blocking socket for a thread to play S3 or the client with)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        near = gevent.socket.create_connection(listener.getsockname())
        far, _ = listener.accept()
    return near, far


@pytest.fixture()
def threads() -> Iterator[ThreadPoolExecutor]:
    """Threads playing S3 and the client, with plain blocking sockets."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


@pytest.fixture()
def sockets(threads: ThreadPoolExecutor) -> Iterator[Sockets]:
    """S3's side (writer → source) and the client's (sink → reader). Closed before the threads are
    waited for: a thread still sending then stops."""
    source, writer = pair()
    sink, reader = pair()
    yield source, writer, sink, reader
    for sock in (source, writer, sink, reader):
        sock.close()


def send(sock: socket.socket, data: bytes, end: bool = False) -> None:
    try:
        sock.sendall(data)
        if end:
            sock.shutdown(socket.SHUT_WR)
    except OSError:  # the test is over and closed the socket: what arrived is what is checked
        pass


def read(sock: socket.socket, size: int) -> bytes:
    got = bytearray()
    while len(got) < size and (piece := sock.recv(size - len(got))):
        got += piece
    return bytes(got)


def test_exactly_the_bytes_asked_for_go_and_the_rest_stays(sockets: Sockets, threads: ThreadPoolExecutor) -> None:
    source, writer, sink, reader = sockets
    data = os.urandom(SIZE)
    before = open_fds()
    threads.submit(send, writer, data + b"next response")
    reading = threads.submit(read, reader, SIZE)
    assert splice.splice(source, sink, SIZE) == SIZE
    assert reading.result(10) == data
    assert source.recv(100) == b"next response"  # not one byte past the count was taken
    assert open_fds() == before  # its pipe is closed


def test_a_source_that_ends_early_gives_fewer_bytes(sockets: Sockets, threads: ThreadPoolExecutor) -> None:
    source, writer, sink, reader = sockets
    threads.submit(send, writer, b"x" * 1000, True)
    reading = threads.submit(read, reader, 1000)
    assert splice.splice(source, sink, SIZE) == 1000
    assert reading.result(10) == b"x" * 1000


def test_a_client_gone_is_the_clients_error(sockets: Sockets, threads: ThreadPoolExecutor) -> None:
    source, writer, sink, reader = sockets
    reader.close()  # the client left: writing to it fails once the kernel knows
    threads.submit(send, writer, os.urandom(SIZE))
    before = open_fds()
    with pytest.raises(OSError):  # as gunicorn's own write would raise it: not S3's failure
        splice.splice(source, sink, SIZE)
    assert open_fds() == before


def test_a_silent_source_fails_after_its_own_timeout(sockets: Sockets) -> None:
    source, _writer, sink, _reader = sockets
    source.settimeout(0.2)
    with pytest.raises(splice.SourceFailed) as failure:
        splice.splice(source, sink, 10)
    assert isinstance(failure.value.__cause__, TimeoutError)


def test_a_source_stuck_at_urgent_data_fails_at_once_rather_than_spin(sockets: Sockets) -> None:
    """TCP's urgent byte stops splice at its mark while poll says readable: not a wait for the timeout."""
    source, writer, sink, _reader = sockets
    source.settimeout(30)
    writer.sendall(b"before")
    writer.send(b"!", socket.MSG_OOB)
    writer.sendall(b"after")  # bytes past the mark: poll says readable, splice takes nothing
    with pytest.raises(splice.SourceFailed) as failure:
        splice.splice(source, sink, 100)
    assert type(failure.value.__cause__) is BlockingIOError  # stuck, told apart from a timeout


def test_no_pipe_to_be_had_moves_nothing_and_loses_nothing(sockets: Sockets, monkeypatch: pytest.MonkeyPatch) -> None:
    source, writer, sink, _reader = sockets
    writer.sendall(b"all of it")

    def no_pipe(flags: int) -> tuple[int, int]:
        raise OSError(24, "Too many open files")
    monkeypatch.setattr(os, "pipe2", no_pipe)
    assert splice.splice(source, sink, 9) == 0
    monkeypatch.undo()
    assert read(source, 9) == b"all of it"  # left for the caller to copy


def fake_s3(body: bytes, length: int) -> tuple[str, threading.Thread]:
    """An S3 endpoint that answers one GET with `length` as its length, sends `body`, then resets."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener, listener.accept()[0] as conn:
            conn.recv(65536)  # the request
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n".encode() + body)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", thread


def test_s3_breaking_off_while_spliced_is_a_storage_error(sockets: Sockets) -> None:
    """Not a client gone (which servers log quietly): the report proxy's own kind of failure."""
    _source, _writer, sink, reader = sockets
    endpoint, s3 = fake_s3(os.urandom(3 * CHUNK), 10 * CHUNK)  # then a reset: 7 MB short
    bucket = S3Reports({"S3_ENDPOINT": endpoint, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "key",
                        "AWS_SECRET_ACCESS_KEY": "secret"}, "reports")
    file = bucket.open("run/report/big.bin", None, sink)
    assert file is not None and file.length == 10 * CHUNK
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * CHUNK)
    body = iter(file.body)
    assert next(body)  # what came with S3's head: the server writes it
    s3.join(10)
    with pytest.raises(StorageError):
        next(body)  # the splice, cut short by S3
    file.body.close()


def tls_socket() -> socket.socket:
    return gevent.ssl.create_default_context().wrap_socket(gevent.socket.socket(), server_hostname="s3.test",
                                                                do_handshake_on_connect=False)


@pytest.mark.parametrize(("changes", "spliced"), [
    ({}, True),
    ({"SERVER_PROTOCOL": "HTTP/1.0"}, True),
    ({"REQUEST_METHOD": "HEAD"}, False),  # no body goes
    ({"SERVER_PROTOCOL": "HTTP/2.0"}, False),  # a body is framed there
    ({"gunicorn.socket": lambda: None}, False),  # another server (Flask's test client, say)
    ({"gunicorn.socket": socket.socket}, False),  # not gevent's: a blocking socket would hang the worker
    ({"gunicorn.socket": tls_socket}, False),  # TLS: splice would skip it
])
def test_which_responses_may_be_spliced(changes: dict[str, object], spliced: bool) -> None:
    near, far = pair()
    env = {"gunicorn.socket": near, "REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1",
           **{name: value() if callable(value) else value for name, value in changes.items()}}
    try:
        assert splice.client_socket(env) is (env["gunicorn.socket"] if spliced else None)
    finally:
        for sock in (near, far, env["gunicorn.socket"]):
            if isinstance(sock, socket.socket):
                sock.close()


def test_only_a_plain_socket_is_read_from_directly() -> None:
    near, far = pair()
    wrapped = tls_socket()
    assert splice.plain(near) and not splice.plain(wrapped)
    for sock in (near, far, wrapped):
        sock.close()
