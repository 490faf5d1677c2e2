"""Pages for saved tests: the list, one test with its history, and saving from the playground."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template, request, url_for

from supertest.errors import Problem
from supertest.models import Test
from supertest.services import history, tests
from supertest.services.validation import MAX_TITLE_CHARS, ValidationError, test_fields
from supertest.views.responses import found, go, page_or_fragment, runs_page

bp = Blueprint("test_pages", __name__, url_prefix="/tests")
PAGE_SIZE = 50  # tests on a page of the list, each with its strip of 30 squares


@bp.get("")
def index():
    """Saved tests a page at a time by title (`q`: those whose title contains it), with how their recent runs went."""
    search = request.args.get("q", "").strip()[:MAX_TITLE_CHARS]  # no title is longer
    if "\x00" in search:  # it goes into the query: a NUL is a 500 on PostgreSQL
        raise Problem("A search cannot hold a NUL character.")
    try:
        page = tests.page_saved(PAGE_SIZE, request.args.get("cursor") or None, search)
    except ValueError:
        raise Problem("That page of tests does not exist (a cursor this site did not give out).") from None
    outcomes = history.test_strips(test.id for test in page.items)
    return render_template("tests/list.html", page=page, search=search, outcomes=outcomes,
                           stats={test_id: history.test_stats(strip) for test_id, strip in outcomes.items()})


@bp.post("")
def create():
    """Save the playground's script as a new test."""
    return save(None)


@bp.get("/<test_id>")
def show(test_id: str):
    """One test: its script, its history strip and counts, and its runs a page at a time."""
    test = found(tests.get_saved, test_id, "saved test")
    outcomes = history.test_outcomes(test.id)
    return page_or_fragment("tests/show.html", "runs/_table.html", test=test, page=runs_page(test_id=test.id),
                            outcomes=outcomes, stats=history.test_stats(outcomes))


@bp.post("/<test_id>")
def update(test_id: str):
    """Save the playground's script over this test."""
    return save(found(tests.get_saved, test_id, "saved test"))


def save(test: Test | None):
    try:
        fields = test_fields(request.form.to_dict(), current_app.config["MAX_SCRIPT_BYTES"],
                             tests.as_fields(test) if test else None)
    except ValidationError as error:
        return render_template("runs/_invalid.html", message=error.message, verb="Not saved"), 422
    saved = tests.update(test, fields) if test else tests.create(fields)
    return go(url_for("test_pages.show", test_id=saved.id))


@bp.post("/<test_id>/run")
def run(test_id: str):
    """Queue a run of the test as saved, and go and watch it."""
    test = found(tests.get_saved, test_id, "saved test")
    started = tests.start_run(test, trigger="ui")
    return go(url_for("pages.run", run_id=started.id))


@bp.post("/<test_id>/delete")
def delete(test_id: str):
    """Delete the test with its own runs and their reports."""
    test = found(tests.get_saved, test_id, "saved test")
    tests.delete(test)
    return go(url_for("test_pages.index"))
