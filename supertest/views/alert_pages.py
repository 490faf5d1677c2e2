"""The Alerts page (every delivery) and the Channels page (administrators add, test and remove channels)."""
from __future__ import annotations

from flask import Blueprint, render_template, request, url_for

from supertest.auth import admin_required
from supertest.services import alerts, channels
from supertest.services.validation import ValidationError
from supertest.views.responses import found, go

bp = Blueprint("alert_pages", __name__)


@bp.get("/alerts")
def index():
    """The latest deliveries, newest first, with what each far end answered."""
    return render_template("alerts/list.html", deliveries=alerts.recent(limit=100),
                           failing=channels.failing_ids())


@bp.route("/channels", methods=["GET", "POST"])
@admin_required
def channels_page():
    """The channels; a new one from the form (a webhook's secret is shown on this answer only)."""
    error, status, form, secret = None, 200, {}, None
    if request.method == "POST":
        form = {key: request.form.get(key, "") for key in ("name", "type")}
        try:
            _, secret = channels.create(channels.channel_fields({**form, "target": request.form.get("target", "")}))
            status, form = 201, {}
        except ValidationError as error_:
            error, status = error_.message, error_.status
    return render_template("alerts/channels.html", channels=channels.list_all(), failing=channels.failing_ids(),
                           error=error, form=form, secret=secret), status


@bp.post("/channels/<channel_id>/delete")
@admin_required
def delete(channel_id: str):
    channels.delete(found(channels.get, channel_id, "channel"))
    return go(url_for("alert_pages.channels_page"))


@bp.post("/channels/<channel_id>/test")
@admin_required
def test(channel_id: str):
    """Send a test notification; the answer is a fragment saying what the far end said."""
    delivered, detail = alerts.test_channel(found(channels.get, channel_id, "channel"))
    return render_template("alerts/_test_result.html", delivered=delivered, detail=detail)
