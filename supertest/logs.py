"""Log lines that say which run (and job) they concern, as readable text or one JSON object a line.

The run is set once where work on it begins (a worker's execute_run, a web request about a run)
in a context variable, and a filter on every handler copies it onto each record: no log call has
to name it. A context variable belongs to its thread (and greenlet under gevent), so the runs of
one worker's threads never mix; a thread started for a run is given its ids with `carried`.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")
_current: ContextVar[tuple[str | None, str | None]] = ContextVar("supertest_run", default=(None, None))
# Loggers that frameworks give handlers of their own (gunicorn does, and stops them propagating).
FRAMEWORK_LOGGERS = ("gunicorn.error", "gunicorn.access")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What a message may not hold raw in the text format: its words come from users and from what runs
# leave behind (a file name, a URL's path), and a newline there would forge a log line of its own.
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


@contextmanager
def run_context(run_id: str | None, job_id: str | None = None) -> Iterator[None]:
    """Every line logged inside (on this thread) carries this run and job id."""
    token = _current.set((run_id, job_id))
    try:
        yield
    finally:
        _current.reset(token)


def set_run(run_id: str | None, job_id: str | None = None) -> None:
    """Name the run for the rest of this context (a web request's, which ends with it)."""
    _current.set((run_id, job_id))


def carried(target: Callable[..., T]) -> Callable[..., T]:
    """`target`, run with this thread's run and job ids: for a thread started on a run's behalf, which
    would start without them. Only these ids, not a copy of the whole context (Flask's app context
    is in it too, and a thread must not share the caller's database session)."""
    run_id, job_id = _current.get()

    def carrying(*args: Any, **kwargs: Any) -> T:
        with run_context(run_id, job_id):
            return target(*args, **kwargs)
    return carrying


def current() -> tuple[str | None, str | None]:
    return _current.get()


class RunFilter(logging.Filter):
    """Puts the current run and job ids on every record (`runId`, `jobId`; None when unset)."""

    def filter(self, record: logging.LogRecord) -> bool:
        run_id, job_id = _current.get()
        if not hasattr(record, "runId"):
            record.runId = run_id
        if not hasattr(record, "jobId"):
            record.jobId = job_id
        return True


class TextFormatter(logging.Formatter):
    """A readable line, as before (the handler's own format, dramatiq's or gunicorn's when they set
    one), with ` run=<id> job=<id>` at its end when the line concerns a run."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__(TEXT_FORMAT)
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if CONTROL.search(message):  # escaped on a copy: other handlers get the record as it was
            escaped = CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode(), message)
            record = logging.makeLogRecord({**record.__dict__, "msg": escaped, "args": None})
        line = self.inner.format(record) if self.inner else super().format(record)
        context = "".join(f" {name}={value}" for name, value in
                          (("run", getattr(record, "runId", None)), ("job", getattr(record, "jobId", None))) if value)
        if not context:
            return line
        first, newline, rest = line.partition("\n")  # after the message, before a traceback
        return f"{first}{context}{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, runId, jobId, exception (when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "runId": getattr(record, "runId", None),
            "jobId": getattr(record, "jobId", None),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(log_format: str, level: int = logging.INFO) -> None:
    """Set up logging once for this process: the root logger's handlers (one on stderr when there is
    none; dramatiq's when it made them) and gunicorn's, each with the run filter and the format."""
    root = logging.getLogger()
    if not root.handlers:  # as logging.basicConfig: a level only with the handler (dramatiq's -v sets its own)
        root.addHandler(logging.StreamHandler())
        root.setLevel(level)
    handlers = list(root.handlers)
    for name in FRAMEWORK_LOGGERS:
        handlers += logging.getLogger(name).handlers
    for handler in handlers:
        if any(isinstance(each, RunFilter) for each in handler.filters):
            continue  # configured already (a second app in the same process: tests)
        handler.addFilter(RunFilter())
        inner = handler.formatter
        handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(inner))
