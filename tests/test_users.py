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
