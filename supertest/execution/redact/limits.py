"""How much redacting one file may take, and the counting of it: bytes read out of archives (its
own budget) and time (a deadline a folder's files share). See the package's docstring for why."""
from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """How much redacting may take (see the package's docstring); past any, a file is removed."""

    max_expanded_bytes: int = 1 << 30  # read out of archives, per file, at any depth
    seconds: float = 60.0  # for one redact_folder or redact_file call
    max_depth: int = 3  # archives within each other that we open

    def too_big(self) -> str:
        return f"expands past {_megabytes(self.max_expanded_bytes)} MB while searching its archives for secrets"

    def too_long(self) -> str:
        return f"redaction took longer than {self.seconds:g} s"

    def too_deep(self) -> str:
        return f"archives nested deeper than {self.max_depth}"


DEFAULT_LIMITS = Limits()


def _megabytes(size: int) -> str:
    return f"{size >> 20}" if size % (1 << 20) == 0 else f"{size / (1 << 20):.1f}"


class _Exceeded(Exception):
    """A limit was passed (not an OSError nor a zip error: nothing must catch it on the way up)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Budget:
    """What is left while redacting one file: of the bytes it may read out of archives (its
    own), and of the time (the deadline, which a folder's files share)."""

    def __init__(self, limits: Limits, deadline: float) -> None:
        self.limits = limits
        self.left = limits.max_expanded_bytes
        self.deadline = deadline

    def check_time(self) -> None:
        if time.monotonic() >= self.deadline:
            raise _Exceeded(self.limits.too_long())

    def spend(self, size: int) -> None:
        """Count `size` bytes read out of an archive; called before they are written anywhere."""
        self.left -= size
        if self.left < 0:
            raise _Exceeded(self.limits.too_big())
        self.check_time()

    def afford(self, declared: int) -> None:
        """Refuse at once an entry that says it is bigger than what is left. (Only this way: a
        smaller declared size is no promise, spend() counts what is really read.)"""
        if declared > self.left:
            raise _Exceeded(self.limits.too_big())

    def enter(self, depth: int) -> None:
        """Before opening an archive at `depth` (the file itself is 0)."""
        if depth >= self.limits.max_depth:
            raise _Exceeded(self.limits.too_deep())
