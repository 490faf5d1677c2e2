"""The Variables page: named values for tests; a secret's value is never shown again once saved."""
from __future__ import annotations

from flask import Blueprint, render_template, request, url_for

from supertest.services import variables
from supertest.services.validation import ValidationError
from supertest.views.responses import found, go

bp = Blueprint("variable_pages", __name__, url_prefix="/variables")


@bp.route("", methods=["GET", "POST"])
def index():
    error, status, form = None, 200, {}
    if request.method == "POST":
        form = {"name": request.form.get("name", ""), "secret": bool(request.form.get("secret"))}
        try:
            variables.create({**form, "value": request.form.get("value", "")})
            return go(url_for("variable_pages.index"))
        except ValidationError as error_:
            error, status = error_.message, error_.status
    return render_template("variables.html", variables=variables.list_all(), error=error, form=form), status


@bp.post("/<name>")
def update(name: str):
    """Replace a value (a secret's is typed again, never shown), or delete with action=delete."""
    variable = found(variables.get, name, "variable", valid=lambda _: True)
    if request.form.get("action") == "delete":
        variables.delete(variable)
        return go(url_for("variable_pages.index"))
    try:
        variables.update(variable, {"value": request.form.get("value", "")})
    except ValidationError as error:
        return render_template("variables.html", variables=variables.list_all(), error=error.message,
                               form={}), error.status
    return go(url_for("variable_pages.index"))
