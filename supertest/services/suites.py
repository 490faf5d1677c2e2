"""Ad-hoc runs of a local suite (POST /api/runs, the CI client): its specs, the files they import
and its Playwright config, checked and queued as one `kind: job` run without a saved job."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Any

from supertest.config import MAX_TIMEOUT_MS
from supertest.models import Run, RunFile, new_id, utcnow
from supertest.services import runs
from supertest.services.validation import MAX_RETRIES, MAX_TITLE_CHARS, ValidationError, shards_value

# The suite's config is kept and written under this name at the root of its files, where the
# user wrote it, so that its own relative imports still resolve.
CONFIG_FILE = "playwright.config.ts"
CONFIG_NAMES = re.compile(r"playwright\.config\.[cm]?[jt]s")
MAX_PATH_CHARS = 500  # RunTest.filename, RunFile.path
MAX_NAME_BYTES = 255  # of one folder's or file's name: the worker could not write a longer one
# Characters that make a name read otherwise than it is on a page or in a log: line separators, bidi overrides.
INVISIBLE = frozenset("\u2028\u2029\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
MAX_WORKERS = 32  # asked for; a run gets at most MAX_CONCURRENT_TESTS
# Playwright's default testMatch, **/*.@(spec|test).?(c|m)[jt]s?(x), as a regex on the path.
DEFAULT_TEST = re.compile(r"\.(?:spec|test)\.[cm]?[jt]sx?$")
# Playwright's own reporters: asking for one of these is harmless (Supertest's run anyway); any
# other name is a module of the user's, which would see and send everything the run does.
BUILTIN_REPORTERS = frozenset({"list", "line", "dot", "html", "json", "junit", "github", "blob", "null"})
# A backslash only ever starts an escape, so no text can be read two ways (which backtracks for ever).
STRING = re.compile(r"""(['"`])((?:\\.|(?!\1)[^\\])*)\1""", re.DOTALL)
MAX_VALUE_CHARS = 20_000  # of a config property's value that is read
OBJECT = re.compile(r"\{[^{}]*\}")  # innermost first: a reporter's options, taken out before its names are read


@dataclass(frozen=True)
class Suite:
    """A checked request: specs and support files as (path, content), the config's text, the run's options."""

    specs: list[tuple[str, str]]
    support: list[tuple[str, str]]
    config: str | None
    title: str
    retries: int
    workers: int | None
    timeout_ms: int | None
    shards: int = 1  # 0: "auto" (services/shards.py)


def suite_from(data: dict[str, Any], max_files: int, max_bytes: int, max_file_bytes: int) -> Suite:
    """The suite a POST /api/runs body describes, or a ValidationError naming what is wrong."""
    config = data.get("config")
    if config is not None:
        config = _content(config, "config", max_file_bytes)
        check_config(config)
    files = data.get("files")
    if not isinstance(files, list) or not files:
        raise ValidationError("files must be a non-empty list of {path, content} objects", "files")
    if len(files) > max_files:
        raise ValidationError(f"{len(files)} files; a run takes at most {max_files} (MAX_RUN_FILES)", "files",
                              status=413, code="too_large")
    checked: list[tuple[str, str]] = []
    for index, item in enumerate(files):
        field = f"files[{index}]"
        if not isinstance(item, dict) or set(item) - {"path", "content"}:
            raise ValidationError(f"{field} must be an object with only path and content (a regular file: "
                                  "links and folders are not sent)", field)
        path = check_path(item.get("path"), f"{field}.path")
        checked.append((path, _content(item.get("content"), f"{field}.content", max_file_bytes)))
    total = sum(len(content.encode("utf-8")) for _, content in checked) + len((config or "").encode("utf-8"))
    if total > max_bytes:
        raise ValidationError(f"the files hold {total} bytes; a run takes at most {max_bytes} (MAX_RUN_BYTES)",
                              "files", status=413, code="too_large")
    _check_tree([path for path, _ in checked])
    matches = test_matcher(config)
    specs = [(path, content) for path, content in checked if matches(path)]
    if not specs:
        raise ValidationError("no test file among files: name specs *.spec.ts or *.test.ts (or as the config's "
                              "testMatch says)", "files", status=422, code="no_tests")
    return Suite(specs=specs, support=[(path, content) for path, content in checked if not matches(path)],
                 config=config, title=_title(data.get("title")), retries=_retries(data.get("retries")),
                 workers=_whole(data.get("workers"), "workers", 1, MAX_WORKERS),
                 timeout_ms=_whole(data.get("timeoutMs"), "timeoutMs", 1000, MAX_TIMEOUT_MS),
                 shards=shards_value(data.get("shards")))


def check_path(path: Any, field: str) -> str:
    """A relative path of plain names separated by '/': nothing that climbs, is absolute or is
    read differently by another system."""
    if not isinstance(path, str) or not path:
        raise ValidationError(f"{field} must be a non-empty relative path", field)
    problem = None
    if len(path) > MAX_PATH_CHARS:
        problem = f"is longer than {MAX_PATH_CHARS} characters"
    elif path.startswith("/") or re.match(r"[A-Za-z]:", path):
        problem = "is absolute; send paths relative to the suite's folder"
    elif "\\" in path:
        problem = "holds a backslash; separate folders with '/'"
    elif any(ord(char) < 32 or 127 <= ord(char) < 160 or char in INVISIBLE for char in path):
        problem = "holds a control character"
    elif any(len(part.encode("utf-8")) > MAX_NAME_BYTES for part in path.split("/")):
        problem = f"has a name longer than {MAX_NAME_BYTES} bytes, more than a file system takes"
    elif ".." in path.split("/"):
        problem = "climbs out of the suite's folder with '..'"
    elif any(part in ("", ".") for part in path.split("/")):
        problem = "has an empty or '.' segment"
    elif CONFIG_NAMES.fullmatch(path):
        problem = "is the suite's config: send its text as config"
    if problem:
        raise ValidationError(f"{field} {path[:100]!r} {problem}", field, details={"path": path[:MAX_PATH_CHARS]})
    return path


def _check_tree(paths: list[str]) -> None:
    """No path twice, and none that is both a file and a folder of another."""
    seen: set[str] = set()
    for path in paths:
        if path in seen:
            raise ValidationError(f"files names {path!r} more than once", "files", details={"path": path})
        seen.add(path)
    folders = {"/".join(path.split("/")[:i]) for path in paths for i in range(1, path.count("/") + 1)}
    clash = sorted(seen & folders)
    if clash:
        raise ValidationError(f"{clash[0]!r} is both a file and a folder", "files", details={"path": clash[0]})


def _content(value: Any, field: str, max_bytes: int) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be the file's text, as a string", field)
    if "\x00" in value:
        raise ValidationError(f"{field} must be text: it holds NUL characters", field)
    size = len(value.encode("utf-8"))
    if size > max_bytes:
        raise ValidationError(f"{field} is {size} bytes; the limit per file is {max_bytes} (MAX_SCRIPT_BYTES)",
                              field, status=413, code="too_large")
    return value


def _title(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return "CI run"
    if not isinstance(value, str) or "\x00" in value or len(value) > MAX_TITLE_CHARS:
        raise ValidationError(f"title must be a string of at most {MAX_TITLE_CHARS} characters", "title")
    return value.strip()


def _retries(value: Any) -> int:
    return _whole(value, "retries", 0, MAX_RETRIES) or 0


def _whole(value: Any, field: str, least: int, most: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise ValidationError(f"{field} must be a whole number from {least} to {most}, or null", field)
    return value


def code_of(source: str) -> str:
    """The config's text with its comments blanked out and its strings kept, so that a commented-out
    `// webServer: {...}` (as `npm init playwright` writes it) is not taken for one."""
    out, i, quote = [], 0, None
    while i < len(source):
        char = source[i]
        if quote:
            out.append(char)
            if char == "\\":
                out.append(source[i + 1:i + 2])
                i += 1
            elif char == quote:
                quote = None
        elif char in "'\"`":
            quote = char
            out.append(char)
        elif source.startswith("//", i):
            end = source.find("\n", i)
            i = len(source) if end < 0 else end
            continue
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            i = len(source) if end < 0 else end + 2
            out.append(" ")
            continue
        else:
            out.append(char)
        i += 1
    return "".join(out)


def check_config(source: str) -> None:
    """Refuse a config that asks for what Supertest cannot give it: a web server of its own, or a
    reporter that is not one of Playwright's (the rest it asks for is ignored; docs/api.md)."""
    code = code_of(source)
    if re.search(r"\bwebServer\s*:", STRING.sub("''", code)) or re.search(r"""(['"])webServer\1\s*:""", code):
        raise ValidationError("the config asks for webServer, which Supertest does not start: run your app "
                              "where the workers can reach it and set use.baseURL to it", "config",
                              code="unsupported_config")
    # The first few only, each read so far: the reporter is never taken from the config anyway
    # (workspace.py copies allowed keys); this says so early, and must not be made to work for ever.
    for found in islice(re.finditer(r"\breporter\s*:", code), 20):
        value = _value_after(code, found.end())
        while OBJECT.search(value):  # options ({ outputFolder: 'x' }) hold no reporter's name
            value = OBJECT.sub("", value)
        own = [name for _, name in STRING.findall(value) if name not in BUILTIN_REPORTERS]
        if own:
            raise ValidationError(f"the config asks for the reporter {own[0]!r}; Supertest chooses the reporters "
                                  "(html, junit and its own) and runs no other", "config", code="unsupported_config")


def _value_after(code: str, start: int) -> str:
    """The text of a property's value: up to the comma or closing bracket at its own depth."""
    depth, i, quote, end = 0, start, None, min(len(code), start + MAX_VALUE_CHARS)
    while i < end:
        char = code[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = None
        elif char in "'\"`":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            if depth == 0:
                break
            depth -= 1
        elif char == "," and depth == 0:
            break
        i += 1
    return code[start:i].strip()


def test_matcher(config: str | None) -> Callable[[str], bool]:
    """Which paths are tests: the config's testMatch when it is a literal (a glob, a regex or a list
    of them), else Playwright's default (*.spec.* and *.test.* scripts)."""
    patterns = _test_match(code_of(config)) if config else None
    if not patterns:
        return lambda path: bool(DEFAULT_TEST.search(path))
    return lambda path: any(pattern.search("/" + path) for pattern in patterns)


def _test_match(code: str) -> list[re.Pattern[str]] | None:
    found = re.search(r"\btestMatch\s*:", code)
    if not found:
        return None
    value = _value_after(code, found.end())
    items = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    patterns = []
    listed = _split_top(items)
    if len(listed) > 50:
        return None
    for item in (part.strip() for part in listed):
        literal = STRING.fullmatch(item)
        regex = re.fullmatch(r"/((?:\\.|[^/\\])+)/([a-z]*)", item)
        # Patterns that could backtrack for ever over a crafted path (a quantified group, many
        # wildcards) are not evaluated here: Playwright's default rule stands instead.
        try:
            if literal and literal.group(1) != "`" and literal.group(2).count("*") <= 4:
                patterns.append(re.compile(glob_regex(literal.group(2))))
            elif regex and not re.search(r"\)[*+?{]", regex.group(1)) and len(regex.group(1)) <= 200:
                patterns.append(re.compile(regex.group(1), re.IGNORECASE if "i" in regex.group(2) else 0))
            else:
                return None  # an expression we do not evaluate: Playwright's default rule
        except re.error:
            return None
    return patterns or None


def _split_top(text: str) -> list[str]:
    """A list's items, split at commas outside strings and regexes."""
    parts, current, quote = [], "", None
    for char in text:
        if quote:
            current += char
            if char == quote and not current.endswith("\\" + char):
                quote = None
        elif char in "'\"`/":
            quote = char
            current += char
        elif char == ",":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def glob_regex(glob: str) -> str:
    """A regex for a Playwright glob against '/' + the path: `**` any folders, `*` and `?` within a
    name, {a,b} either; a glob without '/' matches the file's name."""
    out, i, glob = "", 0, glob.lstrip("/")
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(?:[^/]*/)*", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif glob[i] == "?":
            out, i = out + "[^/]", i + 1
        elif glob[i] == "{" and "}" in glob[i:]:
            end = glob.index("}", i)
            out, i = out + "(?:" + "|".join(re.escape(part) for part in glob[i + 1:end].split(",")) + ")", end + 1
        else:
            out, i = out + re.escape(glob[i]), i + 1
    return ("/" if "/" not in glob else "^/") + out + "$"


def start(suite: Suite, trigger: str) -> Run:
    """Queue the suite as one run: its specs are the run's tests, the rest written beside them."""
    files = [RunFile(path=path, content=content) for path, content in suite.support]
    if suite.config is not None:
        files.append(RunFile(path=CONFIG_FILE, content=suite.config))
    run = Run(id=new_id(), kind="job", title=suite.title, trigger=trigger, retries=suite.retries,
              workers=suite.workers, timeout_ms=suite.timeout_ms, created_at=utcnow(), files=files,
              shards=suite.shards)
    run = runs.insert_suite(run, suite.specs)
    runs.enqueue(run)
    return run
