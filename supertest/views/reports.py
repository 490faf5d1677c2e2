"""The report proxy: a run's Playwright HTML report and its files, from S3 or the local disk.

Two ways in: the API's URL, for token holders (curl, CI), which sends a browser on to a signed link
on the reports origin; and that signed link, the only thing the reports origin serves.
"""
from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify, redirect, request

from supertest import splice
from supertest.errors import NotFound, Problem
from supertest.execution.workspace import JUNIT
from supertest.models import Run
from supertest.services import report_links, runs
from supertest.storage import BadReportPath, RangeNotSatisfiable, report_key
from supertest.views.responses import found

bp = Blueprint("reports", __name__)
# no-referrer: a report's links to other sites must not hand them its signed URL.
HEADERS = {"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer"}
# On the app's own origin a report runs sandboxed: an opaque origin, no cookies, no same-origin requests.
SANDBOX = {"Content-Security-Policy": "sandbox allow-scripts allow-popups allow-downloads allow-forms allow-modals"}


@bp.get("/api/test-results/<run_id>/<path:path>")
def report_file(run_id: str, path: str):
    """Stream one file of a run's report, honouring Range so videos seek; a browser signed in with a
    session is sent to the reports origin instead, when there is one."""
    run = found(runs.get, run_id, "run")
    if not g.get("by_token") and report_links.origin() and path.startswith("report/"):
        _check(run, path)
        return redirect(report_links.url(run.id, path.removeprefix("report/")), 302)
    response = _serve(run, path)
    response.headers.update(SANDBOX)
    return response


@bp.get("/api/test-results/<run_id>/shards/<int:index>/<path:path>")
def shard_report_file(run_id: str, index: int, path: str):
    """A file of one shard's own report (a sharded run keeps them, most of all when the merge failed)."""
    run = found(runs.get, run_id, "run")
    if not g.get("by_token") and report_links.origin() and path.startswith("report/"):
        _shard_key(run, index, path)
        return redirect(report_links.url(f"{run.id}/shard-{index}", path.removeprefix("report/")), 302)
    response = _serve_shard(run, index, path)
    response.headers.update(SANDBOX)
    return response


@bp.get("/api/runs/<run_id>/junit.xml")
def junit_report(run_id: str):
    """Playwright's JUnit report of a finished run, stored with its HTML report, for CI."""
    run = found(runs.get, run_id, "run")
    if not run.finished:
        # A 404, not the report proxy's 202: `curl --fail` in CI must not save {"status": ...} as a report.
        raise NotFound(f"the run has not finished ({run.status}); its JUnit report does not exist yet",
                       {"status": run.status}, code="no_report")
    response = _serve(run, f"report/{JUNIT}")
    response.content_type = "application/xml"
    # The file is the test's to write (it runs in the run's folder), so it is served as untrusted as
    # a report is: an XML document can hold XHTML and script, which a sandbox keeps off this origin.
    response.headers.update(SANDBOX)
    return response


@bp.get("/r/<signature>/<path:path>")
def signed_file(signature: str, path: str):
    """A file of a report on the reports origin, for whoever holds a live link to it."""
    try:
        run_id = report_links.run_id_of(signature)
    except report_links.LinkExpired:
        raise Problem("This report link has expired; open the run's page again.", status=403,
                      code="link_expired") from None
    # A shard's own report is signed as "<run id>/shard-<index>".
    run_id, _, shard = (run_id or "").partition("/shard-")
    run = runs.get(run_id) if run_id else None
    if run is None:
        raise NotFound("No such report.")
    if shard:
        return _serve_shard(run, int(shard), f"report/{path}")
    return _serve(run, f"report/{path}")


def _check(run: Run, path: str) -> tuple[str, str]:
    """Where the run's report is, and the storage key of `path` in it, once there is a report."""
    try:
        key = report_key(run.id, path)
    except BadReportPath:
        raise Problem("that path is not inside the run's report", {"path": path}, code="invalid_path") from None
    if not run.finished:
        raise NotYet(run.status)
    if run.report_store is None:
        raise NotFound(run.error_message or "This run finished without a report.", code="no_report")
    return run.report_store, key


def _shard_key(run: Run, index: int, path: str) -> tuple[str, str]:
    """Where a shard's report is, and the storage key of `path` in it."""
    shard = next((shard for shard in run.run_shards if shard.index == index), None)
    if shard is None or shard.report_store is None:
        raise NotFound("this shard has no report of its own", code="no_report")
    try:
        return shard.report_store, report_key(f"{run.id}/shard-{index}", path)
    except BadReportPath:
        raise Problem("that path is not inside the shard's report", {"path": path}, code="invalid_path") from None


def _serve_shard(run: Run, index: int, path: str) -> Response:
    where, key = _shard_key(run, index, path)
    return _stream(where, run.kind, key, f"the shard's report has no file {path!r}")


class NotYet(Exception):
    """The run has not finished: its report does not exist yet."""


@bp.errorhandler(NotYet)
def not_yet(error: NotYet):
    return jsonify({"status": str(error)}), 202


def _serve(run: Run, path: str) -> Response:
    where, key = _check(run, path)
    return _stream(where, run.kind, key, f"the report has no file {path!r}")


def _stream(where: str, kind: str, key: str, missing: str) -> Response:
    """The file at `key`, from where its report is. Its bytes may go from S3 to the client's socket
    in the kernel, past Flask and gunicorn (splice.client_socket says when)."""
    try:  # StorageError (S3 unreachable) is a 503 like everywhere else
        file = current_app.extensions["reports"].open(where, kind, key, request.headers.get("Range"),
                                                      splice.client_socket(request.environ))
    except RangeNotSatisfiable:
        return Response(status=416, headers={"Content-Range": "bytes */*"})
    if file is None:
        raise NotFound(missing)
    headers = {**HEADERS, "Accept-Ranges": "bytes", "Content-Length": str(file.length)}
    if file.partial:
        headers["Content-Range"] = f"bytes {file.start}-{file.start + file.length - 1}/{file.total}"
    return Response(file.body, status=206 if file.partial else 200, mimetype=file.content_type,
                    headers=headers, direct_passthrough=True)
