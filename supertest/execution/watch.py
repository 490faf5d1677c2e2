"""A thread beside each running run: it shows the run's worker is alive, and notices when the run
is no longer this worker's to finish (cancelled by a user, or handed to another worker)."""
from __future__ import annotations

import logging
import threading
from types import TracebackType

from sqlalchemy import Connection, Engine, select, update

from supertest import logs
from supertest.models import Run, RunShard, utcnow
from supertest.outcomes import RUNNING

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5  # how soon a cancel is noticed


class RunWatch:
    """Use as a context manager around the run's work; `stop` is set once the run is not ours."""

    def __init__(self, engine: Engine, run_id: str, attempt: int, heartbeat_seconds: float,
                 shard: int | None = None) -> None:
        self.engine = engine  # the engine, not the session: sessions belong to one thread
        self.run_id = run_id
        self.shard = shard  # a shard's index: its own row beats and is watched, and the run's status
        self.attempt = attempt
        self.heartbeat_seconds = heartbeat_seconds
        self.stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=logs.carried(self._watch), name=f"watch-{run_id[:8]}", daemon=True)

    def __enter__(self) -> RunWatch:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        beat_due = 0.0
        waited = 0.0
        while not self._done.wait(POLL_SECONDS):
            waited += POLL_SECONDS
            beat = waited >= beat_due
            if beat:
                beat_due = waited + self.heartbeat_seconds
            try:
                with self.engine.begin() as connection:
                    row = self._look(connection, beat)
            except Exception:  # a database hiccup: keep running the test, try again next time
                log.warning("run %s: could not check on the run", self.run_id, exc_info=True)
                continue
            if row is None or row[0] != RUNNING or row[1] != self.attempt:
                log.info("run %s is now %s; stopping it here", self.run_id,
                         f"{row[0]} (attempt {row[1]})" if row is not None else "deleted")
                self.stop.set()
                return

    def _look(self, connection: Connection, beat: bool) -> tuple[str, int] | None:
        """Beat (when due), and the status and attempt that say whether the work is still ours: the
        run's, or for a shard its own, unless the run has ended (cancelled, or out of time)."""
        if self.shard is None:
            if beat:
                connection.execute(update(Run).where(Run.id == self.run_id, Run.status == RUNNING,
                                                     Run.attempt == self.attempt).values(heartbeat_at=utcnow()))
            row = connection.execute(select(Run.status, Run.attempt).where(Run.id == self.run_id)).first()
            return None if row is None else (row.status, row.attempt)
        mine = (RunShard.run_id == self.run_id, RunShard.index == self.shard)
        if beat:
            connection.execute(update(RunShard).where(*mine, RunShard.status == RUNNING,
                                                      RunShard.attempt == self.attempt).values(heartbeat_at=utcnow()))
        found = connection.execute(select(RunShard.status, RunShard.attempt, Run.status.label("run"))
                                   .join(Run, Run.id == RunShard.run_id).where(*mine)).first()
        if found is None:
            return None
        return (found.status if found.run == RUNNING else found.run), found.attempt
