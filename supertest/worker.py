"""The Dramatiq entry point: `dramatiq supertest.worker`. Builds the app, whose broker the actors use."""
from supertest import create_app

app = create_app()
broker = app.extensions["actors"]["execute_test_run"].broker
