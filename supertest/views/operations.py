"""For operators (administrators): the queues, the live workers, the metrics, and a page of them all."""
from __future__ import annotations

from flask import Blueprint, Response, abort, g, jsonify
from flask_login import current_user
from prometheus_client import CONTENT_TYPE_LATEST

from supertest.auth import admin_required
from supertest.services import metrics as metrics_service
from supertest.services import operations
from supertest.views.responses import page_or_fragment

bp = Blueprint("operations", __name__)


@bp.get("/api/workers")
@admin_required
def workers():
    """The live worker processes: how they contain tests, what they run them with, what they hold."""
    return jsonify(operations.workers())


@bp.get("/api/queues")
@admin_required
def queues():
    """Each queue: waiting, how long the oldest has waited, running."""
    return jsonify(operations.queue_states())


@bp.get("/metrics")
def metrics():
    """Prometheus's text format, for METRICS_TOKEN (checked in auth.py) or an administrator."""
    if not g.get("metrics_token") and not current_user.is_admin:
        abort(403)
    return Response(metrics_service.exposition(), content_type=CONTENT_TYPE_LATEST)


@bp.get("/operations")
@admin_required
def page():
    """The operations page; its fragment refreshes itself every few seconds."""
    return page_or_fragment("operations.html", "_operations.html", ops=operations.overview())
