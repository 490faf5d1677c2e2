"""The CI client, served to CI machines: `curl -fsS "$SUPERTEST_URL/ci/supertest-ci.py" | python3 - run ...`."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, send_file

bp = Blueprint("ci", __name__, url_prefix="/ci")
CLIENT = Path(__file__).parent.parent / "ci" / "supertest_ci.py"


@bp.get("/supertest-ci.py")
def client():
    """The single-file client; public, as it holds no secret (the token comes from the CI's environment)."""
    return send_file(CLIENT, mimetype="text/x-python", max_age=300)
