"""Front-end libraries served straight from node_modules, so nothing vendored is committed."""
from __future__ import annotations

from supertest.errors import NotFound
from flask import Blueprint, current_app, send_file

bp = Blueprint("vendor", __name__, url_prefix="/vendor")

# Only these files leave node_modules, under names that do not change when a package moves them.
FILES = {
    "htmx.js": "htmx.org/dist/htmx.min.js",
    "htmx-sse.js": "htmx-ext-sse/dist/sse.min.js",
    "codemirror.js": "codemirror/lib/codemirror.js",
    "codemirror.css": "codemirror/lib/codemirror.css",
    "codemirror-javascript.js": "codemirror/mode/javascript/javascript.js",
    "codemirror-matchbrackets.js": "codemirror/addon/edit/matchbrackets.js",
    "codemirror-closebrackets.js": "codemirror/addon/edit/closebrackets.js",
}


@bp.get("/<name>")
def vendor_file(name: str):
    """One of the whitelisted library files."""
    if name not in FILES:
        raise NotFound(f"no library file named {name!r}")
    path = current_app.config["NODE_MODULES"] / FILES[name]
    if not path.is_file():
        raise NotFound(f"{FILES[name]} is missing: run `make install`")
    return send_file(path, max_age=3600)
