"""Before the first run: can the user tests run as reach what a run needs, from inside the sandbox?

Without bubblewrap, a checkout under a folder others cannot enter (a home directory of mode 700,
a `mktemp -d` folder) hides node_modules from that user, and every run would end with node's
MODULE_NOT_FOUND. A worker finds that out once, by running node in the sandbox as a run would,
and then names the closed folder and what to do in its log, in /api/health and in each run's error.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from contextlib import nullcontext
from pathlib import Path

import redis

from supertest.execution.sandbox import Sandbox

log = logging.getLogger(__name__)

# For each (path, need): every folder above it must be enterable, and the path itself readable,
# runnable or writable. Prints the problems found as JSON.
PROBE = r"""
const fs = require('fs'), path = require('path');
const modes = { r: fs.constants.R_OK, x: fs.constants.X_OK, w: fs.constants.W_OK };
const problems = [];
for (const [target, need] of JSON.parse(process.argv[1])) {
  let closed = null;
  for (let at = '/', parts = path.dirname(target).split('/').filter(Boolean); !closed && parts.length; ) {
    at = path.join(at, parts.shift());  // from the top down: the outermost closed folder is the one to open
    try { fs.accessSync(at, fs.constants.X_OK); } catch (error) { closed = at; }
  }
  if (closed) { problems.push({ target, path: closed, need: 'enter' }); continue; }
  try { fs.accessSync(target, modes[need]); } catch (error) { problems.push({ target, path: target, need }); }
}
console.log(JSON.stringify(problems));
"""
NEEDS = {"enter": "enter", "r": "read", "x": "run", "w": "write to"}


def check(box: Sandbox, node: str, targets: list[tuple[Path, str]], readable: list[Path], runs_dir: Path,
          env: dict[str, str]) -> str | None:
    """None when the sandbox's user reaches every target ("r", "x" or "w"), else what to do about it."""
    # A uid of its own, as a run's: one a run holds would be killed (or starved) with that run.
    try:
        with box.users.hold() if box.users else nullcontext(None) as ids:
            return _probe(box, node, targets, readable, runs_dir, env, ids)
    except (OSError, subprocess.SubprocessError, RuntimeError) as error:
        return f"The test sandbox could not be started: {error}"


def _probe(box: Sandbox, node: str, targets: list[tuple[Path, str]], readable: list[Path], runs_dir: Path,
           env: dict[str, str], ids: tuple[int, int] | None) -> str | None:
    runs_dir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="preflight-", dir=runs_dir))
    tmp_dir = Path(tempfile.mkdtemp(prefix="st-"))
    try:
        probe = [(str(run_dir), "w"), *((str(path), need) for path, need in targets)]
        launch = box.launch([node, "-e", PROBE, json.dumps(probe)], run_dir, tmp_dir, readable, ids)
        done = subprocess.run(launch.argv, cwd=run_dir, env={**env, "HOME": str(run_dir), "TMPDIR": str(tmp_dir)},
                              capture_output=True, timeout=60, preexec_fn=launch.preexec, start_new_session=True)
        output = done.stdout.decode(errors="replace").strip()
        try:
            problems = json.loads(output.splitlines()[-1])
        except (ValueError, IndexError):
            why = (done.stderr or done.stdout).decode(errors="replace").strip()[-500:]
            return (f"The test sandbox could not start node ({node}) as {_who(ids)}: {why}. "
                    "Make node and the folders above it readable by others, or see docs/isolation.md.")
        return _advice(problems, ids, box.uses_bwrap()) if problems else None
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _advice(problems: list[dict[str, str]], ids: tuple[int, int] | None, bwrap: bool) -> str:
    first = problems[0]
    closed = Path(first["path"])
    try:
        mode = f" (mode {stat.filemode(closed.stat().st_mode)})"
    except OSError:
        mode = ""
    also = "; ".join(sorted({problem["target"] for problem in problems[1:]}))
    fix = (f"chmod o+x {closed}" if first["need"] == "enter" else
           f"chmod o+{'rx' if first['need'] != 'w' else 'w'} {closed}")
    return (f"Tests run as {_who(ids)}, which cannot {NEEDS[first['need']]} {closed}{mode}, so it cannot reach "
            f"{first['target']}{f' (nor {also})' if also else ''}. Every run would fail. Fix: `{fix}`, or move the "
            f"checkout (RUNS_DIR, NODE_MODULES, PLAYWRIGHT_BROWSERS_PATH) somewhere others can read"
            f"{'' if bwrap else ', or install bubblewrap, whose sandbox needs only the folders themselves readable'}.")


def _who(ids: tuple[int, int] | None) -> str:
    return f"uid {ids[0]}" if ids else f"this worker's user (uid {os.geteuid()})"


def key(namespace: str, worker: str) -> str:
    return f"{namespace}:sandbox-problem:{worker}"


def announce(client: redis.Redis, namespace: str, worker: str, problem: str | None, seconds: int) -> None:
    """Tell /api/health, for `seconds`, that this worker cannot run tests (refreshed while it lives)."""
    if problem:
        client.set(key(namespace, worker), problem, ex=seconds)
    else:
        client.delete(key(namespace, worker))


def announced(client: redis.Redis, namespace: str) -> list[str]:
    """The problems live workers have announced."""
    keys = list(client.scan_iter(match=key(namespace, "*"), count=100))
    values: list[bytes | None] = client.mget(keys) if keys else []  # type: ignore[assignment]
    return sorted({value.decode() for value in values if value})
