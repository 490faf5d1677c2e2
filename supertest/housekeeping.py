"""Periodic work in every worker process, beside the runs: reaping runs whose worker was lost,
uploading reports kept on disk while storage was down, telling health about the sandbox, and
deleting runs past their retention."""
from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

import dramatiq
from dramatiq.middleware import Middleware
from flask import Flask

from supertest.connections import redis_client
from supertest.execution import preflight, sandbox_problem
from supertest.services import reports, retention, runs

log = logging.getLogger(__name__)
RETENTION_SECONDS = 600  # how often old runs are looked for; retention is counted in days


class Housekeeping(Middleware):
    """Periodic work in every worker process, each job on a thread of its own.

    - Reap: hand back runs whose worker is gone (killed, crashed, cut off): their heartbeat
      stops, and after WORKER_LOST_SECONDS another worker takes them up. Any worker may reap
      any run; the handover is a compare-and-set.
    - Upload the reports this machine kept on disk while object storage was down.
    - Delete finished runs past RUN_RETENTION_DAYS (or their job's retentionDays), reports first.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.stopped = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        config = self.app.config
        for name, seconds, job in (
            ("reaper", config["HEARTBEAT_SECONDS"], lambda: runs.reap(config["WORKER_LOST_SECONDS"])),
            ("report-uploader", config["REPORT_RETRY_SECONDS"], reports.upload_kept_reports),
            ("sandbox-check", config["HEARTBEAT_SECONDS"], self._announce_sandbox),
            ("retention", RETENTION_SECONDS, retention.prune),
        ):
            threading.Thread(target=self._every, args=(seconds, job), name=name, daemon=True).start()
        threading.Thread(target=self._now, args=(self._announce_sandbox,), name="sandbox-check", daemon=True).start()

    def _announce_sandbox(self) -> None:
        """Whether tests can run in this process's sandbox: found once (before its first run, or
        here at start), told to /api/health for as long as this process lives."""
        seconds = max(30, 3 * self.app.config["HEARTBEAT_SECONDS"])
        preflight.announce(redis_client(), self.app.config["QUEUE_NAMESPACE"],
                           f"{socket.gethostname()}:{os.getpid()}", sandbox_problem(), seconds)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stopped.set()

    def _now(self, job: Callable[[], object]) -> None:
        with self.app.app_context():
            try:
                job()
            except Exception:
                log.warning("%s failed", threading.current_thread().name, exc_info=True)

    def _every(self, seconds: float, job: Callable[[], object]) -> None:
        while not self.stopped.wait(seconds):
            with self.app.app_context():
                try:
                    job()
                except Exception:  # the database or Redis is down: try again on the next pass
                    log.warning("%s failed; trying again in %s s", threading.current_thread().name, seconds,
                                exc_info=True)
