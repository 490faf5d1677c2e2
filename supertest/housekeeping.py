"""Periodic work in every worker process, beside the runs: reaping runs whose worker was lost,
uploading reports kept on disk while storage was down, telling health about the sandbox,
deleting runs past their retention, and telling Redis this worker is alive (registry.py)."""
from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from flask import Flask

from supertest import registry
from supertest.connections import redis_client
from supertest.execution import cool_down, preflight, sandbox_problem, warm_up, worker_facts, worker_id
from supertest.execution.sharded import conclude
from supertest.models import utcnow
from supertest.services import reports, retention, runs, shards

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
        # The sandbox check and the registration both probe the sandbox at start: one at a time, so
        # the second finds what the first found instead of probing again.
        self.probing = threading.Lock()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        config = self.app.config
        self.slots = getattr(getattr(broker, "slots", None), "size", 1)  # for shards ("auto"), warm runners
        for name, seconds, job in (
            ("reaper", config["HEARTBEAT_SECONDS"], lambda: _reap(config["WORKER_LOST_SECONDS"])),
            ("report-uploader", config["REPORT_RETRY_SECONDS"], reports.upload_kept_reports),
            ("sandbox-check", config["HEARTBEAT_SECONDS"], self._announce_sandbox),
            ("retention", RETENTION_SECONDS, retention.prune),
        ):
            threading.Thread(target=self._every, args=(seconds, job), name=name, daemon=True).start()
        threading.Thread(target=self._now, args=(self._announce_sandbox,), name="sandbox-check", daemon=True).start()
        self.started_at = utcnow().isoformat()
        self.registration = threading.Thread(target=self._register, name="registration", daemon=True)
        self.registration.start()

    def _register(self) -> None:
        """Tell Redis this worker lives (registry.py), at once and then at every heartbeat, with
        what it found about its sandbox and browser once that is known (the probes take seconds)."""
        config = self.app.config
        ttl = config["WORKER_TTL_SECONDS"]
        every = min(config["HEARTBEAT_SECONDS"], ttl / 3)  # a late beat or two never drops a live worker
        facts: dict[str, Any] = {"sandbox": None, "versions": None}
        while True:
            with self.app.app_context():
                try:
                    registry.register(redis_client(), config["QUEUE_NAMESPACE"], self._entry(facts), ttl)
                    if facts["sandbox"] is None:
                        with self.probing:
                            facts = _facts()
                        continue  # said at once, not a heartbeat later
                except Exception:  # Redis is down: the entry expires, and comes back with Redis
                    log.warning("registration failed; trying again in %s s", every, exc_info=True)
            if self.stopped.wait(every):
                return

    def _entry(self, facts: dict[str, Any]) -> dict[str, Any]:
        return {"id": worker_id(), "host": socket.gethostname(), "pid": os.getpid(), "startedAt": self.started_at,
                "slots": getattr(self, "slots", 1),
                "heartbeatAt": utcnow().isoformat(), **facts}

    def _announce_sandbox(self) -> None:
        """Whether tests can run in this process's sandbox: found once (before its first run, or
        here at start), told to /api/health for as long as this process lives."""
        seconds = max(30, 3 * self.app.config["HEARTBEAT_SECONDS"])
        with self.probing:
            problem = sandbox_problem()
        preflight.announce(redis_client(), self.app.config["QUEUE_NAMESPACE"], worker_id(), problem, seconds)
        if not problem and not self.stopped.is_set():
            warm_up(getattr(self, "slots", 1))  # once the sandbox works: a runner started ahead per slot

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stopped.set()
        with self.app.app_context():
            cool_down()
        registration = getattr(self, "registration", None)
        if registration is not None:
            registration.join(timeout=5)  # its last beat must not land after the entry is gone
            with self.app.app_context():
                try:
                    registry.unregister(redis_client(), self.app.config["QUEUE_NAMESPACE"], worker_id())
                except Exception:  # Redis is down: the entry expires on its own
                    log.warning("could not unregister this worker", exc_info=True)

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


def _reap(stale_seconds: float) -> None:
    """Runs and shards whose worker was lost go back to the queue; a sharded run whose merging
    worker was lost is merged and ended here."""
    runs.reap(stale_seconds)
    shards.reap(stale_seconds)
    for run_id in shards.unmerged(stale_seconds):
        conclude(run_id)


def _facts() -> dict[str, Any]:
    """This worker's sandbox and versions; what went wrong finding them, rather than nothing."""
    try:
        return worker_facts()
    except Exception as error:
        log.warning("could not tell how this worker runs tests", exc_info=True)
        return {"sandbox": {"problem": str(error)}, "versions": {}}
