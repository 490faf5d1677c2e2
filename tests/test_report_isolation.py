"""Reports are untrusted: served from an origin of their own through short-lived signed links (or,
without one, sandboxed), so that script in a report cannot read the session or act with it."""
from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from playwright.sync_api import Browser, expect

from supertest.services.report_links import SALT
from tests.conftest import make_app, sign_in, token_of_tester
from tests.helpers import PASSING, start_run, wait_for_run
from tests.s3server import S3Server
from tests.test_auth import new_user, signed_in

REPORTS = "http://reports.test"


@pytest.fixture(scope="module")
def isolated(settings: dict[str, str], app: Flask, worker: object) -> dict[str, Any]:
    """An app with a reports origin, and a finished run with a report."""
    own = make_app({**settings, "REPORTS_ORIGIN": REPORTS, "REPORT_LINK_SECONDS": "60"})
    run = wait_for_run(app.test_client(), start_run(app.test_client(), PASSING, "isolated report")["runId"])
    assert run["status"] == "passed", run
    return {"app": own, "run": run}


def test_a_browser_session_is_sent_to_a_signed_link_on_the_reports_origin(isolated: dict[str, Any]) -> None:
    app, run = isolated["app"], isolated["run"]
    browser, _ = signed_in(app, new_user(app))
    moved = browser.get(run["reportUrl"])
    assert moved.status_code == 302
    link = moved.headers["Location"]
    assert link.startswith(f"{REPORTS}/r/") and link.endswith("/index.html")

    reports = app.test_client(authorized=False)
    report = reports.get(urlsplit(link).path, base_url=REPORTS)
    assert report.status_code == 200 and b"<html" in report.data.lower()
    assert report.headers["Cache-Control"].startswith("private")
    assert report.headers["X-Content-Type-Options"] == "nosniff"
    assert report.headers["Referrer-Policy"] == "no-referrer"
    assert "set-cookie" not in {name.lower() for name in report.headers.keys()}
    # Relative links in the report keep the signature: another file of it by the same prefix.
    prefix = link.rsplit("/", 1)[0]
    assert reports.get(urlsplit(prefix).path + "/nope.txt", base_url=REPORTS).status_code == 404

    # The link works only on the reports origin, and the reports origin serves nothing else.
    assert app.test_client().get(urlsplit(link).path).status_code == 404
    for path in ("/", "/login", "/api/runs", "/api/health", run["reportUrl"]):
        assert app.test_client().get(path, base_url=REPORTS).status_code == 404, path


def test_forged_and_expired_links_are_refused(isolated: dict[str, Any]) -> None:
    app, run = isolated["app"], isolated["run"]
    reports = app.test_client(authorized=False)
    forged = URLSafeTimedSerializer("not the key", salt=SALT).dumps(run["id"])
    assert reports.get(f"/r/{forged}/index.html", base_url=REPORTS).status_code == 404

    class LongAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 3600

    expired = URLSafeTimedSerializer(app.secret_key, salt=SALT, signer=LongAgo).dumps(run["id"])
    response = reports.get(f"/r/{expired}/index.html", base_url=REPORTS)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "link_expired"


def test_a_token_gets_the_bytes_and_the_apps_origin_serves_them_sandboxed(isolated: dict[str, Any],
                                                                         app: Flask) -> None:
    run = isolated["run"]
    with_token = isolated["app"].test_client().get(run["reportUrl"])
    assert with_token.status_code == 200 and b"<html" in with_token.data.lower()
    # Without a reports origin, a signed-in browser gets the report on the app's origin, sandboxed:
    # an opaque origin that has no cookies and makes no same-origin requests.
    browser, _ = signed_in(app, new_user(app))
    sandboxed = browser.get(run["reportUrl"])
    assert sandboxed.status_code == 200
    assert sandboxed.headers["Content-Security-Policy"].startswith("sandbox allow-scripts")
    assert "allow-same-origin" not in sandboxed.headers["Content-Security-Policy"]


def test_a_session_refuses_requests_from_other_origins_of_the_site(app: Flask) -> None:
    browser, _ = signed_in(app, new_user(app))
    assert browser.get("/api/runs", headers={"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
                       ).status_code == 200
    for site in ("same-site", "cross-site"):
        refused = browser.get("/api/runs", headers={"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "cors",
                                                     "Sec-Fetch-Dest": "empty"})
        assert refused.status_code == 403, site
    # Following a link from elsewhere is fine; being framed by another site is not.
    assert browser.get("/runs", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
                                         "Sec-Fetch-Dest": "document"}).status_code == 200
    assert browser.get("/runs", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
                                         "Sec-Fetch-Dest": "iframe"}).status_code == 403


def probe_script(app_url: str) -> str:
    """A test that attaches an HTML page whose script tries to read the session and use the API."""
    probe = f"""<body><script>
      const out = {{cookie: document.cookie}};
      const read = fetch('{app_url}/api/runs', {{credentials: 'include'}})
        .then(r => r.text().then(t => 'read ' + r.status + ' ' + t.slice(0, 40)), e => 'blocked: ' + e);
      const write = fetch('{app_url}/api/tests', {{method: 'POST', credentials: 'include', mode: 'no-cors',
          headers: {{'Content-Type': 'text/plain'}},
          body: JSON.stringify({{title: 'planted by a report', script: 'x'}})}})
        .then(r => 'sent ' + r.type, e => 'blocked: ' + e);
      Promise.all([read, write]).then(([r, w]) => {{
        out.read = r; out.write = w; document.body.dataset.out = JSON.stringify(out); }});
    </script></body>"""
    # Attached as a file, so that the report keeps it as a file of its own (data/<sha1>.html).
    return f"""import {{ test }} from '@playwright/test';
import {{ writeFileSync }} from 'fs';

test('carries a hostile attachment', async ({{}}, testInfo) => {{
  const file = testInfo.outputPath('probe.html');
  writeFileSync(file, {json.dumps(probe)});
  await testInfo.attach('probe', {{ path: file, contentType: 'text/html' }});
}});
"""


def test_report_content_cannot_read_the_session_or_call_the_api_with_it(
        browser: Browser, web: str, app: Flask, s3: S3Server, settings: dict[str, str]) -> None:
    """Its own browser context rather than the `page` fixture: the refusals show as console errors."""
    client = app.test_client()
    run = wait_for_run(client, start_run(client, probe_script(web), "hostile attachment")["runId"])
    assert run["status"] == "passed", run
    attachment = next(key for key in s3.keys(settings["S3_TEST_BUCKET_NAME"], f"{run['id']}/report/data/")
                      if key.endswith(".html"))
    token_of_tester(app)
    context = browser.new_context(base_url=web)
    try:
        page = context.new_page()
        sign_in(page)
        assert context.cookies(web), "the browser is signed in"
        page.goto(f"{web}/api/test-results/{attachment}")  # the signed-in browser opens the attachment
        assert urlsplit(page.url).netloc != urlsplit(web).netloc, page.url  # it landed on the reports origin
        expect(page.locator("body[data-out]")).to_have_count(1, timeout=15_000)
        out = json.loads(page.locator("body").get_attribute("data-out"))
    finally:
        context.close()
    assert out["cookie"] == "", out  # the session cookie is HttpOnly, and not of this origin anyway
    assert out["read"].startswith("blocked"), out  # the app's answer cannot be read from here
    assert out["write"].startswith("sent"), out  # a no-cors request does go out, with the cookie...
    planted = [test for test in client.get("/api/tests").get_json()["items"] if test["title"] == "planted by a report"]
    assert planted == []  # ...and is refused: another origin's request cannot use the session
