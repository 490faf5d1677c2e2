"""Copying what a run left (execution/collect.py), on hostile trees made here: only regular files, no
link followed, within the limits, everything left out named. Read as an unprivileged uid, as the
worker reads a run's files."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from supertest.execution.collect import MB, Limits, collect
from supertest.nofollow import remove_tree

RUN_UID = 900_000_999  # a uid of SANDBOX_UIDS' kind: no account, no rights but its own files
LIMITS = Limits(max_bytes=4 * MB, max_files=100, max_depth=4)


def own(path: Path) -> None:
    """Give a tree to the run's uid, as the worker does with a run's directory."""
    for folder, dirs, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, entry) for entry in dirs + files)]:
            os.chown(name, RUN_UID, RUN_UID, follow_symlinks=False)


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "report" / "data").mkdir(parents=True)
    (run / "report" / "index.html").write_text("<html>report</html>")
    (run / "report" / "data" / "trace.zip").write_bytes(b"PK" + bytes(1000))
    (run / "supertest-results.json").write_text('{"tests": []}')
    return run


def copied(target: Path) -> list[str]:
    return sorted(str(path.relative_to(target)) for path in target.rglob("*") if path.is_file())


def test_regular_files_are_copied_as_they_are(run_dir: Path, tmp_path: Path) -> None:
    own(run_dir)
    names = ["supertest-results.json", "report", "missing"]
    result = collect(run_dir, names, tmp_path / "kept", LIMITS, (RUN_UID,) * 2)
    assert copied(tmp_path / "kept") == ["report/data/trace.zip", "report/index.html", "supertest-results.json"]
    assert (tmp_path / "kept" / "report" / "data" / "trace.zip").read_bytes() == b"PK" + bytes(1000)
    assert (result.files, result.left_out, result.summary()) == (3, [], None)
    assert all(path.stat().st_uid == os.geteuid() for path in (tmp_path / "kept").rglob("*"))  # the worker's own


@pytest.mark.parametrize(("plant", "shown", "why"), [
    (lambda report: (report / "x.txt").symlink_to("/etc/shadow"), "report/x.txt", "a symbolic link"),
    (lambda report: (report / "etc").symlink_to("/etc"), "report/etc", "a symbolic link"),
    (lambda report: (report / "data" / "up").symlink_to(".."), "report/data/up", "a symbolic link"),
    (lambda report: os.mkfifo(report / "pipe"), "report/pipe", "a FIFO"),
    (lambda report: os.link(report / "index.html", report / "again.html"), "report/again.html",
     "a file with more than one hard link"),
    (lambda report: (report / "bad\nname.txt").write_text("x"), "report/bad\\nname.txt",
     "a name that is not plain text"),
    (lambda report: (report / os.fsdecode(b"\xff.txt")).write_text("x"), "report/\\udcff.txt",
     "a name that is not plain text"),
])
def test_what_is_not_a_plain_regular_file_is_left_out_and_named(run_dir: Path, tmp_path: Path, plant, shown: str,
                                                                 why: str) -> None:
    plant(run_dir / "report")
    own(run_dir)
    result = collect(run_dir, ["report"], tmp_path / "kept", LIMITS, (RUN_UID,) * 2)
    assert (shown, why) in result.left_out, result.left_out
    assert shown in (result.summary() or "")
    assert not [path for path in (tmp_path / "kept").rglob("*") if path.is_symlink()]
    assert b"root:" not in b"".join(path.read_bytes() for path in (tmp_path / "kept").rglob("*") if path.is_file())


def test_a_report_that_is_a_link_is_not_followed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "report").symlink_to("/etc")
    (run / "supertest-results.json").symlink_to("/etc/shadow")
    own(run)
    result = collect(run, ["supertest-results.json", "report"], tmp_path / "kept", LIMITS, (RUN_UID,) * 2)
    assert copied(tmp_path / "kept") == []
    assert result.left_out == [("supertest-results.json", "a symbolic link"), ("report", "a symbolic link")]


def test_a_file_the_runs_user_cannot_read_is_not_read_for_it(run_dir: Path, tmp_path: Path) -> None:
    """Even were a link followed, the reading is done with the run's rights, not root's."""
    own(run_dir)
    secret = run_dir / "report" / "roots.txt"
    secret.write_text("only root")
    secret.chmod(0o600)  # root's, in the run's folder
    result = collect(run_dir, ["report"], tmp_path / "kept", LIMITS, (RUN_UID,) * 2)
    assert ("report/roots.txt", "could not be read: Permission denied") in result.left_out
    assert not (tmp_path / "kept" / "report" / "roots.txt").exists()


def test_bytes_past_the_limit_are_left_out_and_the_copy_never_grows_past_it(run_dir: Path, tmp_path: Path) -> None:
    for n in range(3):
        (run_dir / "report" / f"video-{n}.webm").write_bytes(bytes(1536 * 1024))  # 1.5 MB each
    with open(run_dir / "report" / "sparse.bin", "wb") as sparse:  # 1 TB that takes no disk
        sparse.truncate(1 << 40)
    own(run_dir)
    result = collect(run_dir, ["report"], tmp_path / "kept", LIMITS, (RUN_UID,) * 2)
    assert result.bytes <= LIMITS.max_bytes
    assert sum(path.stat().st_size for path in (tmp_path / "kept").rglob("*") if path.is_file()) == result.bytes
    reasons = dict(result.left_out)
    assert "would pass the limit of 4 MB" in reasons["report/sparse.bin"]
    assert len([path for path in reasons if path.startswith("report/video-")]) == 1  # two fit, the third does not


def test_the_number_of_files_and_the_depth_are_bounded(run_dir: Path, tmp_path: Path) -> None:
    crowd = run_dir / "report" / "crowd"
    crowd.mkdir()
    for n in range(500):
        (crowd / f"{n}.txt").write_text("x")
    deep = run_dir / "report"
    for n in range(10):
        deep = deep / f"d{n}"
    deep.mkdir(parents=True)
    own(run_dir)
    result = collect(run_dir, ["report"], tmp_path / "kept", LIMITS, (RUN_UID,) * 2)
    assert result.entries <= LIMITS.max_files + 1
    assert (tmp_path / "kept" / "report" / "index.html").is_file()  # files before folders: the report's own survive
    assert any("over the limit of 100 files" in why for _, why in result.left_out), result.left_out


def test_folders_nested_past_the_limit_are_left_out(run_dir: Path, tmp_path: Path) -> None:
    deep = run_dir / "report"
    for n in range(10):
        deep = deep / f"d{n}"
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("x")
    own(run_dir)
    result = collect(run_dir, ["report"], tmp_path / "kept", LIMITS, (RUN_UID,) * 2)
    assert ("report/d0/d1/d2/d3", "folders nested deeper than 4") in result.left_out, result.left_out
    assert not list((tmp_path / "kept").rglob("bottom.txt"))


def test_a_tree_thousands_of_folders_deep_is_removed(tmp_path: Path) -> None:
    """Python's rmtree recurses once a level (RecursionError past about 1,000): a run's folders are
    removed with nofollow.remove_tree, which does not, and follows no link."""
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "keep.txt").write_text("not the run's")
    subprocess.run([sys.executable, "-c", "import os\nfor _ in range(3000):\n    os.mkdir('d'); os.chdir('d')\n"
                    "os.symlink('../../../../keep.txt', 'link')"], cwd=run, check=True)
    remove_tree(run)
    assert not run.exists() and (tmp_path / "keep.txt").read_text() == "not the run's"
