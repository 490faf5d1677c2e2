"""What runs, tests and test cases count as: the status words, and the rules that turn one into another.

Words (docs/glossary.md): a *run* is one execution of playground code, a saved test or a job; it
runs one or more *tests* (a test's script, one spec file each); each test holds one or more
*cases* (a `test(...)` call in the script), whose results Playwright reports.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    """A run's status (docs/api.md, "Run status")."""

    PENDING = "pending"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


class CaseStatus(StrEnum):
    """A case's result, as Playwright words it, plus flaky (passed on a retry)."""

    PASSED = "passed"
    FAILED = "failed"
    FLAKY = "flaky"
    SKIPPED = "skipped"
    TIMED_OUT = "timedOut"
    INTERRUPTED = "interrupted"


class Kind(StrEnum):
    TEST = "test"  # playground code or a saved test: one file
    JOB = "job"  # a job's tests, together


class Trigger(StrEnum):
    PLAYGROUND = "playground"
    UI = "ui"  # a Run button
    API = "api"


@dataclass
class CaseResult:
    """One case's result in a run, as the runner read it and the database keeps it."""

    title: str
    file: str
    status: str  # a CaseStatus
    duration_ms: int
    retries: int
    error: str | None


PENDING, RUNNING = Status.PENDING, Status.RUNNING
PASSED, FAILED, ERROR, TIMEOUT, CANCELLED = Status.PASSED, Status.FAILED, Status.ERROR, Status.TIMEOUT, Status.CANCELLED
FLAKY, SKIPPED = CaseStatus.FLAKY, CaseStatus.SKIPPED
STATUSES = tuple(Status)
TERMINAL = frozenset({PASSED, FAILED, ERROR, TIMEOUT, CANCELLED})
# A case that passed on a retry still passed; a skipped one did not fail.
GOOD = frozenset({CaseStatus.PASSED, CaseStatus.FLAKY, CaseStatus.SKIPPED})
# Live only: a case that failed and will be tried again.
RETRYING = "retrying"


def case_status(outcome: str | None, last: str | None) -> str:
    """A case's status from Playwright's `outcome` of the test and the status of its last result."""
    if outcome == "flaky":
        return FLAKY
    if outcome == "skipped" and last != CaseStatus.INTERRUPTED:  # Playwright counts a test stopped
        return SKIPPED                                           # at a time limit as skipped
    return last or SKIPPED


def live_case_status(will_retry: bool, outcome: str | None, status: str | None) -> str:
    """A case's status as it finishes, from our reporter's line."""
    if will_retry:
        return RETRYING
    return FLAKY if outcome == FLAKY else str(status)


def test_outcome(statuses: Iterable[str]) -> str:
    """One test's outcome from the statuses of its cases: the worst of them."""
    statuses = list(statuses)
    if any(status not in GOOD for status in statuses):
        return FAILED
    if FLAKY in statuses:
        return FLAKY
    if statuses and all(status == SKIPPED for status in statuses):
        return SKIPPED
    return PASSED


def test_fate(statuses: list[str], named_in_errors: bool, errors: bool, run_status: str) -> str:
    """A test's outcome in a finished run. Without cases, it did not compile (its file is named in
    an error), was not run because another file did not (Playwright then runs none), or shares
    the run's fate."""
    if statuses:
        return test_outcome(statuses)
    if named_in_errors:
        return ERROR
    if errors:
        return SKIPPED
    return run_status if run_status in (ERROR, TIMEOUT, CANCELLED) else ERROR


def summary(statuses: Iterable[str]) -> dict[str, int]:
    """A run's counts of cases: total, passed, flaky, skipped, and failed (every other status)."""
    statuses = list(statuses)
    counts = {str(name): statuses.count(name) for name in (PASSED, FLAKY, SKIPPED)}
    return {"total": len(statuses), "failed": len(statuses) - sum(counts.values()), **counts}


def run_passed(statuses: Iterable[str]) -> bool:
    """Whether cases that all ran amount to a passed run."""
    return all(status in GOOD for status in statuses)
