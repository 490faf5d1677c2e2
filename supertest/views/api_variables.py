"""JSON endpoints for variables and secrets: /api/variables, addressed by name."""
from __future__ import annotations

from flask import Blueprint, jsonify

from supertest.models import Variable
from supertest.services import variables
from supertest.services.serialize import variable_json
from supertest.views.responses import found, json_body

bp = Blueprint("api_variables", __name__, url_prefix="/api/variables")


def found_variable(name: str) -> Variable:
    return found(variables.get, name, "variable", valid=lambda _: True)  # variables.get refuses odd names itself


@bp.get("")
def list_variables():
    """Every variable by name; secrets without their values."""
    return jsonify({"items": [variable_json(item) for item in variables.list_all()]})


@bp.post("")
def create_variable():
    """{"name", "value", "secret": false}: given to every run from now on."""
    variable = variables.create(json_body())
    return jsonify(variable_json(variable)), 201, {"Location": f"/api/variables/{variable.name}"}


@bp.get("/<name>")
def get_variable(name: str):
    return jsonify(variable_json(found_variable(name)))


@bp.put("/<name>")
def update_variable(name: str):
    """A new value, or make a variable secret; a secret cannot be made plain again."""
    return jsonify(variable_json(variables.update(found_variable(name), json_body())))


@bp.delete("/<name>")
def delete_variable(name: str):
    variables.delete(found_variable(name))
    return jsonify({"deleted": name})
