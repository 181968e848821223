"""The host's deploy lock (an atomic `mkdir <deploy_to>/.lock`): who holds it, and saying so."""

from __future__ import annotations

import getpass
import os
import re
import secrets
import socket
import time

from deploy.errors import LockHeld
from deploy.output import duration

SAFE = re.compile(r"[^A-Za-z0-9._@-]")


def _clean(value: str) -> str:
    return SAFE.sub("_", value)[:64] or "_"


def info(command: str, now: float | None = None) -> str:
    """The line written into the lock: owner, local host, pid, time, command, and a token of this run only.

    Every phase of the run passes the whole line: it acts (and unlocks) only while the lock holds this
    token, so a lock taken by another deploy after `fab unlock --force` is never this run's to remove.
    """
    try:
        owner = getpass.getuser()
    except Exception:  # no passwd entry (containers): still lock
        owner = str(os.getuid())
    return (
        f"owner={_clean(owner)} host={_clean(socket.gethostname())} pid={os.getpid()} "
        f"time={int(now if now is not None else time.time())} cmd={_clean(command)} token={secrets.token_hex(8)}"
    )


def parse(event: str) -> dict[str, str]:
    """'lock owner=.. host=.. pid=.. time=.. cmd=.. now=..' -> fields."""
    return dict(p.split("=", 1) for p in event.split()[1:] if "=" in p)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def held_error(host: str, event: str) -> LockHeld:
    """The error for a lock held by someone else: who, how long, and whether its step still runs on the host.

    Only the host can tell whether the holder is gone: a `fab` killed with -9 leaves its remote step
    (pip, a hook) running, and that lock is not stale until the step has ended.
    """
    f = parse(event)
    try:
        age = max(0, int(f.get("now", "0")) - int(f.get("time", "0")))
    except ValueError:
        age = 0
    holder = f"{f.get('owner', '?')}@{f.get('host', '?')} (pid {f.get('pid', '?')}, {f.get('cmd', '?')})"
    if f.get("running") == "1":
        gone = f.get("host") == _clean(socket.gethostname()) and f.get("pid", "").isdigit() and not _alive(int(f["pid"]))
        why = "Its fab process is gone, but its step" if gone else "Its step"
        return LockHeld(
            f"{host}: deploy lock held by {holder} for {duration(age)}. {why} is still running on the host:"
            f" wait for it to end, or remove the lock anyway with: fab -H {host} unlock --force",
            host,
        )
    return LockHeld(
        f"{host}: deploy lock held by {holder} for {duration(age)}. Nothing of it runs on the host any more:"
        f" the lock is stale. If no deploy is running, clear it with: fab -H {host} unlock",
        host,
    )
