"""JSON endpoints for notification channels (/api/channels, administrators change them) and the
alerts they have carried (/api/alerts)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from supertest.auth import admin_required
from supertest.errors import Problem
from supertest.models import Channel
from supertest.services import alerts, channels
from supertest.services.serialize import channel_json
from supertest.services.validation import is_id
from supertest.views.responses import found, json_body

bp = Blueprint("api_channels", __name__, url_prefix="/api")
MAX_ALERTS = 200


def found_channel(channel_id: str) -> Channel:
    return found(channels.get, channel_id, "channel")


@bp.get("/channels")
def list_channels():
    """Every channel by name, targets left out; `failing` when its last deliveries all failed."""
    failing = channels.failing_ids()
    return jsonify({"items": [channel_json(item, item.id in failing) for item in channels.list_all()]})


@bp.post("/channels")
@admin_required
def create_channel():
    """{"name", "type", "target"}; a webhook's answer carries its signing `secret`, this once."""
    channel, secret = channels.create(channels.channel_fields(json_body()))
    body = channel_json(channel)
    if secret is not None:
        body["secret"] = secret
    return jsonify(body), 201, {"Location": f"/api/channels/{channel.id}"}


@bp.get("/channels/<channel_id>")
def get_channel(channel_id: str):
    channel = found_channel(channel_id)
    return jsonify(channel_json(channel, channel.id in channels.failing_ids()))


@bp.put("/channels/<channel_id>")
@admin_required
def update_channel(channel_id: str):
    """A new name or target; fields left out keep their value."""
    channel = found_channel(channel_id)
    return jsonify(channel_json(channels.update(channel, channels.channel_fields(json_body(), channel))))


@bp.delete("/channels/<channel_id>")
@admin_required
def delete_channel(channel_id: str):
    """Delete a channel; jobs stop alerting it, its past deliveries stay in the log."""
    channels.delete(found_channel(channel_id))
    return jsonify({"deleted": channel_id})


@bp.post("/channels/<channel_id>/test")
@admin_required
def test_channel(channel_id: str):
    """Send a test alert now and answer what the far end said."""
    delivered, detail = alerts.test_channel(found_channel(channel_id))
    return jsonify({"delivered": delivered, "detail": detail})


@bp.get("/alerts")
def list_alerts():
    """Deliveries, newest first: ?jobId= for one job's, ?limit= (at most 200, 50 by default)."""
    job_id = request.args.get("jobId") or None
    if job_id is not None and not is_id(job_id):
        raise Problem("jobId must be a job's id", {"field": "jobId"}, code="invalid_parameter")
    try:
        limit = int(request.args.get("limit", 50))
    except ValueError:
        raise Problem("limit must be a whole number", {"field": "limit"}, code="invalid_parameter") from None
    if not 1 <= limit <= MAX_ALERTS:
        raise Problem(f"limit must be between 1 and {MAX_ALERTS}", {"field": "limit"}, code="invalid_parameter")
    return jsonify({"items": [alerts.delivery_json(item) for item in alerts.recent(job_id, limit)]})
