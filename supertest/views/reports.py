"""The report proxy: a run's Playwright HTML report and its files, from S3 or the local disk."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request, send_file

from supertest.storage import LOCAL, S3, BadReportPath, RangeNotSatisfiable, ReportFile, StorageError, \
    content_type, report_key
from supertest.views.api import found_run
from supertest.views.errors import ApiError

bp = Blueprint("reports", __name__, url_prefix="/api")
HEADERS = {"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"}


@bp.get("/test-results/<run_id>/<path:path>")
def report_file(run_id: str, path: str):
    """Stream one file of a run's report, honouring Range so videos seek."""
    run = found_run(run_id)
    try:
        key = report_key(run_id, path)
    except BadReportPath:
        raise ApiError(400, "invalid_path", "that path is not inside the run's report", {"path": path}) from None
    if not run.finished:
        return jsonify({"status": run.status}), 202
    if run.report_store is None:
        raise ApiError(404, "no_report", run.error_message or "This run finished without a report.")
    store = current_app.extensions["reports"]
    bucket = store.bucket(run.kind)
    if run.report_store == S3 and bucket is not None:
        try:
            file = bucket.open(key, request.headers.get("Range"))
        except RangeNotSatisfiable:
            return Response(status=416, headers={"Content-Range": "bytes */*"})
        except StorageError as error:
            raise ApiError(503, "storage_unavailable", f"Report storage is unreachable: {error}",
                           {"service": "storage"}) from None
        if file is None:
            raise ApiError(404, "not_found", f"the report has no file {path!r}")
        return _stream(file)
    local = store.local.path(key)
    if run.report_store != LOCAL or not local.is_file():
        raise ApiError(404, "not_found", f"the report has no file {path!r}")
    response = send_file(local, mimetype=content_type(key), conditional=True, etag=True)
    response.headers.update(HEADERS)
    return response


def _stream(file: ReportFile) -> Response:
    headers = {**HEADERS, "Accept-Ranges": "bytes", "Content-Length": str(file.length)}
    if file.partial:
        headers["Content-Range"] = f"bytes {file.start}-{file.start + file.length - 1}/{file.total}"
    return Response(file.body, status=206 if file.partial else 200, mimetype=file.content_type,
                    headers=headers, direct_passthrough=True)
