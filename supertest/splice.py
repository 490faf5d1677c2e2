"""Bytes from one socket to another inside the kernel: splice(2) through a pipe, never copied into
Python. The report proxy moves a large S3 object to its client this way (bench/proxy.py: half the
web process's CPU a GET). Waits are gevent's, as gunicorn's gevent worker serves."""
from __future__ import annotations

import errno
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
    for the next), HTTP/1 (a body is the bytes on the wire) and no TLS (which splice would skip).
    Nothing between the view and gunicorn may read or change the body (none does)."""
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, gevent.socket.socket) or isinstance(sock, gevent.ssl.SSLSocket):
        return None
    if environ.get("REQUEST_METHOD") != "GET" or not str(environ.get("SERVER_PROTOCOL", "")).startswith("HTTP/1."):
        return None
    return sock


def plain(sock: socket.socket) -> bool:
    """Whether the bytes read from this socket are the peer's own (no TLS to decrypt)."""
    return sock.type == socket.SOCK_STREAM and not hasattr(sock, "cipher")


class SourceFailed(Exception):
    """The source broke off, went silent past its timeout, or cannot be spliced from: not the
    client's doing (an error of the sink, the client gone, is raised as the OSError it is)."""


def splice(source: socket.socket, sink: socket.socket, count: int) -> int:
    """Move up to `count` bytes from `source` to `sink`: fewer when the source ends first, none when
    no pipe can be made (the caller copies instead). Each side's wait is bounded by its own
    socket's timeout."""
    try:
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # out of file descriptors: nothing moved, nothing lost
        return 0
    try:
        try:
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # over the user's quota of pipe memory: the default size still works
            pass
        moved = 0
        while moved < count:
            try:
                piece = _splice(source.fileno(), write_end, min(count - moved, PIPE_SIZE),
                                lambda: gevent.socket.wait_read(source.fileno(), source.gettimeout()))
            except OSError as error:  # reset, timed out, or readable yet never spliceable
                raise SourceFailed(f"{type(error).__name__}: {error}") from error
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


# A socket said ready this many times in a row and still gave EAGAIN: it never will. TCP does that
# with urgent (out-of-band) data waiting: splice stops at its mark, poll says readable.
STUCK = 100


def _splice(src: int, dst: int, count: int, wait: Callable[[], None]) -> int:
    for _ in range(STUCK):
        try:
            moved = os.splice(src, dst, count, flags=FLAGS)
        except BlockingIOError:
            wait()
            continue
        return moved
    raise BlockingIOError(errno.EAGAIN, f"ready {STUCK} times in a row, yet nothing could be spliced")
