"""splice.py on real sockets: bytes moved socket to socket in the kernel, exactly as many as asked,
an early end, a client gone, a silent source; and which responses may be spliced at all."""
from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator

import gevent.socket
import gevent.ssl
import pytest

from supertest import splice

SIZE = 5 * splice.PIPE_SIZE + 12345  # several pipefuls and a piece


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
def sockets() -> Iterator[tuple[socket.socket, socket.socket, socket.socket, socket.socket]]:
    """S3's side (writer → source) and the client's (sink → reader)."""
    source, writer = pair()
    sink, reader = pair()
    yield source, writer, sink, reader
    for sock in (source, writer, sink, reader):
        sock.close()


def in_background(work: Callable[..., object], *args: object) -> dict[str, object]:
    """Run `work` in a thread; its result lands in the dict once `join` returns."""
    done: dict[str, object] = {}
    thread = threading.Thread(target=lambda: done.update(result=work(*args)), daemon=True)
    thread.start()
    done["join"] = thread.join
    return done


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


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_exactly_the_bytes_asked_for_go_and_the_rest_stays(sockets) -> None:
    source, writer, sink, reader = sockets
    data = os.urandom(SIZE)
    before = open_fds()
    writing = in_background(send, writer, data + b"next response")
    reading = in_background(read, reader, SIZE)
    assert splice.splice(source, sink, SIZE) == SIZE
    for side in (writing, reading):
        side["join"](10)  # type: ignore[operator]
    assert reading["result"] == data
    assert source.recv(100) == b"next response"  # not one byte past the count was taken
    assert open_fds() == before  # its pipe is closed


def test_a_source_that_ends_early_gives_fewer_bytes(sockets) -> None:
    source, writer, sink, reader = sockets
    in_background(send, writer, b"x" * 1000, True)
    reading = in_background(read, reader, 1000)
    assert splice.splice(source, sink, SIZE) == 1000
    reading["join"](10)  # type: ignore[operator]
    assert reading["result"] == b"x" * 1000


def test_a_client_gone_is_an_error_not_a_spin(sockets) -> None:
    source, writer, sink, reader = sockets
    reader.close()  # the client left: writing to it fails once the kernel knows
    in_background(send, writer, os.urandom(SIZE))
    before = open_fds()
    with pytest.raises(OSError):
        splice.splice(source, sink, SIZE)
    assert open_fds() == before


def test_a_silent_source_times_out_with_its_own_timeout(sockets) -> None:
    source, _writer, sink, _reader = sockets
    source.settimeout(0.2)
    with pytest.raises(TimeoutError):  # socket.timeout, which gevent raises, is TimeoutError
        splice.splice(source, sink, 10)


def tls_socket() -> socket.socket:
    return gevent.ssl.create_default_context().wrap_socket(gevent.socket.socket(), server_hostname="s3.test",
                                                                do_handshake_on_connect=False)


@pytest.mark.parametrize(("changes", "spliced"), [
    ({}, True),
    ({"SERVER_PROTOCOL": "HTTP/1.0"}, True),
    ({"REQUEST_METHOD": "HEAD"}, False),  # no body goes
    ({"SERVER_PROTOCOL": "HTTP/2"}, False),  # a body is framed there
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
