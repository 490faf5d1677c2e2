"""Everything a run leaves behind is hostile input to the worker: links to files only root may read,
FIFOs and hard links planted in the report are left out of it, named in the run's message, and
never stored or served, from S3 or from the local disk. The real way: request, queue, sandboxed
`playwright test`, worker, storage, report proxy."""
from __future__ import annotations

import base64
import io
import os
import re
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from supertest import config
from supertest.storage import LocalReports
from tests.conftest import ProcfileProcess, make_app, start_worker
from tests.helpers import start_run, wait_for_run
from tests.s3server import S3Server
from tests.test_redact import opened

# Top-level code of a spec runs in Playwright's runner process too (it loads the file to list its
# tests); there, an exit handler runs once the HTML report is written, just before the process ends,
# and plants what a background process could plant at that moment.
PLANTS = """import { test, expect } from '@playwright/test';
const fs = require('fs');
const { execFileSync } = require('child_process');

if (!process.env.TEST_WORKER_INDEX) process.on('exit', () => {
  fs.symlinkSync('/etc/shadow', 'report/shadow.txt');
  fs.symlinkSync('__SECRET__', 'report/secret.txt');
  fs.symlinkSync('/etc', 'report/etc');
  fs.mkdirSync('report/data', { recursive: true });
  fs.symlinkSync('__SECRET__', 'report/data/secret.png');
  execFileSync('mkfifo', ['report/pipe']);
  fs.writeFileSync('mine.txt', 'a file of my own');
  fs.linkSync('mine.txt', 'report/hard.txt');
});

test('leaves a report behind', async ({ page }) => {
  await page.setContent('<h1>planted</h1>');
  await expect(page.getByRole('heading')).toHaveText('planted');
});
"""
PLANTED = ["shadow.txt", "secret.txt", "etc/passwd", "data/secret.png", "pipe", "hard.txt"]


@pytest.fixture(scope="module")
def root_only_secret() -> Iterator[Path]:
    """A file in the app's instance folder that only root may read, as instance/secret-key is."""
    config.INSTANCE_DIR.mkdir(exist_ok=True)
    path = config.INSTANCE_DIR / f"root-only-{uuid.uuid4().hex[:8]}.txt"
    path.write_text("root-only-secret-" + uuid.uuid4().hex)
    path.chmod(0o600)
    try:
        yield path
    finally:
        path.unlink()


@pytest.fixture(scope="module")
def local_settings(settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A worker without object storage: reports stay on its local disk."""
    return {**settings, "S3_ENDPOINT": "", "REPORTS_DIR": str(tmp_path_factory.mktemp("local-reports")),
            "QUEUE_NAMESPACE": settings["QUEUE_NAMESPACE"] + "-local"}


@pytest.fixture(scope="module")
def local_worker(app: Flask, local_settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[ProcfileProcess]:
    process = start_worker(local_settings, tmp_path_factory.mktemp("local") / "worker.log")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def planted(app: Flask, worker: ProcfileProcess, local_settings: dict[str, str], local_worker: ProcfileProcess,
            root_only_secret: Path) -> dict[str, Any]:
    """The planting script run once on S3 and once on local disk, side by side."""
    script = PLANTS.replace("__SECRET__", str(root_only_secret))
    clients = {"s3": app.test_client(), "local": make_app(local_settings).test_client()}
    started = {where: start_run(client, script, f"plants links ({where})")["runId"]
               for where, client in clients.items()}
    return {where: (clients[where], wait_for_run(clients[where], run_id)) for where, run_id in started.items()}


@pytest.mark.parametrize("where", ["s3", "local"])
def test_links_fifos_and_hard_links_in_a_report_are_left_out_and_never_served(
        planted: dict[str, Any], where: str, root_only_secret: Path, worker: ProcfileProcess,
        local_worker: ProcfileProcess) -> None:
    client, run = planted[where]
    assert run["status"] == "passed", run
    message = run["errorMessage"] or ""
    for name, why in [("shadow.txt", "a symbolic link"), ("etc", "a symbolic link"), ("pipe", "a FIFO"),
                      ("data/secret.png", "a symbolic link"), ("hard.txt", "a file with more than one hard link")]:
        assert f"report/{name} ({why}" in message, message
    index = client.get(f"/api/test-results/{run['id']}/report/index.html")
    assert index.status_code == 200 and b"<html" in index.data.lower()
    secret = root_only_secret.read_bytes()
    for name in PLANTED:
        response = client.get(f"/api/test-results/{run['id']}/report/{name}")
        assert response.status_code == 404, (name, response.status_code)
        assert secret not in response.data and b"root:" not in response.data
    log = (worker if where == "s3" else local_worker).log()
    assert f"run {run['id']}: left out of its report: " in log and "report/shadow.txt (a symbolic link)" in log


def test_nothing_planted_reaches_object_storage(planted: dict[str, Any], settings: dict[str, str],
                                               s3: S3Server, root_only_secret: Path) -> None:
    _client, run = planted["s3"]
    bucket = settings["S3_TEST_BUCKET_NAME"]
    keys = s3.keys(bucket, f"{run['id']}/")
    assert f"{run['id']}/report/index.html" in keys
    assert not [key for key in keys if key.removeprefix(f"{run['id']}/report/") in PLANTED + ["etc"]], keys
    objects = s3.client()
    secret = root_only_secret.read_bytes()
    assert not [key for key in keys if secret in objects.get_object(Bucket=bucket, Key=key)["Body"].read()]


def test_a_report_already_on_disk_serves_regular_files_only(tmp_path: Path, root_only_secret: Path) -> None:
    """Reports kept before links were left out may hold some: the local store opens no link at any step."""
    report = tmp_path / "run-1" / "report"
    (report / "data").mkdir(parents=True)
    (report / "index.html").write_text("<html>the report</html>")
    (report / "shadow.txt").symlink_to("/etc/shadow")
    (report / "secret.txt").symlink_to(root_only_secret)
    (report / "etc").symlink_to("/etc")
    (report / "linked").symlink_to(report / "data")
    (report / "data" / "trace.zip").write_bytes(b"PK")
    os.mkfifo(report / "pipe")
    (report / "copy.html").write_text("a file with two names")
    os.link(report / "copy.html", report / "hard.html")
    store = LocalReports(tmp_path)
    served = store.open("run-1/report/index.html", None)
    assert served is not None and b"".join(served.body) == b"<html>the report</html>"
    part = store.open("run-1/report/index.html", "bytes=6-8")
    assert part is not None and (part.start, part.length, b"".join(part.body)) == (6, 3, b"the")
    for name in ["shadow.txt", "secret.txt", "etc/passwd", "linked/trace.zip", "pipe", "hard.html", "copy.html",
                 "data", "missing.txt"]:
        assert store.open(f"run-1/report/{name}", None) is None, name
    (tmp_path / "run-2").symlink_to(tmp_path / "run-1")  # a linked run folder, too
    assert store.open("run-2/report/data/trace.zip", None) is None


# An attachment of a few kilobytes that unpacks to 1.25 GiB: zeros in a zip, in a zip, in a zip.
BOMB_ATTACHED = """import { test } from '@playwright/test';

test('attaches a bomb beside its secret', async ({}, testInfo) => {
  await testInfo.attach('bomb.zip', { body: Buffer.from('__BOMB__', 'base64'), contentType: 'application/zip' });
  await testInfo.attach('note.txt', { body: `the secret is ${process.env.BOMB_SECRET}`, contentType: 'text/plain' });
});
"""


def zip_bomb(size: int) -> bytes:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("zeros.bin", "w", force_zip64=True) as entry:
            chunk = bytes(16 << 20)
            for _ in range(size // len(chunk)):
                entry.write(chunk)
    data = inner.getvalue()
    for layer in range(2):
        outer = io.BytesIO()
        with zipfile.ZipFile(outer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"layer{layer}.zip", data)
        data = outer.getvalue()
    return data


def test_a_zip_bomb_attached_while_a_secret_is_set_is_dropped_and_the_run_ends_with_its_results(
        client: FlaskClient, worker: ProcfileProcess, s3: S3Server, settings: dict[str, str]) -> None:
    """Redaction opens archives to look for secrets; one that would unpack past REDACT_MAX_MB
    (1024 MB by default) is dropped from the report, named, and never stored."""
    bomb = zip_bomb(1280 << 20)
    assert len(bomb) < 8192
    secret = "bomb-secret-" + uuid.uuid4().hex[:12]
    created = client.post("/api/variables", json={"name": "BOMB_SECRET", "value": secret, "secret": True})
    assert created.status_code == 201
    try:
        script = BOMB_ATTACHED.replace("__BOMB__", base64.b64encode(bomb).decode())
        run = wait_for_run(client, start_run(client, script, "attaches a zip bomb")["runId"])
    finally:
        client.delete("/api/variables/BOMB_SECRET")
    assert run["status"] == "passed", run
    message = run["errorMessage"] or ""
    assert message.startswith("Dropped from this run's report while removing secrets: "), message
    # The bomb, and the trace that holds it as a resource (a zip nested one level deeper).
    dropped = dict(re.findall(r"(report/data/\w+\.zip) \(([^)]*)\)", message))
    assert "expands past 1024 MB while searching its archives for secrets" in dropped.values(), message
    assert f"run {run['id']}: dropped while removing secrets: " in worker.log()
    keys = s3.keys(settings["S3_TEST_BUCKET_NAME"], f"{run['id']}/")
    assert f"{run['id']}/report/index.html" in keys and not [path for path in dropped if f"{run['id']}/{path}" in keys]
    objects = s3.client()
    bucket = settings["S3_TEST_BUCKET_NAME"]
    files = [item for key in keys for item in opened(key, objects.get_object(Bucket=bucket, Key=key)["Body"].read())]
    assert [name for name, data in files if b"the secret is [secret]" in data]  # the note, in the report's data
    assert not [name for name, data in files if secret.encode() in data]
