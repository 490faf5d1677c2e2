"""The JSON shapes of docs/api.md: camelCase keys, ISO 8601 times in UTC."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from supertest.models import Channel, Job, JobSchedule, Run, RunShard, RunTest, Test, TestResult, Variable, as_utc


def iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat().replace("+00:00", "Z") if moment else None


# The paths are part of the HTTP contract (docs/api.md), and workers build them without a request.
def report_url(run_id: str) -> str:
    return f"/api/test-results/{run_id}/report/index.html"


def run_links(run: Run) -> dict[str, str]:
    status = "job-status" if run.kind == "job" else "test-status"
    return {
        "reportUrl": report_url(run.id),
        "statusUrl": f"/api/{status}/sse/{run.id}",
        "url": f"/api/runs/{run.id}",
    }


def test_json(test: Test) -> dict[str, Any]:
    return {
        "id": test.id,
        "title": test.title,
        "description": test.description,
        "script": test.script,
        "createdAt": iso(test.created_at),
        "updatedAt": iso(test.updated_at),
        "url": f"/api/tests/{test.id}",
    }


def job_json(job: Job, tests: Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
    """A job; `tests`: its tests as (id, title) in order, when a list has read them already
    (jobs.listed_tests), rather than from its entries."""
    if tests is None:
        tests = [(test.id, test.title) for test in job.tests]
    return {
        "id": job.id,
        "name": job.name,
        "description": job.description,
        "retries": job.retries,
        "timeoutMs": job.timeout_ms,
        "retentionDays": job.retention_days,
        "shards": "auto" if job.shards == 0 else job.shards,
        "testIds": [test_id for test_id, _ in tests],
        "alerts": alerts_json(job),
        "tests": [{"id": test_id, "title": title} for test_id, title in tests],
        "createdAt": iso(job.created_at),
        "updatedAt": iso(job.updated_at),
        "lastRunAt": iso(job.last_run_at),
        "schedule": schedule_json(job.schedule),
        "nextRunAt": iso(job.schedule.next_run_at) if job.schedule and job.schedule.enabled else None,
        "url": f"/api/jobs/{job.id}",
    }


def schedule_json(schedule: JobSchedule | None) -> dict[str, Any] | None:
    if schedule is None:
        return None
    return {"cron": schedule.cron, "timezone": schedule.timezone, "enabled": schedule.enabled,
            "overlap": schedule.overlap, "graceSeconds": schedule.grace_seconds}


def run_test_json(run_test: RunTest) -> dict[str, Any]:
    return {"testId": run_test.test_id, "title": run_test.title, "file": run_test.filename, "status": run_test.status}


def result_json(result: TestResult) -> dict[str, Any]:
    return {
        "testId": result.run_test.test_id if result.run_test else None,
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
        "jobId": run.job_id,
        "title": run.title,
        "trigger": run.trigger,
        "scheduledFor": iso(run.scheduled_for),
        "retries": run.retries,
        "timeoutMs": run.timeout_ms,
        "restartedBecause": run.restarted_because,
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
    if run.shards != 1:  # the plan, and each shard's progress (services/shards.py)
        data["shards"] = [shard_json(shard) for shard in run.run_shards]
    if with_tests:
        data["specs"] = [run_test_json(run_test) for run_test in run.run_tests]
        data["tests"] = [result_json(result) for result in run.results]
    return data


def shard_json(shard: RunShard) -> dict[str, Any]:
    return {"index": shard.index, "files": list(shard.files), "expectedMs": shard.expected_ms,
            "status": shard.status, "attempt": shard.attempt, "worker": shard.worker,
            "durationMs": shard.duration_ms,
            "reportUrl": f"/api/test-results/{shard.run_id}/shards/{shard.index}/report/index.html"
            if shard.report_store else None}


def cases_by_run_test(run: Run) -> dict[int | None, list[dict[str, Any]]]:
    """A run's results grouped under the test (RunTest id) they came from, for the run page."""
    grouped: dict[int | None, list[dict[str, Any]]] = {}
    for result in run.results:
        grouped.setdefault(result.run_test_id, []).append(result_json(result))
    return grouped


def variable_json(variable: Variable) -> dict[str, Any]:
    """A variable; a secret's value is never sent back."""
    return {"name": variable.name, "secret": variable.secret, "value": None if variable.secret else variable.value,
            "createdAt": iso(variable.created_at), "updatedAt": iso(variable.updated_at)}


def alerts_json(job: Job) -> dict[str, Any]:
    """A job's alert rule (docs/api.md), with the defaults when it has none."""
    rule = job.alerts
    if rule is None:
        return {"channelIds": [], "afterFailures": 1, "onRecovery": True, "onMissed": True, "everyFailure": False,
                "remindHours": None}
    return {"channelIds": [channel.id for channel in rule.channels], "afterFailures": rule.after_failures,
            "onRecovery": rule.on_recovery, "onMissed": rule.on_missed, "everyFailure": rule.every_failure,
            "remindHours": rule.remind_hours}


def channel_json(channel: Channel, failing: bool = False) -> dict[str, Any]:
    """A channel; its target and secret are never sent back, only a hint of the target."""
    return {"id": channel.id, "name": channel.name, "type": channel.type, "target": None,
            "targetHint": channel.target_hint, "failing": failing, "createdAt": iso(channel.created_at),
            "updatedAt": iso(channel.updated_at), "url": f"/api/channels/{channel.id}"}
