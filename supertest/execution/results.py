"""Read the results our reporter wrote into per-test results and a run status.

The file is written inside the sandbox, where the test could write it too (or stop our reporter
from writing it): its content is the test's word about itself, so it is read as hostile input,
bounded in size, count and shape. A test can misreport its own run, nothing more: cases are kept
only for the run's own test files, and every field is checked and clipped before it is stored.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supertest.outcomes import PASSED, CaseResult, CaseStatus, case_status

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MAX_ERROR_CHARS = 8000
MAX_TITLE_CHARS = 2000
MAX_RESULTS_BYTES = 32 * 1024 * 1024  # our reporter writes a few KB a case, without the tests' output
MAX_CASES = 10_000  # per run
MAX_ATTEMPTS = 20  # results per case: retries are at most 5
MAX_ERRORS = 20  # errors per attempt, and outside any test
STATUSES = frozenset(CaseStatus) | {"expected", "unexpected"}


@dataclass
class Report:
    tests: list[CaseResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # errors outside any test: compile errors and the like


def clean(text: str, run_dir: Path) -> str:
    """Readable text: no colour codes, and paths relative to the run, not the worker's disk."""
    text = ANSI.sub("", text).replace(f"{run_dir}/tests/", "").replace(f"{run_dir}/", "")
    return text[:MAX_ERROR_CHARS]


def read_report(path: Path, run_dir: Path, files: set[str]) -> Report | None:
    """The results our reporter wrote (reporter.js) for the run's test `files`, or None when
    Playwright did not get that far (or what is there is not a report we could have written)."""
    try:
        if path.stat().st_size > MAX_RESULTS_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        tests = [test for test in _list(data.get("tests"))[:MAX_CASES]
                 if isinstance(test, dict) and test.get("file") in files]
        return Report(tests=[_case(test, run_dir) for test in tests],
                      errors=[_error_text(error, run_dir) for error in _list(data.get("errors"))[:MAX_ERRORS]])
    except (OSError, ValueError, TypeError, AttributeError, KeyError, RecursionError):
        return None


def _case(test: dict[str, Any], run_dir: Path) -> CaseResult:
    results = [result for result in _list(test.get("results"))[:MAX_ATTEMPTS] if isinstance(result, dict)] or [{}]
    status = case_status(_word(test.get("outcome")), _word(results[-1].get("status")))
    errors = [_error_text(e, run_dir) for r in results for e in _list(r.get("errors"))[:MAX_ERRORS]]
    return CaseResult(
        title=_text(test.get("title"))[:MAX_TITLE_CHARS],
        file=str(test["file"]),
        status=status,
        duration_ms=sum(_count(r.get("duration")) for r in results),
        retries=len(results) - 1,
        error=("\n\n".join(errors)[:MAX_ERROR_CHARS] or None) if status != PASSED else None,
    )


def _error_text(error: Any, run_dir: Path) -> str:
    error = error if isinstance(error, dict) else {}
    message = _text(error.get("message") or error.get("value")) or "unknown error"
    snippet = _text(error.get("snippet"))
    location = error.get("location")
    where = ""
    if isinstance(location, dict):
        where = f"{Path(_text(location.get('file'))).name}:{_count(location.get('line'))}:" \
                f"{_count(location.get('column'))}\n"
    # Playwright puts the snippet inside some messages already; don't show it twice.
    body = message if not snippet or snippet in message else f"{message}\n\n{snippet}"
    return clean(f"{where}{body}", run_dir)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value[:MAX_ERROR_CHARS] if isinstance(value, str) else ""


def _word(value: Any) -> str | None:
    """A status word we know, or None (a status column holds a dozen characters)."""
    return value if isinstance(value, str) and value in STATUSES else None


def _count(value: Any) -> int:
    """A non-negative whole number of a sane size (milliseconds, a line number), else 0."""
    return int(value) if isinstance(value, int | float) and 0 <= value < 10**12 else 0
