"""Bytes from one socket to another inside the kernel: splice(2) through a pipe, never copied into
Python. The report proxy moves a large S3 object to its client this way (bench/proxy.py: a third
less of the web process's CPU a GET). Waits are gevent's, as gunicorn's gevent worker serves."""
from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

import gevent.socket
import gevent.ssl

PIPE_SIZE = 1024 * 1024  # what one splice moves at most; the default pipe holds 64 KB
FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK


def client_socket(environ: Mapping[str, Any]) -> socket.socket | None:
    """The socket a response's body may be spliced into behind the server's back, if there is one:
    gunicorn's gevent worker (it has written the head and every piece handed to it before it asks
    for the next), HTTP/1 (a body is the bytes on the wire) and no TLS (which splice would skip)."""
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, gevent.socket.socket) or isinstance(sock, gevent.ssl.SSLSocket):
        return None
    if environ.get("REQUEST_METHOD") != "GET" or not str(environ.get("SERVER_PROTOCOL", "")).startswith("HTTP/1."):
        return None
    return sock


def plain(sock: socket.socket) -> bool:
    """Whether the bytes read from this socket are the peer's own (no TLS to decrypt)."""
    return sock.type == socket.SOCK_STREAM and not hasattr(sock, "cipher")


def splice(source: socket.socket, sink: socket.socket, count: int) -> int:
    """Move `count` bytes from `source` to `sink`; fewer when the source ends first. Each side's wait
    is bounded by its own socket's timeout; an error (the client gone, a timeout) is raised."""
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        try:
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # over the user's quota of pipe memory: the default size still works
            pass
        moved = 0
        while moved < count:
            piece = _splice(source.fileno(), write_end, min(count - moved, PIPE_SIZE),
                            lambda: gevent.socket.wait_read(source.fileno(), source.gettimeout()))
            if not piece:  # the source ended
                break
            while piece:  # the pipe emptied into the sink before more is read
                out = _splice(read_end, sink.fileno(), piece,
                              lambda: gevent.socket.wait_write(sink.fileno(), sink.gettimeout()))
                if not out:  # a socket takes at least a byte or says why not: never spin on it
                    raise BrokenPipeError("the client's socket took nothing")
                piece -= out
                moved += out
        return moved
    finally:
        os.close(read_end)
        os.close(write_end)


def _splice(src: int, dst: int, count: int, wait: Callable[[], None]) -> int:
    while True:
        try:
            return os.splice(src, dst, count, flags=FLAGS)
        except BlockingIOError:
            wait()
