"""Database tables: tests (saved and playground), jobs, runs, the tests each run ran, and per-case results."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from supertest.encryption import EncryptedText
from supertest.extensions import Base, db
from supertest.outcomes import PENDING, TERMINAL

# Flask-SQLAlchemy makes db.Model at run time, from Base; type checkers see Base.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Test(Model):
    """A Playwright script: typed into the playground, or saved by a user."""

    __tablename__ = "tests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(String(200))
    script: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    # Playground scripts are kept for their runs' sake but are not listed as saved tests.
    saved: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(db.DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(db.DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Job(Model):
    """A suite: an ordered list of saved tests that run together in one `playwright test`."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # Playwright's own retries for each test; a test that passes on a retry is flaky.
    retries: Mapped[int] = mapped_column(default=0)
    # This job's time limit; None means JOB_EXECUTION_TIMEOUT_MS.
    timeout_ms: Mapped[int | None] = mapped_column()
    # How many days this job's finished runs are kept; None means RUN_RETENTION_DAYS.
    retention_days: Mapped[int | None] = mapped_column()
    # How many shards its runs are split into (shards.py); 0 means "auto".
    shards: Mapped[int] = mapped_column(default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(db.DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(db.DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    last_run_at: Mapped[datetime | None] = mapped_column(db.DateTime(timezone=True))

    entries: Mapped[list[JobTest]] = relationship(
        order_by="JobTest.position", cascade="all, delete-orphan", passive_deletes=True
    )
    alerts: Mapped[JobAlerts | None] = relationship(cascade="all, delete-orphan", passive_deletes=True)
    schedule: Mapped[JobSchedule | None] = relationship(cascade="all, delete-orphan", passive_deletes=True,
                                                        lazy="selectin")

    @property
    def tests(self) -> list[Test]:
        return [entry.test for entry in self.entries]


class JobTest(Model):
    """A test's place in a job. Deleting the test takes it out of the job."""

    __tablename__ = "job_tests"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    test_id: Mapped[str] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"), index=True)

    test: Mapped[Test] = relationship()


class Timed:
    """What a run and a shard of one say of their status and times."""

    if TYPE_CHECKING:  # each model maps its own columns; a mixin's Mapped annotations would map more
        status: str
        started_at: datetime | None
        finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return int((as_utc(self.finished_at) - as_utc(self.started_at)).total_seconds() * 1000)


class Run(Timed, Model):
    """One execution of a test, from pending to a terminal status."""

    __tablename__ = "runs"
    # Each list of runs is read newest first, by keyset on (created_at, id): all runs, a status's, a job's.
    # /metrics and the dashboard read the runs that ended lately (finished_at).
    __table_args__ = (Index("ix_runs_created", "created_at", "id"),
                      Index("ix_runs_status_created", "status", "created_at", "id"),
                      Index("ix_runs_job_created", "job_id", "created_at", "id"),
                      Index("ix_runs_finished", "finished_at"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(10), default="test")
    test_id: Mapped[str | None] = mapped_column(ForeignKey("tests.id", ondelete="SET NULL"), index=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    # Where it was started: "playground", "ui" (a Run button) or "api".
    trigger: Mapped[str] = mapped_column(String(12), default="api")
    retries: Mapped[int] = mapped_column(default=0)
    # Playwright workers an ad-hoc run asked for (POST /api/runs); None: the kind's default.
    workers: Mapped[int | None] = mapped_column()
    # The time limit the runner enforces, fixed when the run is requested (runs.create_run).
    timeout_ms: Mapped[int] = mapped_column()
    title: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(12), default=PENDING)
    attempt: Mapped[int] = mapped_column(default=1)
    error_message: Mapped[str | None] = mapped_column(Text)
    # Why the run was started again after its first attempt (its worker was lost or shut down).
    restarted_because: Mapped[str | None] = mapped_column(String(200))
    # Which worker process has it ("host:pid"), and when that worker last showed it was alive.
    worker: Mapped[str | None] = mapped_column(String(100))
    heartbeat_at: Mapped[datetime | None] = mapped_column(db.DateTime(timezone=True))
    # Where the HTML report lives: "s3", "local", or None while there is none.
    report_store: Mapped[str | None] = mapped_column(String(10))
    total: Mapped[int] = mapped_column(default=0)
    passed: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    flaky: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(db.DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(db.DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(db.DateTime(timezone=True))
    # The slot a scheduled run (trigger "schedule") was for.
    scheduled_for: Mapped[datetime | None] = mapped_column(db.DateTime(timezone=True))
    # How many shards it asked for (0: auto, worked out when it is queued); 1 is an unsharded run.
    shards: Mapped[int] = mapped_column(default=1, server_default="1")

    test: Mapped[Test | None] = relationship()
    job: Mapped[Job | None] = relationship()
    run_tests: Mapped[list[RunTest]] = relationship(
        back_populates="run", order_by="RunTest.position", cascade="all, delete-orphan", passive_deletes=True
    )
    results: Mapped[list[TestResult]] = relationship(
        back_populates="run", order_by="TestResult.position", cascade="all, delete-orphan", passive_deletes=True
    )
    files: Mapped[list[RunFile]] = relationship(order_by="RunFile.id", cascade="all, delete-orphan",
                                                passive_deletes=True)
    run_shards: Mapped[list[RunShard]] = relationship(order_by="RunShard.index", cascade="all, delete-orphan",
                                                      passive_deletes=True)


class RunTest(Model):
    """A test as one run ran it: the script is copied when the run is requested, so later edits
    or a deletion do not change a queued run, and history keeps what actually ran."""

    __tablename__ = "run_tests"
    # A test's history (its strip, its runs) newest first from this index alone, without a join to
    # runs for their order: with hundreds of runs per test, that join was most of the Tests page.
    __table_args__ = (Index("ix_run_tests_test_history", "test_id", "run_created_at", "run_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    # The run's created_at, copied (it never changes), so a test's runs are ordered as lists of runs are.
    run_created_at: Mapped[datetime] = mapped_column(db.DateTime(timezone=True))
    position: Mapped[int]
    test_id: Mapped[str | None] = mapped_column(ForeignKey("tests.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(200))
    # The spec's path under the run's tests/ folder: a file name, or a path in an ad-hoc run's suite.
    filename: Mapped[str] = mapped_column(String(500))
    script: Mapped[str] = mapped_column(Text)
    # This test's outcome in the run: pending until the run ends, then outcomes.test_fate's.
    status: Mapped[str] = mapped_column(String(12), default=PENDING)

    run: Mapped[Run] = relationship(back_populates="run_tests")
    test: Mapped[Test | None] = relationship()


class RunFile(Model):
    """A file an ad-hoc run's tests import (fixtures, page objects, data) or its suite's config
    (path CONFIG_FILE), written under the run's tests/ folder beside its specs; a rerun copies them."""

    __tablename__ = "run_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(500))
    content: Mapped[str] = mapped_column(Text)


class TestResult(Model):
    """The outcome of one test case within a run, taken from Playwright's JSON report."""

    __tablename__ = "test_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int]
    title: Mapped[str] = mapped_column(Text)
    file: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(12))
    duration_ms: Mapped[int] = mapped_column(default=0)
    retries: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # The test (spec file) this case came from; None only for results older than run_tests.
    run_test_id: Mapped[int | None] = mapped_column(ForeignKey("run_tests.id", ondelete="CASCADE"), index=True)

    run: Mapped[Run] = relationship(back_populates="results")
    run_test: Mapped[RunTest | None] = relationship()


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time we store is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class User(Model):
    """A person who may sign in. Disabled users keep their rows (and tokens) but cannot sign in or use a token."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-cased
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(db.DateTime(timezone=True), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(db.DateTime(timezone=True))

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete-orphan",
                                                  passive_deletes=True, order_by="ApiToken.created_at.desc()")

    # What Flask-Login asks of a user object.
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str:
        return self.id


class ApiToken(Model):
    """A bearer token for curl and CI: `st_<lookup>_<secret>`. Only a hash of the secret is kept; the
    lookup part finds the row, so the secret itself is compared in constant time, never searched for."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    lookup: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(db.DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(db.DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(db.DateTime(timezone=True))

    user: Mapped[User] = relationship(back_populates="tokens")


class Variable(Model):
    """A named value given to every test as an environment variable. A secret's value is never
    shown again once saved, and is replaced by [secret] in whatever a run stores."""

    __tablename__ = "variables"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    value: Mapped[str] = mapped_column(EncryptedText)  # every value, so a secret's is never plain on disk
    secret: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(db.DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(db.DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Channel(Model):
    """Where alerts go: a webhook, email addresses or an Apprise URL. Its target and secret are stored
    encrypted and never sent back; `target_hint` is what may be shown of the target (its host)."""

    __tablename__ = "channels"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(10))
    target: Mapped[str] = mapped_column(EncryptedText)
    target_hint: Mapped[str] = mapped_column(String(200), default="")
    # A webhook's signing key (HMAC-SHA256 of each body); None for the other types.
    secret: Mapped[str | None] = mapped_column(EncryptedText)
    created_at: Mapped[datetime] = mapped_column(db.DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(db.DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class JobAlerts(Model):
    """A job's alert rule, and the state it watches (kept here, not in a worker, so every worker agrees)."""

    __tablename__ = "job_alerts"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    after_failures: Mapped[int] = mapped_column(default=1)
    on_recovery: Mapped[bool] = mapped_column(default=True)
    on_missed: Mapped[bool] = mapped_column(default=True)
    every_failure: Mapped[bool] = mapped_column(default=False)
    remind_hours: Mapped[int | None] = mapped_column()
    # "passing" or "failing", from the job's finished runs; failures in a row; the last failure alert.
    state: Mapped[str] = mapped_column(String(10), default="passing")
    failures_in_row: Mapped[int] = mapped_column(default=0)
    alerted_at: Mapped[datetime | None] = mapped_column(db.DateTime(timezone=True))

    channels: Mapped[list[Channel]] = relationship(secondary="job_alert_channels", order_by="Channel.name")


class JobAlertChannel(Model):
    """A channel a job's alerts go to; deleting the channel takes it out of every rule."""

    __tablename__ = "job_alert_channels"

    job_id: Mapped[str] = mapped_column(ForeignKey("job_alerts.job_id", ondelete="CASCADE"), primary_key=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True,
                                            index=True)


class Delivery(Model):
    """One alert to one channel, and how its delivery went (pending until sent or out of attempts)."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_created", "created_at", "id"),
                      Index("ix_deliveries_job_created", "job_id", "created_at"),
                      Index("ix_deliveries_channel_created", "channel_id", "created_at"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    event: Mapped[str] = mapped_column(String(12))
    channel_id: Mapped[str | None] = mapped_column(ForeignKey("channels.id", ondelete="SET NULL"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    scheduled_for: Mapped[datetime | None] = mapped_column(db.DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(db.DateTime(timezone=True), default=utcnow)
    state: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    attempted_at: Mapped[datetime | None] = mapped_column(db.DateTime(timezone=True))
    detail: Mapped[str] = mapped_column(Text, default="")

    channel: Mapped[Channel | None] = relationship()
    job: Mapped[Job | None] = relationship()
    run: Mapped[Run | None] = relationship()


class JobSchedule(Model):
    """When a job runs on its own: a 5-field cron expression in an IANA time zone, fired by the clock."""

    __tablename__ = "job_schedules"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    enabled: Mapped[bool] = mapped_column(default=True, index=True)
    # "skip": a slot that comes while the job's previous run is still pending or running is skipped;
    # "queue": it is queued all the same.
    overlap: Mapped[str] = mapped_column(String(10), default="skip")
    # How long after its slot a run may take to start before the slot is late (and the catch-up deadline).
    grace_seconds: Mapped[int] = mapped_column(default=120)
    # The next slot the clock will fire; None while paused.
    next_run_at: Mapped[datetime | None] = mapped_column(db.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(db.DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class ScheduleSlot(Model):
    """One time a job's schedule came due, and what became of it. The unique key on (job, slot) is what
    keeps two clocks from running one slot twice: the second insert fails."""

    __tablename__ = "schedule_slots"
    __table_args__ = (UniqueConstraint("job_id", "scheduled_for", name="uq_schedule_slots_job_slot"),
                      Index("ix_schedule_slots_state", "state"))

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    scheduled_for: Mapped[datetime] = mapped_column(db.DateTime(timezone=True))
    # ran | late | missed | skipped | stuck (docs/api.md)
    state: Mapped[str] = mapped_column(String(10))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(Text)
    # When the slot was found late; kept once its run starts (state back to "ran").
    late_at: Mapped[datetime | None] = mapped_column(db.DateTime(timezone=True))
    # When its alert (late, missed, stuck, skipped) was raised, by schedules.slot_event.
    alerted_at: Mapped[datetime | None] = mapped_column(db.DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(db.DateTime(timezone=True), default=utcnow)

    run: Mapped[Run | None] = relationship()


class RunShard(Timed, Model):
    """A part of a sharded run: some of its tests, run by any worker as its own message, with its own
    attempts (the reaper hands a lost shard back on its own). The run ends once all of them have."""

    __tablename__ = "run_shards"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(primary_key=True)
    # The file names of its run tests, and how long they were expected to take (from history).
    files: Mapped[list[str]] = mapped_column(JSON)
    expected_ms: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(12), default=PENDING)
    attempt: Mapped[int] = mapped_column(default=1)
    worker: Mapped[str | None] = mapped_column(String(100))
    heartbeat_at: Mapped[datetime | None] = mapped_column(db.DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(db.DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(db.DateTime(timezone=True))
    error_message: Mapped[str | None] = mapped_column(Text)
    # Where its blob report (for the merge; deleted once merged) and its own HTML report (made from
    # that blob only when the run's could not be merged) were stored.
    report_store: Mapped[str | None] = mapped_column(String(10))
    blob_store: Mapped[str | None] = mapped_column(String(10))

    run: Mapped[Run] = relationship(back_populates="run_shards")
