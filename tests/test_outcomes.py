"""What cases, tests and runs count as (supertest/outcomes.py), as tables."""
from __future__ import annotations

import pytest

from supertest import outcomes


@pytest.mark.parametrize(("outcome", "last", "expected"), [
    ("expected", "passed", "passed"),
    ("unexpected", "failed", "failed"),
    ("unexpected", "timedOut", "timedOut"),
    ("flaky", "passed", "flaky"),
    ("skipped", "skipped", "skipped"),
    ("skipped", "interrupted", "interrupted"),  # stopped at the run's time limit, not skipped by the test
    (None, None, "skipped"),  # no result at all
])
def test_a_case_status_comes_from_playwrights_outcome_and_last_result(outcome, last, expected) -> None:
    assert outcomes.case_status(outcome, last) == expected


@pytest.mark.parametrize(("will_retry", "outcome", "status", "expected"), [
    (True, None, "failed", "retrying"),
    (False, "flaky", "passed", "flaky"),
    (False, "expected", "passed", "passed"),
    (False, "unexpected", "timedOut", "timedOut"),
])
def test_a_case_as_it_finishes(will_retry, outcome, status, expected) -> None:
    assert outcomes.live_case_status(will_retry, outcome, status) == expected


@pytest.mark.parametrize(("statuses", "expected"), [
    (["passed", "passed"], "passed"),
    (["passed", "flaky"], "flaky"),
    (["flaky", "failed"], "failed"),
    (["passed", "timedOut"], "failed"),
    (["passed", "interrupted"], "failed"),
    (["skipped", "skipped"], "skipped"),
    (["skipped", "passed"], "passed"),
    ([], "passed"),
])
def test_a_test_is_the_worst_of_its_cases(statuses, expected) -> None:
    assert outcomes.test_outcome(statuses) == expected


@pytest.mark.parametrize(("statuses", "named", "errors", "run", "expected"), [
    (["passed"], False, False, "passed", "passed"),
    (["failed"], False, False, "failed", "failed"),
    ([], True, True, "error", "error"),  # its own file does not compile
    ([], False, True, "error", "skipped"),  # another file did not compile, so nothing ran
    ([], False, False, "timeout", "timeout"),
    ([], False, False, "cancelled", "cancelled"),
    ([], False, False, "failed", "error"),  # no cases in a run that otherwise ended: something broke
])
def test_a_test_without_cases_shares_the_fate_it_met(statuses, named, errors, run, expected) -> None:
    assert outcomes.test_fate(statuses, named, errors, run) == expected


def test_a_summary_counts_every_status_that_is_not_good_as_failed() -> None:
    assert outcomes.summary(["passed", "flaky", "skipped", "failed", "timedOut", "interrupted", "passed"]) == {
        "total": 7, "passed": 2, "flaky": 1, "skipped": 1, "failed": 3}
    assert outcomes.summary([]) == {"total": 0, "passed": 0, "flaky": 0, "skipped": 0, "failed": 0}


def test_terminal_statuses_and_the_words_of_the_contract() -> None:
    assert outcomes.TERMINAL == {"passed", "failed", "error", "timeout", "cancelled"}
    assert list(outcomes.STATUSES) == ["pending", "running", "passed", "failed", "error", "timeout", "cancelled"]
    assert outcomes.run_passed(["passed", "flaky", "skipped"]) and not outcomes.run_passed(["passed", "failed"])
