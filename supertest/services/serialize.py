"""The JSON shapes of API.md: camelCase keys, ISO 8601 times in UTC."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from supertest.models import Run, TestResult, as_utc


def iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat().replace("+00:00", "Z") if moment else None


# The paths are part of the HTTP contract (API.md), and workers build them without a request.
def report_url(run_id: str) -> str:
    return f"/api/test-results/{run_id}/report/index.html"


def run_links(run: Run) -> dict[str, str]:
    return {
        "reportUrl": report_url(run.id),
        "statusUrl": f"/api/test-status/sse/{run.id}",
        "url": f"/api/runs/{run.id}",
    }


def result_json(result: TestResult) -> dict[str, Any]:
    return {
        "title": result.title,
        "file": result.file,
        "status": result.status,
        "durationMs": result.duration_ms,
        "retries": result.retries,
        "error": result.error,
    }


def run_json(run: Run, with_tests: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": run.id,
        "kind": run.kind,
        "testId": run.test_id,
        "jobId": None,
        "title": run.title,
        "status": run.status,
        "createdAt": iso(run.created_at),
        "startedAt": iso(run.started_at),
        "finishedAt": iso(run.finished_at),
        "durationMs": run.duration_ms,
        "attempt": run.attempt,
        "errorMessage": run.error_message,
        "reportUrl": report_url(run.id) if run.report_store else None,
        "summary": {"total": run.total, "passed": run.passed, "failed": run.failed,
                    "flaky": run.flaky, "skipped": run.skipped},
    }
    if with_tests:
        data["tests"] = [result_json(result) for result in run.results]
    return data
