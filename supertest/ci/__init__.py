"""The CI client (supertest_ci.py), a standalone script the web app serves at /ci/supertest-ci.py."""
