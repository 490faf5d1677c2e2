"""Read the results our reporter wrote into per-test results and a run status."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supertest.outcomes import PASSED, CaseResult, case_status

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MAX_ERROR_CHARS = 8000


@dataclass
class Report:
    tests: list[CaseResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # errors outside any test: compile errors and the like


def clean(text: str, run_dir: Path) -> str:
    """Readable text: no colour codes, and paths relative to the run, not the worker's disk."""
    text = ANSI.sub("", text).replace(f"{run_dir}/tests/", "").replace(f"{run_dir}/", "")
    return text[:MAX_ERROR_CHARS]


def read_report(path: Path, run_dir: Path) -> Report | None:
    """The results our reporter wrote (reporter.js), or None when Playwright did not get that far."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return Report(tests=[_case(test, run_dir) for test in data.get("tests", [])],
                  errors=[_error_text(error, run_dir) for error in data.get("errors", [])])


def _case(test: dict[str, Any], run_dir: Path) -> CaseResult:
    results = test.get("results") or [{}]
    status = case_status(test.get("outcome"), results[-1].get("status"))
    errors = [_error_text(e, run_dir) for r in results for e in r.get("errors", [])]
    return CaseResult(
        title=test.get("title", ""),
        file=test.get("file", ""),
        status=status,
        duration_ms=int(sum(r.get("duration", 0) for r in results)),
        retries=max(0, len(results) - 1),
        error=("\n\n".join(errors) or None) if status != PASSED else None,
    )


def _error_text(error: dict[str, Any], run_dir: Path) -> str:
    message = error.get("message") or error.get("value") or "unknown error"
    snippet = error.get("snippet")
    location = error.get("location")
    where = f"{Path(location['file']).name}:{location['line']}:{location['column']}\n" if location else ""
    # Playwright puts the snippet inside some messages already; don't show it twice.
    body = message if not snippet or snippet in message else f"{message}\n\n{snippet}"
    return clean(f"{where}{body}", run_dir)
