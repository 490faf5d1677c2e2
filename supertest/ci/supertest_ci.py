#!/usr/bin/env python3
"""Supertest's CI client: run a saved job, or a local Playwright suite, on Supertest's workers and
wait for the verdict. One file, Python 3.10+ standard library only; the server serves it at
/ci/supertest-ci.py.

    python3 supertest-ci.py run (--job NAME_OR_ID | PATH...) [--config FILE] [--junit PATH]
        [--detach] [--retries N] [--workers N] [--timeout SECONDS] [--title TEXT]

SUPERTEST_URL and SUPERTEST_TOKEN come from the environment. Exit codes: 0 passed (flaky tests
named, still 0), 1 failed, 2 error, timeout or cancelled (or --timeout ran out), 3 bad usage or
credentials, 4 Supertest unreachable or answering 5xx.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, NoReturn

PASSED, FAILED, ERROR, USAGE, UNREACHABLE = 0, 1, 2, 3, 4
TERMINAL = {"passed", "failed", "error", "timeout", "cancelled"}
# Playwright's default testMatch: **/*.@(spec|test).?(c|m)[jt]s?(x)
SPEC = re.compile(r"\.(?:spec|test)\.[cm]?[jt]sx?$")
CONFIG_NAMES = ("playwright.config.ts", "playwright.config.js", "playwright.config.mts", "playwright.config.mjs",
                "playwright.config.cts", "playwright.config.cjs")
SKIPPED_FOLDERS = {"node_modules", "test-results", "playwright-report", "blob-report", "__pycache__"}
# import x from './y'; import './y'; export * from './y'; require('./y'); import('./y')
IMPORTS = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)(['"])(\.{1,2}/[^'"\n]*|\.{1,2})\1""")
EXTENSIONS = (".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts", ".json")
MAX_FILE_BYTES = 20 * 1024 * 1024  # the server's own limits are lower; this only keeps memory sane
DEFAULT_WAIT = 3600.0
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # of one JSON answer: a run of thousands of tests is far less
MAX_EVENT_BYTES = 1024 * 1024  # of one live event: a stream that never ends a line is left for long polls
# What a test's title or error may not print raw: a newline starts a line CI reads as its own
# (GitHub's ::workflow commands), an escape sequence rewrites the log's display.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class Fail(Exception):
    """One problem, one line on stderr, one exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2, which here means "the run errored"
        raise Fail(USAGE, f"{self.prog}: {message}")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = Parser(prog="supertest-ci.py", description="Run Playwright tests on Supertest from CI.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run = commands.add_parser("run", help="run a saved job or a local suite and wait for the verdict")
    run.add_argument("paths", nargs="*", metavar="PATH", help="spec files or folders of them")
    run.add_argument("--job", help="a saved job's name or id")
    run.add_argument("--config", help="the suite's playwright.config.ts (found next to the folder otherwise)")
    run.add_argument("--junit", help="write the run's JUnit XML report here")
    run.add_argument("--detach", action="store_true", help="queue the run, print its id and exit")
    run.add_argument("--retries", type=int, help="Playwright retries per test (0-5)")
    run.add_argument("--workers", type=int, help="Playwright workers for the run")
    run.add_argument("--timeout", type=float, help="give up waiting (and cancel the run) after SECONDS")
    run.add_argument("--title", help="the run's title")
    args = parser.parse_args(argv)
    if bool(args.job) == bool(args.paths):
        parser.error("give either --job NAME_OR_ID or one or more PATHs")
    if args.job and (args.config or args.retries is not None or args.workers is not None):
        parser.error("--config, --retries and --workers go with PATHs; a saved job has its own")
    if args.timeout is not None and args.timeout <= 0:
        parser.error("--timeout must be a positive number of seconds")
    return args


# Collecting the suite ------------------------------------------------------------------------

def find_specs(paths: list[str]) -> list[Path]:
    """The spec files the PATHs name: files as given, folders searched for *.spec.* / *.test.*."""
    specs: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_file():
            specs.append(absolute(path))
        elif path.is_dir():
            found = sorted(absolute(p) for p in path.rglob("*") if p.is_file() and SPEC.search(p.name)
                           and not any(part in SKIPPED_FOLDERS or part.startswith(".")
                                       for part in p.relative_to(path).parts[:-1]))
            if not found:
                raise Fail(USAGE, f"no spec files (*.spec.ts, *.test.ts...) in {given}")
            specs += found
        else:
            raise Fail(USAGE, f"no such file or folder: {given}")
    return list(dict.fromkeys(specs))


def absolute(path: Path) -> Path:
    """The path from /, `..` taken out but links not followed: a linked file is sent where the
    link is, with what it points to, so the suite's root stays the suite's."""
    return Path(os.path.abspath(path))


def imports_of(source: str) -> list[str]:
    """The relative modules a script imports or requires."""
    return [match.group(2) for match in IMPORTS.finditer(source)]


def resolve(importer: Path, name: str) -> Path | None:
    """The file `import name` in `importer` loads, as Node and Playwright look for it."""
    base = (importer.parent / name)
    candidates = [base, *(Path(f"{base}{ext}") for ext in EXTENSIONS),
                  *(base / f"index{ext}" for ext in EXTENSIONS)]
    if base.suffix in (".js", ".mjs", ".cjs", ".jsx"):  # TypeScript's ESM style: './x.js' is x.ts
        stem = base.with_suffix("")
        candidates += [Path(f"{stem}{ext}") for ext in (".ts", ".tsx", ".mts", ".cts")]
    return next((absolute(c) for c in candidates if c.is_file()), None)


def read_text(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise Fail(USAGE, f"{path} is {size} bytes: too big to send")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise Fail(USAGE, f"{path} is not UTF-8 text; only text files can be sent") from None


def roots_of(paths: list[str], config: Path | None) -> list[Path]:
    """The folders a suite's files may come from: the working folder, the PATHs' and the config's."""
    given = [Path(path) if Path(path).is_dir() else Path(path).parent for path in paths]
    return [Path(os.path.realpath(folder)) for folder in [Path.cwd(), *given, *([config.parent] if config else [])]]


def check_inside(path: Path, roots: list[Path]) -> None:
    """Refuse a file that is, or links to, something outside `roots`: an import of '../../../proc/self/environ'
    or a link to ~/.ssh in a pull request must not send the CI machine's secrets to the tests."""
    real = Path(os.path.realpath(path))
    if not any(real == root or root in real.parents for root in roots):
        raise Fail(USAGE, f"{path} is outside the suite's folders ({', '.join(map(str, roots))}), "
                          f"or links out of them; it is not sent")


def collect(specs: list[Path], roots: list[Path] | None = None) -> dict[Path, str]:
    """The specs and every file they import, transitively, each inside `roots` (when given)."""
    files: dict[Path, str] = {}
    pending = list(specs)
    while pending:
        path = pending.pop()
        if path in files:
            continue
        if roots is not None:
            check_inside(path, roots)
        files[path] = text = read_text(path)
        if path.suffix == ".json":
            continue
        for name in imports_of(text):
            found = resolve(path, name)
            if found is None:
                print(f"warning: {path} imports {name!r}, which was not found; not sent", file=sys.stderr)
            elif found not in files:
                pending.append(found)
    return files


def find_config(paths: list[str], given: str | None) -> Path | None:
    """--config, else a playwright.config.* in the first PATH's folder or the folder above it."""
    if given:
        config = Path(given)
        if not config.is_file():
            raise Fail(USAGE, f"no such config file: {given}")
        return absolute(config)
    first = absolute(Path(paths[0]))
    folder = first if first.is_dir() else first.parent
    for place in (folder, folder.parent):
        for name in CONFIG_NAMES:
            if (place / name).is_file():
                return place / name
    return None


def suite(args: argparse.Namespace) -> dict[str, Any]:
    """The body of POST /api/runs: the files at their paths relative to the suite's root."""
    config = find_config(args.paths, args.config)
    roots = roots_of(args.paths, config)
    if config:
        check_inside(config, roots)
    files = collect(find_specs(args.paths), roots)
    if config:
        files.pop(config, None)
    folders = [path.parent for path in files] + ([config.parent] if config else [])
    root = Path(os.path.commonpath(folders))
    if config and config.parent != root:
        print(f"warning: files outside {config.parent} are imported; the suite's root is {root}", file=sys.stderr)
    body: dict[str, Any] = {
        "files": [{"path": path.relative_to(root).as_posix(), "content": text} for path, text in sorted(files.items())],
        "config": read_text(config) if config else None,
        "title": args.title or f"CI: {' '.join(args.paths)}"[:200],
    }
    if args.retries is not None:
        body["retries"] = args.retries
    if args.workers is not None:
        body["workers"] = args.workers
    return body


# Talking to Supertest ------------------------------------------------------------------------

def origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme)


class Redirects(urllib.request.HTTPRedirectHandler):
    """Redirects are followed, but the token is sent to Supertest's own origin only (and its https
    twin): urllib would hand SUPERTEST_TOKEN to whatever host a redirect names."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # urllib's signature
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        was, now = origin(req.full_url), origin(newurl)
        upgrade = was[0] == "http" and was[2] == 80 and now == ("https", was[1], 443)
        if new is not None and now != was and not upgrade:
            new.remove_header("Authorization")
        return new


OPENER = urllib.request.build_opener(Redirects)


class Client:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url.rstrip("/"), token

    def request(self, method: str, path: str, body: Any = None, timeout: float = 60) -> Any:
        """The JSON answer; Fail(3) for a 4xx (its message), Fail(4) for no answer or a 5xx."""
        response = self.open(method, path, body, timeout)
        with response:
            answer = response.read(MAX_ANSWER_BYTES + 1)
        if len(answer) > MAX_ANSWER_BYTES:
            raise Fail(UNREACHABLE, f"Supertest's answer to {method} {path} is over {MAX_ANSWER_BYTES} bytes")
        try:
            return json.loads(answer or b"null")
        except ValueError:
            raise Fail(UNREACHABLE, f"Supertest's answer to {method} {path} is not JSON") from None

    def open(self, method: str, path: str, body: Any = None, timeout: float = 60, accept: str = "application/json"):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Accept": accept, "User-Agent": "supertest-ci",
            **({"Content-Type": "application/json"} if data is not None else {})})
        try:
            return OPENER.open(request, timeout=timeout)  # the user's own URL
        except urllib.error.HTTPError as error:
            message = problem_text(error)
            if error.code >= 500:
                raise Fail(UNREACHABLE, f"Supertest answered {error.code} to {method} {path}: {message}") from None
            if error.code in (401, 403):
                raise Fail(USAGE, f"Supertest refused the token (SUPERTEST_TOKEN): {message}") from None
            raise Fail(USAGE, f"Supertest refused {method} {path} ({error.code}): {message}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise Fail(UNREACHABLE, f"Supertest at {self.url} is unreachable: {reason}") from None


def problem_text(error: urllib.error.HTTPError) -> str:
    try:
        body = error.read(100_000)
        return str(json.loads(body)["error"]["message"])
    except Exception:  # not our JSON: a proxy's page, say
        return error.reason if isinstance(error.reason, str) else "no details"


def start(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    if args.job:
        key = "jobId" if is_uuid(args.job) else "jobName"
        return client.request("POST", "/api/jobs/run", {key: args.job})
    return client.request("POST", "/api/runs", suite(args))


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def follow(client: Client, run_id: str, deadline: float) -> dict[str, Any]:
    """Print a line per finished test until the run ends (SSE), falling back to long polls."""
    try:
        run = stream(client, run_id, deadline)
        if run is not None:
            return run
    except Fail as failure:
        if failure.code != UNREACHABLE:
            raise
        print(f"warning: live stream lost ({failure}); waiting for the end instead", file=sys.stderr)
    while True:
        left = deadline - time.monotonic()
        run = client.request("GET", f"/api/runs/{run_id}?wait={max(0, min(int(left), 600))}",
                             timeout=min(left, 600) + 30)
        if run["status"] in TERMINAL or time.monotonic() >= deadline:
            return run


def stream(client: Client, run_id: str, deadline: float) -> dict[str, Any] | None:
    """Follow /api/runs/<id>/events; the run once its status is terminal, None if the stream ended
    first or the wait ran out."""
    wait = max(1.0, min(30.0, deadline - time.monotonic()))  # pings come every 15 s
    response = client.open("GET", f"/api/runs/{run_id}/events", timeout=wait, accept="text/event-stream")
    event = "message"
    data: list[str] = []
    with response:
        while time.monotonic() < deadline:
            try:
                raw = response.readline(MAX_EVENT_BYTES)
            except OSError:  # a timeout (pings come every 15 s) or a lost connection: long polls take over
                return None
            if not raw or len(raw) >= MAX_EVENT_BYTES or sum(map(len, data)) > MAX_EVENT_BYTES:
                return None
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:
                try:
                    payload = json.loads("\n".join(data))
                except ValueError:
                    payload = None
                if not isinstance(payload, dict):  # not an event of ours: skipped
                    pass
                elif event == "test" and payload.get("status") != "retrying":
                    print(test_line(payload), flush=True)
                elif event == "status" and payload.get("status") in TERMINAL:
                    return client.request("GET", f"/api/runs/{run_id}")
                event, data = "message", []
    return None


def shown(value: Any) -> str:
    """Text from the server (the tests' own words), safe to print on one line of a CI log."""
    return CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode(), str(value))


def test_line(test: dict[str, Any]) -> str:
    took = test.get("durationMs")
    seconds = f" ({took / 1000:.1f} s)" if isinstance(took, int | float) else ""
    line = f"{shown(test.get('status')):<11} {shown(test.get('file'))} › {shown(test.get('title'))}{seconds}"
    error = str(test.get("error") or "").strip()
    return f"{line}\n{'':<12}{shown(error.splitlines()[0][:300])}" if error and test.get("status") != "passed" \
        else line


def report(client: Client, run: dict[str, Any], junit: str | None) -> int:
    """Print the verdict and links, write the JUnit file; the exit code."""
    summary, status = run.get("summary") or {}, run["status"]
    print(f"{status}: {summary.get('total', 0)} tests, {summary.get('passed', 0)} passed, "
          f"{summary.get('failed', 0)} failed, {summary.get('flaky', 0)} flaky, {summary.get('skipped', 0)} skipped")
    for test in run.get("tests") or []:
        if test.get("status") == "flaky":
            print(f"flaky: {shown(test.get('file'))} › {shown(test.get('title'))}")
    if run.get("errorMessage") and status != "passed":
        print(shown(run["errorMessage"].strip().splitlines()[0][:500]), file=sys.stderr)
    print(f"Run: {client.url}/runs/{run['id']}")
    if run.get("reportUrl"):
        print(f"Report: {client.url}{run['reportUrl']}")
    if junit:
        try:
            with client.open("GET", f"/api/runs/{run['id']}/junit.xml", accept="application/xml") as response:
                Path(junit).write_bytes(response.read())
            print(f"JUnit: {junit}")
        except Fail as failure:
            print(f"warning: no JUnit report for this run ({failure})", file=sys.stderr)
    return {"passed": PASSED, "failed": FAILED}.get(status, ERROR)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
        url, token = os.environ.get("SUPERTEST_URL", "").strip(), os.environ.get("SUPERTEST_TOKEN", "").strip()
        if not url or not token:
            raise Fail(USAGE, "set SUPERTEST_URL (the server, e.g. https://supertest.example.com) and "
                              "SUPERTEST_TOKEN (an API token from your account page)")
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise Fail(USAGE, f"SUPERTEST_URL must start with http:// or https://, not {url!r}")
        client = Client(url, token)
        wait = args.timeout or DEFAULT_WAIT
        deadline = time.monotonic() + wait
        started = start(client, args)
        run_id = started["runId"]
        if args.detach:
            print(run_id)
            return PASSED
        print(f"Run {run_id} queued: {client.url}/runs/{run_id}", flush=True)
        run = follow(client, run_id, deadline)
        if run["status"] not in TERMINAL:
            try:
                client.request("POST", f"/api/runs/{run_id}/cancel")
            except Fail:
                pass  # it may have ended meanwhile; the wait ran out either way
            raise Fail(ERROR, f"gave up waiting after {wait:g} s (--timeout); the run was cancelled: "
                              f"{client.url}/runs/{run_id}")
        return report(client, run, args.junit)
    except Fail as failure:
        print(f"supertest-ci: {failure}", file=sys.stderr)
        return failure.code
    except KeyboardInterrupt:
        return ERROR


if __name__ == "__main__":
    sys.exit(main())
