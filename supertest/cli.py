"""`flask --app wsgi users ...` and `flask --app wsgi tokens ...`: accounts from the command line,
for the first administrator of a deployment and for tokens that CI scripts set up; and the
encryption key's commands (docs/security.md)."""
from __future__ import annotations

import sys

import click
from cryptography.fernet import Fernet
from flask.cli import AppGroup, with_appcontext

from supertest.encryption import InvalidToken
from supertest.services import accounts, keys
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


@click.command("new-encryption-key")
def new_encryption_key() -> None:
    """Print a new key for ENCRYPTION_KEY (put it first in the list)."""
    click.echo(Fernet.generate_key().decode())


@click.command("rotate-encryption-key")
@with_appcontext
def rotate_encryption_key() -> None:
    """Re-encrypt every stored secret with the first key of ENCRYPTION_KEY; the others may go after."""
    try:
        count = keys.rotate_all()
    except InvalidToken:
        raise click.ClickException("a stored value was encrypted with none of the keys in ENCRYPTION_KEY "
                                   "(or SECRET_KEY's); nothing was changed. Put the old key back in the list."
                                   ) from None
    click.echo(f"Re-encrypted {count} value(s) with the newest key.")
