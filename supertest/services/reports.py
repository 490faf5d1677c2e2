"""Reports that could not go to object storage: uploaded once it can be reached again."""
from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import select, update

from supertest.extensions import db
from supertest.models import Run
from supertest.storage import LOCAL, S3, StorageError

log = logging.getLogger(__name__)


def upload_kept_reports(limit: int = 20) -> int:
    """Upload reports kept on this machine's disk while S3 was down; returns how many went up.

    Only this machine's: a report kept by a worker elsewhere is on that worker's disk. Stops at
    the first failure, since storage is then still down. The local copy goes once the run points
    at S3, so the report is always where its run says.
    """
    store = current_app.extensions["reports"]
    if not store.remote:
        return 0
    kept = db.session.execute(select(Run.id, Run.kind).where(Run.report_store == LOCAL).limit(limit)).all()
    db.session.rollback()
    uploaded = 0
    for run_id, kind in kept:
        try:
            if not store.upload_kept(run_id, kind):
                continue
        except StorageError as error:
            log.info("storage still unreachable; kept reports wait: %s", error)
            break
        db.session.execute(update(Run).where(Run.id == run_id, Run.report_store == LOCAL).values(report_store=S3))
        db.session.commit()
        store.forget_kept(run_id)
        uploaded += 1
        log.info("run %s: kept report uploaded now that storage is back", run_id)
    return uploaded
