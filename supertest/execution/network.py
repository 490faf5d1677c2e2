"""The sandbox's network of its own: a network namespace made in the run's child before bwrap
starts, connected to the outside by pasta (Debian's passt) through ordinary sockets of the worker,
so the test reaches websites and other machines but not the worker's loopback. See
docs/isolation.md for what each deployment gets."""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import time

# The sandbox's own network: its address, the gateway (pasta) and a DNS address pasta answers for.
# Not the host's addresses (pasta's default): with those, the host's own non-loopback addresses
# would be local inside the sandbox. These are QEMU's and slirp4netns' usual ones.
NET_ADDRESS, NET_GATEWAY, NET_DNS = "10.0.2.100", "10.0.2.2", "10.0.2.3"
PASTA_OPTIONS = (
    "--foreground",  # no daemon: it stays in the run's process group, so the runner's kill takes it
    "--quiet",
    "--runas", "0",  # else it becomes nobody before opening the namespace, which only root may open
    "--config-net", "--address", NET_ADDRESS, "--netmask", "24", "--gateway", NET_GATEWAY,
    "--no-map-gw",  # the gateway address is not a way to the host's loopback
    "--tcp-ports", "none", "--udp-ports", "none",  # no port of the host leads into the sandbox
    # Nor does the sandbox's loopback lead to the host's: by default pasta forwards every port bound
    # on the host's loopback to the same port of the sandbox's.
    "--tcp-ns", "none", "--udp-ns", "none",
    # Queries to NET_DNS go to the host's first nameserver, even one on the host's loopback
    # (systemd-resolved's 127.0.0.53, Docker's 127.0.0.11), which the sandbox cannot reach itself.
    "--dns-forward", NET_DNS,
)
CLONE_NEWNET = 0x40000000
NETWORK_READY_SECONDS = 10


def pasta_command() -> list[str] | None:
    """How to start pasta: with a SIGKILL when its parent (bwrap) dies, as nothing else would end
    it when the worker dies. None when pasta or setpriv is missing."""
    pasta, setpriv = shutil.which("pasta"), shutil.which("setpriv")
    if pasta is None or setpriv is None:
        return None
    return [setpriv, "--pdeathsig", "KILL", "--", pasta, *PASTA_OPTIONS]


def sandbox_resolv_conf(host: str) -> str:
    """The sandbox's /etc/resolv.conf: pasta's DNS address first, then the host's nameservers the
    sandbox can reach itself (not those on the host's loopback), and the host's search and options."""
    servers = [NET_DNS]
    rest = []
    for line in host.splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            if not (words[1].startswith("127.") or words[1] == "::1") and len(servers) < 3:  # glibc reads 3
                servers.append(words[1])
        elif words[:1] in (["search"], ["domain"], ["options"]):
            rest.append(line)
    return "".join(f"nameserver {server}\n" for server in servers) + "".join(f"{line}\n" for line in rest)


def _private_network(pasta: list[str]) -> None:
    """In the child, as root, before exec: move into a new network namespace, which bwrap and the
    test then inherit, and have pasta connect it; return once it has a default route.

    pasta must itself run in the host's namespace (its sockets there are the sandbox's way out), so
    it is started from there, with the new namespace handed over as an open file. It becomes our
    child, hence bwrap's after exec: in the run's process group, with a SIGKILL when bwrap dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    host = os.open("/proc/self/ns/net", os.O_RDONLY)
    _check(libc.unshare(CLONE_NEWNET), "unshare")
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    _check(libc.setns(host, CLONE_NEWNET), "setns")
    os.set_inheritable(own, True)  # pasta cannot open our /proc/<pid>/ files: it drops its capabilities first
    null = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0), (os.POSIX_SPAWN_DUP2, 1, 2)]
    pid = os.posix_spawn(pasta[0], [*pasta, "--netns", f"/proc/self/fd/{own}"], {}, file_actions=null)
    _check(libc.setns(own, CLONE_NEWNET), "setns")
    os.close(host)
    os.close(own)
    deadline = time.monotonic() + NETWORK_READY_SECONDS
    while not _has_default_route():
        if os.waitpid(pid, os.WNOHANG) != (0, 0) or time.monotonic() > deadline:
            _kill(pid)
            raise RuntimeError("pasta could not connect the sandbox's network")
        time.sleep(0.002)


def _has_default_route() -> bool:
    """Whether this process's network namespace has an IPv4 or IPv6 default route: pasta has set
    up its address and routes (IPv6 may come a moment after IPv4)."""
    with open("/proc/self/net/route") as routes:  # "Iface Destination Gateway ...", hex
        if any(line.split()[1] == "00000000" for line in routes.readlines()[1:]):
            return True
    with open("/proc/self/net/ipv6_route") as routes:  # "destination prefix-length ... iface"
        return any(fields[:2] == ["0" * 32, "00"] and fields[-1] != "lo" for fields in map(str.split, routes))


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
