"""What fab last left on each host, kept on this machine: a deploy sends its release before the host has said what it has.

A deploy to one host makes its prepare (the delta, the hooks, the venv key) from the facts its begin reads on
the host, so the archive waits one round trip for them. With a guess — the release the last deploy from this
machine made live there, its manifest, fingerprint, Python and venvs — the prepare goes out with the begin,
and the host runs it only if the guess still holds (deploy/remote/ahead.sh); otherwise the host drops it and
fab sends the one it makes from the facts, as without a guess. A wrong or missing guess costs the bytes sent
ahead, never a different release.

One JSON file per (user, host, port, deploy_to, app) under ~/.cache/fabdeploy/hosts, mode 0600: it holds file
names and hashes of the app, no secret.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from fabric import Connection

from deploy import host, releases
from deploy.config import Settings


def folder() -> Path:
    return Path.home() / ".cache" / "fabdeploy" / "hosts"


def _file(c: Connection, s: Settings) -> Path:
    who = "\0".join((str(c.user), str(c.host), str(c.port), s.deploy_to, s.app))
    return folder() / (hashlib.sha256(who.encode()).hexdigest()[:32] + ".json")


def load(c: Connection, s: Settings) -> host.Facts | None:
    """The facts the host should say now, if a deploy from this machine left them; None without a guess."""
    try:
        data: dict[str, Any] = json.loads(_file(c, s).read_text())
        current = str(data["current"])
        revision = str(data["revision"])
        facts = host.Facts(
            releases.Listing((releases.Release(current, releases.FINISHED, revision),), current),
            str(data["manifest"]),
            str(data["python"]),
            frozenset(str(v) for v in data["venvs"]),
            bool(data["uv"]),
            str(data["arch"]),
            str(data["fingerprint"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no guess (or one this version cannot read): the deploy waits for the facts, as it would
    return facts if releases.valid_id(current) and facts.fingerprint else None


def save(c: Connection, s: Settings, facts: host.Facts) -> None:
    """Keep `facts` (what the host says once the release just switched to is live) for the next deploy."""
    current = facts.listing.current
    if not current or not facts.fingerprint:
        return
    live = facts.listing.get(current)
    data = {
        "current": current,
        "revision": live.revision if live else "-",
        "manifest": facts.manifest,
        "python": facts.python,
        "venvs": sorted(facts.venvs),
        "uv": facts.uv,
        "arch": facts.arch,
        "fingerprint": facts.fingerprint,
    }
    path = _file(c, s)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".guess-")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache only: the next deploy waits for the facts instead

