"""Pages for jobs: the list, one job with its history, the edit form, running and deleting."""
from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, render_template, request, url_for

from supertest import cron
from supertest.models import Job, utcnow
from supertest.services import alerts, channels, history, jobs, schedules, shards, tests
from supertest.services.serialize import alerts_json
from supertest.services.validation import ValidationError, is_id, job_fields, schedule_fields
from supertest.views.responses import found, go, page_or_fragment, runs_page

bp = Blueprint("job_pages", __name__, url_prefix="/jobs")
POSITION = re.compile(r"[0-9]{1,4}")
RECENT_SLOTS = 10


@bp.get("")
def index():
    """Every job, with how its recent runs went."""
    listed = jobs.list_jobs()
    return render_template("jobs/list.html", jobs=listed, tests=jobs.listed_tests(job.id for job in listed),
                           outcomes=history.job_strips(job.id for job in listed))


@bp.get("/<job_id>")
def show(job_id: str):
    """One job: its tests in order, the Run button, its schedule, history strip and runs a page at a time."""
    job = found(jobs.get, job_id, "job")
    return page_or_fragment("jobs/show.html", "runs/_table.html", job=job, page=runs_page(job_id=job.id),
                            outcomes=history.job_outcomes(job.id), deliveries=alerts.recent(job.id, 10),
                            slots=schedules.slots_of(job.id, RECENT_SLOTS))


@bp.get("/schedule-preview")
def schedule_preview():
    """The schedule being typed, in words with its next three times (the form asks as you type). A bad
    one is described with the message saving it would give, as a 200: it is a preview, not a refusal."""
    timezone = request.args.get("timezone", "").strip() or "UTC"
    found_preview = preview_of(request.args.get("cron", "").strip(), timezone)
    return render_template("jobs/_schedule_preview.html", preview=found_preview["schedule_preview"],
                           error=found_preview["schedule_error"], timezone=timezone)


@bp.route("/new", methods=["GET", "POST"])
def new():
    """The form for a new job."""
    return edit_form(None)


@bp.route("/<job_id>/edit", methods=["GET", "POST"])
def edit(job_id: str):
    """The form for a job: name, description, retries, and which tests in which order."""
    return edit_form(found(jobs.get, job_id, "job"))


def edit_form(job: Job | None):
    """GET shows the form; a POST either changes the test list (add, move, remove: the form comes
    back changed, nothing saved) or saves it. Works the same with and without JavaScript."""
    if request.method == "GET":
        draft = jobs.as_fields(job) if job else {"name": "", "description": "", "retries": 0, "timeout_ms": None,
                                                 "test_ids": [], "shards": 1}
        draft["shards"] = "auto" if draft["shards"] == shards.AUTO else str(draft["shards"])
        draft["minutes"] = f"{draft.pop('timeout_ms') / 60_000:g}" if draft.get("timeout_ms") else ""
        draft["alerts"] = alerts_json(job) if job else alerts_json(Job())
        schedule = draft.pop("schedule", None) or {}
        draft.update(cron=schedule.get("cron", ""), timezone=schedule.get("timezone", "UTC"),
                     enabled=schedule.get("enabled", True), overlap=schedule.get("overlap", "skip"),
                     grace=str(schedule.get("graceSeconds", 120)))
        return render_form(job, draft)
    draft = {"name": request.form.get("name", ""), "description": request.form.get("description", ""),
             "retries": request.form.get("retries", "0"), "minutes": request.form.get("minutes", "").strip(),
             "test_ids": request.form.getlist("testIds"), "cron": request.form.get("cron", "").strip(),
             "timezone": request.form.get("timezone", "").strip() or "UTC",
             "enabled": request.form.get("enabled") == "on", "overlap": request.form.get("overlap", "skip"),
             "grace": request.form.get("grace", "120").strip(), "alerts": alerts_from_form(),
             "shards": request.form.get("shards", "").strip()}
    action = request.form.get("action", "save")
    if action != "save":
        draft["test_ids"] = rearrange(draft["test_ids"], action, request.form.get("add", ""))
        return render_form(job, draft)
    try:
        retries = int(draft["retries"])
        timeout_ms = round(float(draft["minutes"]) * 60_000) if draft["minutes"] else None
        draft["alerts"]["afterFailures"] = int(draft["alerts"]["afterFailures"])
        hours = draft["alerts"]["remindHours"]
        draft["alerts"]["remindHours"] = int(hours) if hours else None
        grace = int(draft["grace"] or "120")
    except (ValueError, OverflowError):  # round() raises OverflowError for "inf" and "1e400"
        return render_form(job, draft, "retries, the time limit, the grace and the alert numbers must be numbers"), 422
    try:
        # The form has no retention field: a job keeps the retentionDays the API gave it.
        data = {"name": draft["name"], "description": draft["description"], "retries": retries,
                "timeoutMs": timeout_ms, "retentionDays": job.retention_days if job else None,
                "testIds": draft["test_ids"], "alerts": draft["alerts"],
                "schedule": {"cron": draft["cron"], "timezone": draft["timezone"], "enabled": draft["enabled"],
                             "overlap": draft["overlap"], "graceSeconds": grace} if draft["cron"] else None}
        # A form without the field (a page from before it) keeps the job's.
        data["shards"] = shards_from_form(draft["shards"]) if "shards" in request.form else \
            ("auto" if job.shards == shards.AUTO else job.shards) if job else 1
        saved = jobs.update(job, job_fields(data)) if job else jobs.create(job_fields(data))
    except ValidationError as error:
        return render_form(job, draft, error.message), 422
    return go(url_for("job_pages.show", job_id=saved.id))


def shards_from_form(text: str) -> int | str:
    """The shards field: empty is 1, a whole number is that number, and anything else goes as
    typed ("auto", or what validation then refuses with its message, shown like any field's)."""
    text = text.strip().lower() or "1"
    return int(text) if text.isascii() and text.isdigit() else text


def alerts_from_form() -> dict[str, Any]:
    """The form's alert rule, as the API takes it (numbers still as typed; checked on save)."""
    form = request.form
    return {"channelIds": form.getlist("alertChannelIds"), "afterFailures": form.get("afterFailures", "1"),
            "onRecovery": bool(form.get("onRecovery")), "onMissed": bool(form.get("onMissed")),
            "everyFailure": bool(form.get("everyFailure")), "remindHours": form.get("remindHours", "").strip()}


def rearrange(test_ids: list[str], action: str, added: str) -> list[str]:
    """Apply one button of the form: "add", "up:<i>", "down:<i>" or "remove:<i>"."""
    ids = list(test_ids)
    verb, _, where = action.partition(":")
    if verb == "add":
        return ids + [added] if is_id(added) and added not in ids else ids
    # Not isdigit(): it is true for "²", which int() refuses; and a position has at most a few digits.
    if not POSITION.fullmatch(where) or int(where) >= len(ids):
        return ids
    i = int(where)
    if verb == "remove":
        del ids[i]
    elif verb == "up" and i > 0:
        ids[i - 1], ids[i] = ids[i], ids[i - 1]
    elif verb == "down" and i < len(ids) - 1:
        ids[i + 1], ids[i] = ids[i], ids[i + 1]
    return ids


def render_form(job: Job | None, draft: dict[str, Any], error: str | None = None) -> str:
    available = tests.list_saved()
    by_id = {test.id: test for test in available}
    chosen = [by_id[test_id] for test_id in draft["test_ids"] if test_id in by_id]
    return render_template("jobs/form.html", job=job, draft=draft, chosen=chosen, error=error,
                           addable=[test for test in available if test.id not in draft["test_ids"]],
                           channels=channels.list_all(),
                           **preview_of(draft["cron"], draft["timezone"]))


def preview_of(expression: str, timezone: str) -> dict[str, Any]:
    """The schedule preview's context: its words and next three times, or what is wrong with it."""
    if not expression:
        return {"schedule_preview": None, "schedule_error": None}
    try:
        checked = schedule_fields({"cron": expression, "timezone": timezone})
    except ValidationError as error:
        return {"schedule_preview": None, "schedule_error": error.message}
    assert checked is not None
    return {"schedule_error": None, "schedule_preview": {
        "words": cron.explain(checked["cron"]), "times": cron.next_times(checked["cron"], timezone, utcnow(), 3)}}


@bp.post("/<job_id>/run")
def run(job_id: str):
    """Queue a run of the job and go and watch it."""
    job = found(jobs.get, job_id, "job")
    started = jobs.start_run(job, trigger="ui")
    return go(url_for("pages.run", run_id=started.id))


@bp.post("/<job_id>/delete")
def delete(job_id: str):
    """Delete the job with its runs and their reports; its tests stay."""
    job = found(jobs.get, job_id, "job")
    jobs.delete(job)
    return go(url_for("job_pages.index"))
