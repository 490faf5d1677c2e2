"""JSON endpoints for jobs (suites): /api/jobs."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from supertest.models import Job
from supertest.services import jobs, schedules
from supertest.services.serialize import job_json
from supertest.services.validation import ValidationError, job_fields
from supertest.views.responses import found, json_body, start_response

bp = Blueprint("api_jobs", __name__, url_prefix="/api/jobs")
MAX_SLOTS = 100


def found_job(job_id: str) -> Job:
    return found(jobs.get, job_id, "job")


@bp.get("")
def list_jobs():
    """Every job, by name; `scheduled=true`: only the jobs with a schedule."""
    scheduled = request.args.get("scheduled", "").lower()
    if scheduled not in ("", "true", "false"):
        raise ValidationError("scheduled must be true or false", "scheduled", status=400, code="invalid_parameter")
    listed = jobs.list_jobs(scheduled=scheduled == "true")
    tests = jobs.listed_tests(job.id for job in listed)
    return jsonify({"items": [job_json(job, tests[job.id]) for job in listed]})


@bp.get("/<job_id>/slots")
def list_slots(job_id: str):
    """The job's schedule slots, newest first: what became of each time its schedule came due."""
    job = found_job(job_id)
    raw = request.args.get("limit", "20")
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_SLOTS:
        raise ValidationError(f"limit must be a whole number from 1 to {MAX_SLOTS}", "limit", status=400,
                              code="invalid_parameter")
    return jsonify({"items": [schedules.slot_json(slot) for slot in schedules.slots_of(job.id, int(raw))]})


@bp.post("")
def create_job():
    """Make a job from a name, a description and saved tests in order."""
    job = jobs.create(job_fields(json_body()))
    return jsonify(job_json(job)), 201, {"Location": f"/api/jobs/{job.id}"}


@bp.get("/<job_id>")
def get_job(job_id: str):
    """One job and its tests in order."""
    return jsonify(job_json(found_job(job_id)))


@bp.put("/<job_id>")
def update_job(job_id: str):
    """Change a job; fields left out keep their value, `testIds` replaces the list and its order."""
    job = found_job(job_id)
    return jsonify(job_json(jobs.update(job, job_fields(json_body(), jobs.as_fields(job)))))


@bp.delete("/<job_id>")
def delete_job(job_id: str):
    """Delete a job, its runs and their reports; its tests stay."""
    deleted = jobs.delete(found_job(job_id))
    return jsonify({"deleted": job_id, "deletedRuns": deleted})


@bp.post("/run")
def run_job_by_body():
    """Queue a run of the job named by `jobId`, or by its `jobName` (CI scripts know the name, not
    the id); its tests are read from the database."""
    body = json_body()
    if "jobId" in body and "jobName" in body:
        raise ValidationError("send jobId or jobName, not both", "jobName")
    if "jobName" in body:
        name = body["jobName"]
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("jobName must be a job's name, as a string", "jobName")
        return start_response(jobs.start_run(jobs.named(name), trigger="api"))
    job_id = body.get("jobId")
    if not isinstance(job_id, str):
        raise ValidationError("jobId (or jobName) is required, as a string", "jobId")
    return start_response(jobs.start_run(found(jobs.get, job_id, "job", "jobId"), trigger="api"))


@bp.post("/<job_id>/run")
def run_job(job_id: str):
    """Queue a run of the job."""
    return start_response(jobs.start_run(found_job(job_id), trigger="api"))
