"""A uid of its own for every run at once (execution/users.py), and nothing of a run left behind."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from supertest.execution.processes import kill_user
from supertest.execution.users import NoFreeUser, UserRange

FIRST = 900_000_500


def test_runs_at_once_hold_different_uids_and_a_full_range_says_so(tmp_path: Path) -> None:
    users = UserRange(FIRST, FIRST + 1, tmp_path / "locks")
    with users.hold() as one, users.hold() as two:
        assert {one, two} == {(FIRST, FIRST), (FIRST + 1, FIRST + 1)}
        with pytest.raises(NoFreeUser, match="all 2 sandbox users"), users.hold():
            pass
    with users.hold() as again:  # let go once the runs ended
        assert again in {(FIRST, FIRST), (FIRST + 1, FIRST + 1)}


def test_what_a_uid_left_running_is_killed_when_its_run_ends(tmp_path: Path) -> None:
    users = UserRange(FIRST + 2, FIRST + 2, tmp_path / "locks")
    with users.hold() as (uid, gid):
        stray = subprocess.Popen(["sleep", "60"], user=uid, group=gid, start_new_session=True)
    assert stray.wait(timeout=10) == -9
    assert kill_user(uid) == 0


@pytest.mark.parametrize("planted", ["world-writable", "a link"])
def test_a_lock_folder_someone_else_could_have_made_is_refused(tmp_path: Path, planted: str) -> None:
    """In a world-writable /tmp, anyone could make the folder first and hand two runs one uid."""
    folder = tmp_path / "locks"
    if planted == "a link":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        folder.symlink_to(tmp_path / "elsewhere")
    else:
        folder.mkdir()
        os.chmod(folder, 0o777)
    with pytest.raises(OSError if planted == "a link" else RuntimeError), UserRange(FIRST, FIRST, folder).hold():
        pass


def test_a_run_directory_is_given_to_its_user_bottom_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder becomes the user's only after everything below it: while the tree is walked, a process
    of that user (a warm runner's) cannot swap a folder still to be walked for a link out of it."""
    from supertest.execution import sandbox

    root = tmp_path / "run"
    (root / "tests" / "deep").mkdir(parents=True)
    (root / "tests" / "deep" / "a.spec.ts").write_text("x")
    (root / "playwright.config.js").write_text("x")
    os.symlink("/etc", root / "node_modules")
    done: list[str] = []
    real_chown = os.chown

    def chown(path: str | Path, uid: int, gid: int, follow_symlinks: bool = True) -> None:
        assert not follow_symlinks
        path = str(path)
        below = [other for other in done if other.startswith(path + "/")]
        # Everything under a folder is given away before it: nothing below it is done after.
        assert not any(inside.startswith(path + "/") for inside in all_paths if inside not in below), path
        done.append(path)
        real_chown(path, uid, gid, follow_symlinks=False)

    all_paths = [str(root), *(os.path.join(folder, name) for folder, dirs, files in os.walk(root)
                              for name in dirs + files)]
    monkeypatch.setattr(sandbox.os, "chown", chown)
    sandbox.chown_tree(root, 12345, 12345)
    assert sorted(done) == sorted(all_paths) and done[-1] == str(root)
    assert os.lstat(root / "tests" / "deep" / "a.spec.ts").st_uid == 12345
    assert os.stat("/etc").st_uid == 0  # the link was given away, not what it points to
