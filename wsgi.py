"""The WSGI entry point: `gunicorn wsgi:app`, and `flask --app wsgi ...` for the CLI."""
from supertest import create_app
from supertest.limits import raise_open_files

# Every live stream holds a socket: let this process open as many files as the system allows it.
raise_open_files()
app = create_app()
