"""`flask --app wsgi users ...` and `flask --app wsgi tokens ...`: accounts from the command line,
for the first administrator of a deployment and for tokens that CI scripts set up."""
from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from supertest.services import accounts
from supertest.services.validation import ValidationError

users = AppGroup("users", help="Manage user accounts.")
tokens = AppGroup("tokens", help="Manage API tokens.")


@users.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="May add and disable users.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (for scripts).")
def create_user(email: str, admin: bool, password_stdin: bool) -> None:
    """Create an account for EMAIL."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = accounts.create_user(email, password, admin=admin)
    except ValidationError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"Created {user.email}{' (administrator)' if user.is_admin else ''}.")


@tokens.command("create")
@click.argument("email")
@click.option("--name", required=True, help="What the token is for, e.g. 'CI on main'.")
def create_token(email: str, name: str) -> None:
    """Create an API token for EMAIL's account; it is printed on the last line, this once."""
    user = accounts.by_email(email)
    if user is None:
        raise click.ClickException(f"No account for {email}.")
    try:
        _, token = accounts.create_token(user, name)
    except ValidationError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"Token {name!r} for {user.email}. It is not shown again; store it now:")
    click.echo(token)
