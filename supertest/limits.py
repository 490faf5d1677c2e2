"""Limits of the web process itself."""
from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)


def raise_open_files() -> int:
    """Raise this process's soft limit on open files to its hard limit (gunicorn's workers inherit
    it): each SSE stream and proxied report holds a socket, and a soft limit of 1024 (a common
    default) would stop a web process at 1024 connections, well below WEB_CONNECTIONS. Returns
    the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            log.warning("could not raise the open files limit from %s to %s", soft, wanted)
    return soft
