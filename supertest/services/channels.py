"""Notification channels: where alerts go. A channel's target and secret are written, never read back."""
from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import select

from supertest.extensions import db
from supertest.models import Channel, Delivery
from supertest.services import notify
from supertest.services.validation import ValidationError

TYPES = ("webhook", "email", "apprise")
MAX_NAME_CHARS = 100
MAX_TARGET_CHARS = 2000
# One address: something@host.tld, no spaces or commas (a list is comma-separated).
ADDRESS = re.compile(r"[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>.]+")
FAILING_AFTER = 3  # a channel whose last this many deliveries all failed is marked failing


def list_all() -> list[Channel]:
    return list(db.session.scalars(select(Channel).order_by(Channel.name, Channel.id)))


def get(channel_id: str) -> Channel | None:
    return db.session.get(Channel, channel_id)


def channel_fields(data: dict[str, Any], current: Channel | None = None) -> dict[str, Any]:
    """name, type and target, checked; on an update, fields left out keep their value (the type is fixed)."""
    fields: dict[str, Any] = {}
    if "name" in data or current is None:
        name = data.get("name")
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME_CHARS:
            raise ValidationError(f"name is required, at most {MAX_NAME_CHARS} characters", "name")
        fields["name"] = name.strip()
    kind = current.type if current is not None else data.get("type")
    if current is not None and "type" in data and data["type"] != current.type:
        raise ValidationError("a channel's type cannot change: add a new channel instead", "type")
    if kind not in TYPES:
        raise ValidationError(f"type must be one of {', '.join(TYPES)}", "type")
    fields["type"] = kind
    if "target" in data or current is None:
        fields["target"] = check_target(kind, data.get("target"))
    return fields


def check_target(kind: str, target: Any) -> str:
    """A webhook's http(s) URL, a comma-separated list of email addresses, or a URL Apprise knows."""
    if not isinstance(target, str) or not target.strip() or len(target) > MAX_TARGET_CHARS or "\x00" in target:
        raise ValidationError(f"target is required, at most {MAX_TARGET_CHARS} characters", "target")
    target = target.strip()
    if kind == "webhook":
        try:
            parts = urlparse(target)
            parts.port  # noqa: B018 (raises ValueError past 65535: requests would echo the URL, secrets and all)
        except ValueError:
            raise ValidationError("target must be an http:// or https:// URL for a webhook", "target") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError("target must be an http:// or https:// URL for a webhook", "target")
    elif kind == "email":
        addresses = notify.recipients(target)
        bad = [address for address in addresses if not ADDRESS.fullmatch(address)]
        if not addresses or bad:
            raise ValidationError("target must be email addresses separated by commas"
                                  + (f"; not an address: {bad[0]!r}" if bad else ""), "target")
        target = ", ".join(addresses)
    elif not notify.apprise_knows(target):
        raise ValidationError("target is not a URL Apprise recognises (such as slack://..., ntfy://..., "
                              "mailto://...)", "target")
    return target


def hint(kind: str, target: str) -> str:
    """What may be shown of a target: a webhook's scheme and host, an address with its name masked, an
    Apprise URL's scheme only (many services put their token where a host would be: slack://T…/B…)."""
    if kind == "email":
        return ", ".join(f"{address[0]}…@{address.partition('@')[2]}" for address in notify.recipients(target))
    parts = urlparse(target)
    return f"{parts.scheme}://{parts.hostname or ''}" if kind == "webhook" else f"{parts.scheme}://…"


def create(fields: dict[str, Any]) -> tuple[Channel, str | None]:
    """The new channel, and a webhook's signing secret (shown to its creator this once)."""
    secret = secrets.token_urlsafe(32) if fields["type"] == "webhook" else None
    channel = Channel(name=fields["name"], type=fields["type"], target=fields["target"],
                      target_hint=hint(fields["type"], fields["target"]), secret=secret)
    db.session.add(channel)
    db.session.commit()
    return channel, secret


def update(channel: Channel, fields: dict[str, Any]) -> Channel:
    channel.name = fields.get("name", channel.name)
    if "target" in fields:
        channel.target, channel.target_hint = fields["target"], hint(channel.type, fields["target"])
    db.session.commit()
    return channel


def delete(channel: Channel) -> None:
    db.session.delete(channel)
    db.session.commit()


def failing_ids() -> set[str]:
    """Channels whose last FAILING_AFTER finished deliveries all failed."""
    failing = set()
    for channel_id in db.session.scalars(select(Channel.id)):
        states = db.session.scalars(
            select(Delivery.state).where(Delivery.channel_id == channel_id, Delivery.state != "pending")
            .order_by(Delivery.created_at.desc()).limit(FAILING_AFTER)).all()
        if len(states) == FAILING_AFTER and all(state == "failed" for state in states):
            failing.add(channel_id)
    return failing
