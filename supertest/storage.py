"""Where HTML reports live: S3 (or MinIO, SeaweedFS) when configured, else the local disk.

Keys are `<run id>/report/<path>` in the bucket, or the same path under REPORTS_DIR. A report
whose upload fails stays on local disk and is served from there.
"""
from __future__ import annotations

import functools
import logging
import mimetypes
import os
import posixpath
import shutil
import socket
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import boto3
import botocore.config
import botocore.exceptions
import botocore.httpsession
import urllib3
from werkzeug.http import parse_range_header

from supertest import nofollow, splice
from supertest.errors import Unavailable

log = logging.getLogger(__name__)

S3, LOCAL = "s3", "local"
CHUNK = 1024 * 1024  # per read from S3 or disk and per write to the client: fewer, larger writes
# A presigned GET of a report file is good this long; it is signed again after half of it, so that
# the Range requests of a video or a trace (many, for one file) reuse one signature.
PRESIGNED_SECONDS = 120
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("video/webm", ".webm")
mimetypes.add_type("application/zip", ".zip")
mimetypes.add_type("application/json", ".json")


class StorageError(Unavailable):
    """Object storage could not be reached or refused the request."""

    code, service, what = "storage_unavailable", "storage", "Report storage"


class RangeNotSatisfiable(Exception):
    """The requested byte range lies outside the object."""


class BadReportPath(ValueError):
    """A requested report path would leave the run's report folder."""


def report_key(run_id: str, path: str) -> str:
    """The storage key of a file in a run's report, refusing anything that could escape it."""
    if not path or "\\" in path or "\x00" in path or path.startswith("/"):
        raise BadReportPath(path)
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts[:-1]) or parts[-1] in (".", ".."):
        raise BadReportPath(path)
    key = posixpath.normpath(f"{run_id}/{path}")
    if not key.startswith(f"{run_id}/report/"):
        raise BadReportPath(path)
    return key


def content_type(path: str) -> str:
    guessed, _ = mimetypes.guess_type(path)
    return guessed or "application/octet-stream"


class Body:
    """A file's chunks, with a close() that frees what they hold (a file, a connection to S3)
    whether or not they were read: a HEAD request, or a client gone before the first chunk, never
    starts the generator, so its own `finally` never runs. The WSGI server calls close()."""

    def __init__(self, chunks: Generator[bytes, None, None], release: Callable[[], None]) -> None:
        self._chunks = chunks
        self._release = release  # safe to call more than once

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        try:
            self._chunks.close()
        finally:
            self._release()


@dataclass
class ReportFile:
    """A file ready to stream: a body iterator, its length, and the byte range it covers."""

    body: Body
    length: int
    total: int
    content_type: str
    start: int = 0

    @property
    def partial(self) -> bool:
        return self.length != self.total


class LocalReports:
    """Reports under a directory on this machine."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def open(self, key: str, range_header: str | None) -> ReportFile | None:
        """Stream a file, honouring a Range header; None when there is no such regular file. No link
        is followed on the way (a report stored before links were left out may still hold some)."""
        try:
            fd, status = nofollow.open_beneath(self.root, key)
        except (OSError, nofollow.Refused):
            return None
        file = os.fdopen(fd, "rb", buffering=0)  # closed once however often close() is called
        start, length = 0, status.st_size
        if range_header:
            wanted = parse_range_header(range_header)
            span = wanted.range_for_length(status.st_size) if wanted else None
            if wanted and len(wanted.ranges) == 1 and span is None:
                file.close()
                raise RangeNotSatisfiable(range_header)
            if span:
                start, length = span[0], span[1] - span[0]
        body = Body(_read(file, start, length), file.close)
        return ReportFile(body, length, status.st_size, content_type(key), start)

    def save(self, run_id: str, report_dir: Path) -> None:
        target = self.root / run_id / "report"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        # A rename when the run directory is on the same disk: no copying on the hot path.
        shutil.move(str(report_dir), target)

    def delete(self, run_id: str) -> None:
        shutil.rmtree(self.root / run_id, ignore_errors=True)

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"{self.root} is not writable")


def _read(file: BinaryIO, start: int, length: int) -> Generator[bytes, None, None]:
    """`length` bytes of an open file from `start`, a chunk at a time; closes it when done or dropped."""
    try:
        while length > 0 and (chunk := os.pread(file.fileno(), min(CHUNK, length), start)):
            yield chunk
            start += len(chunk)
            length -= len(chunk)
    finally:
        file.close()


def regular_files(folder: Path) -> Iterator[str]:
    """The paths (relative, with slashes) of the files in `folder`, links and oddities left out
    (they are refused again when opened: nofollow.open_beneath)."""
    for root, _dirs, files in os.walk(folder):  # os.walk does not go into linked folders
        for name in files:
            path = Path(root, name)
            if not path.is_symlink():
                yield path.relative_to(folder).as_posix()


class S3Reports:
    """Reports in an S3 bucket."""

    def __init__(self, config: Mapping[str, Any], bucket: str) -> None:
        self.bucket = bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=config["S3_ENDPOINT"],
            region_name=config["AWS_REGION"],
            aws_access_key_id=config["AWS_ACCESS_KEY_ID"] or None,
            aws_secret_access_key=config["AWS_SECRET_ACCESS_KEY"] or None,
            config=botocore.config.Config(
                connect_timeout=3, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path"}, max_pool_connections=16,
            ),
        )
        self._bucket_ready = False
        # Report files are read with a presigned GET on a connection pool of our own, the same
        # request as get_object's, so that open() can hand on whatever has arrived (see there).
        # Certificates as botocore checks them (AWS_CA_BUNDLE, else its bundle); no HTTP proxy.
        self._http = urllib3.PoolManager(
            maxsize=16, timeout=urllib3.Timeout(connect=3, read=30),
            ca_certs=os.environ.get("AWS_CA_BUNDLE") or botocore.httpsession.get_cert_path(True),
            retries=urllib3.Retry(total=2, connect=2, read=0, status=0, redirect=0, backoff_factor=0.1))

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
            # AWS wants the region spelt out everywhere but in us-east-1.
            region = self.client.meta.region_name
            where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            self.client.create_bucket(Bucket=self.bucket, **where)
        self._bucket_ready = True

    def save(self, run_id: str, report_dir: Path) -> None:
        try:
            self._ensure_bucket()
            with ThreadPoolExecutor(max_workers=8) as pool:
                for future in [pool.submit(self._upload, run_id, report_dir, name)
                               for name in regular_files(report_dir)]:
                    future.result()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            raise StorageError(str(error)) from error

    def _upload(self, run_id: str, report_dir: Path, name: str) -> None:
        try:
            fd, _status = nofollow.open_beneath(report_dir, name)
        except nofollow.Refused as refused:
            log.warning("run %s: %s left out of the upload: %s", run_id, name, refused)
            return
        key = f"{run_id}/report/{name}"
        with os.fdopen(fd, "rb") as file:
            self.client.upload_fileobj(file, self.bucket, key, ExtraArgs={"ContentType": content_type(key)})

    def delete(self, run_id: str) -> None:
        """Remove every object under the run's prefix, a thousand (S3's limit) at a time."""
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{run_id}/")
            for page in pages:
                keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                if keys:
                    answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                    if answer.get("Errors"):
                        raise StorageError(f"could not delete {answer['Errors'][0].get('Key')}: "
                                           f"{answer['Errors'][0].get('Message')}")
        except botocore.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") == "NoSuchBucket":
                return
            raise StorageError(str(error)) from error
        except botocore.exceptions.BotoCoreError as error:
            raise StorageError(str(error)) from error

    def open(self, key: str, range_header: str | None, sink: socket.socket | None = None) -> ReportFile | None:
        """Stream an object, honouring a Range header; None when there is no such object.

        Its body goes on as it arrives (read1: up to CHUNK of what is there, not a full CHUNK
        waited for). Reading S3 and writing to the client overlap in the kernel's socket buffers:
        a thread reading ahead of the client cost more (a queue, a switch each piece) than it
        gained (bench/proxy.py). Given the client's `sink` (splice.client_socket), what is left
        after the first piece, if more than a CHUNK, is spliced from S3's socket into it."""
        wanted = parse_range_header(range_header) if range_header else None
        # One range, as the local disk serves: several (a multipart answer) or a malformed one get
        # the whole file, as HTTP allows.
        range_header = range_header if wanted and len(wanted.ranges) == 1 else None
        try:
            url = self._presigned(key, int(time.time() // (PRESIGNED_SECONDS // 2)))
            response = self._http.request("GET", url, headers={"Range": range_header} if range_header else None,
                                          preload_content=False, decode_content=False)
        except (botocore.exceptions.BotoCoreError, urllib3.exceptions.HTTPError) as error:
            raise StorageError(str(error)) from error
        if response.status not in (200, 206):
            response.drain_conn()
            response.release_conn()
            if response.status == 404:  # NoSuchKey, or NoSuchBucket
                return None
            if response.status == 416:
                raise RangeNotSatisfiable(range_header)
            raise StorageError(f"S3 answered {response.status} to GET {self.bucket}/{key}")
        try:
            length = int(response.headers["Content-Length"])
            total, start = length, 0
            if response.status == 206:  # Content-Range: "bytes 0-99/1234"
                span, _, size = response.headers["Content-Range"].removeprefix("bytes ").partition("/")
                start, total = int(span.split("-")[0]), int(size)
        except (KeyError, ValueError) as error:  # an S3 that answers oddly is down, not our bug
            response.close()
            raise StorageError(f"S3 answered GET {self.bucket}/{key} without a usable length or range") from error

        # S3's socket, if the rest of the body may be spliced from it into the client's: a plain
        # connection and a body that is the file's bytes (not chunked). urllib3's connection is
        # http.client's, with its socket (the protocol it is typed as has none).
        source: socket.socket | None = getattr(response.connection, "sock", None) \
            if sink and not response.chunked else None
        source = source if source and splice.plain(source) else None

        def chunks() -> Generator[bytes, None, None]:
            got = 0
            try:
                while got < length and (chunk := response.read1(min(CHUNK, length - got))):
                    got += len(chunk)
                    yield chunk  # the server writes it, with the response's head, before asking for more
                    if sink and source and length - got > CHUNK:
                        # A read1 of more than http.client's buffer (8 KB) has emptied it: the rest
                        # is on the socket. Its connection is then closed, not pooled (see close()).
                        # Whatever did not move (no pipe to be had) is copied on by this loop.
                        try:
                            got += splice.splice(source, sink, length - got)
                        except splice.SourceFailed as error:
                            raise StorageError(f"S3 broke off {self.bucket}/{key}: {error}") from error
                if got != length:  # as botocore would: a short body is an error, not a smaller file
                    raise StorageError(f"S3 sent {got} of {length} bytes of {self.bucket}/{key}")
            finally:
                close()

        def close() -> None:
            if response.length_remaining != 0:  # left part read, or read past urllib3 (spliced)
                response.close()  # not to be reused: the pool replaces it when next taken
            response.release_conn()  # back to the pool, where one read to the end serves the next file

        return ReportFile(Body(chunks(), close), length, total, content_type(key), start)

    @functools.lru_cache(maxsize=256)  # noqa: B019 (the app's two buckets live as long as it does)
    def _presigned(self, key: str, period: int) -> str:
        """A presigned GET of `key`, the same within one `period` (half of PRESIGNED_SECONDS)."""
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=PRESIGNED_SECONDS)

    def check(self) -> None:
        try:
            self._ensure_bucket()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            raise StorageError(str(error)) from error


class ReportStore:
    """Both places a report can be, behind one interface: S3 first when configured, else local disk."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.local = LocalReports(Path(config["REPORTS_DIR"]))
        self.buckets: dict[str, S3Reports] = {}
        if config["S3_ENDPOINT"]:
            self.buckets = {"test": S3Reports(config, config["S3_TEST_BUCKET_NAME"]),
                            "job": S3Reports(config, config["S3_JOB_BUCKET_NAME"])}

    def save(self, run_id: str, kind: str, report_dir: Path) -> str:
        """Store a finished report; returns where it ended up ("s3" or "local")."""
        bucket = self.buckets.get(kind)
        if bucket is not None:
            try:
                bucket.save(run_id, report_dir)
                return S3
            except StorageError:
                log.warning("upload of run %s's report failed; keeping it on local disk", run_id, exc_info=True)
        self.local.save(run_id, report_dir)
        return LOCAL

    @property
    def remote(self) -> bool:
        """Whether reports go to object storage (else they stay on local disk)."""
        return bool(self.buckets)

    def upload_kept(self, run_id: str, kind: str) -> bool:
        """Upload a report kept on local disk while S3 was down; False when there is none here.
        StorageError when S3 still cannot be reached. The local copy stays until the caller, once
        the run points at S3, calls forget_kept: the report is always where its run says."""
        folder = self.local.root / run_id / "report"
        if not folder.is_dir() or kind not in self.buckets:
            return False
        self.buckets[kind].save(run_id, folder)
        return True

    def forget_kept(self, run_id: str) -> None:
        self.local.delete(run_id)

    def delete(self, run_id: str, kind: str, where: str) -> None:
        """Remove a run's report from where it was stored; StorageError if S3 cannot be reached."""
        if where == S3:
            bucket = self.buckets.get(kind)
            if bucket is None:
                raise StorageError(f"run {run_id}'s report is in S3, but S3 is not configured")
            bucket.delete(run_id)
        self.local.delete(run_id)

    def open(self, where: str, kind: str, key: str, range_header: str | None,
             sink: socket.socket | None = None) -> ReportFile | None:
        """A file of a stored report (see report_key), from where its run says it is; None if absent.
        RangeNotSatisfiable for a range outside it, StorageError when S3 cannot be reached. `sink`:
        the client's socket, when S3's bytes may be spliced into it (S3Reports.open)."""
        bucket = self.buckets.get(kind)
        if where == S3:
            if bucket is None:
                raise StorageError("this report is in S3, but S3 is not configured")
            return bucket.open(key, range_header, sink)
        return self.local.open(key, range_header)

    def check(self) -> None:
        """Raise StorageError when the configured store cannot be used."""
        for bucket in self.buckets.values():
            bucket.check()
        self.local.check()


def init_app(app: Any) -> None:
    app.extensions["reports"] = ReportStore(app.config)
