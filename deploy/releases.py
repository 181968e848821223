"""Release ids and states, and the host's listing of them: pure logic (which release a rollback picks is
decided on the host, along its history: rollback_target in deploy/remote/lib.sh)."""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass

# UTC timestamp + short revision: sorts by time, names the code, is a safe path component.
ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9]{1,12}$")
FINISHED = "finished"


@dataclass(frozen=True)
class Release:
    id: str
    state: str  # preparing, prepared, finished, failed, unhealthy (live but failed its check)
    revision: str

    @property
    def finished(self) -> bool:
        return self.state == FINISHED


@dataclass(frozen=True)
class Listing:
    """What the host said about its releases."""

    releases: tuple[Release, ...]
    current: str | None

    def get(self, release_id: str) -> Release | None:
        return next((r for r in self.releases if r.id == release_id), None)


def new_id(short_revision: str, now: float | None = None, taken: tuple[str, ...] = ()) -> str:
    """A fresh id, later than every id in `taken`.

    Ids sort by time only while their seconds differ ("...T101500Z-f00" sorts after "...T101500Z-abc"
    whatever their order): cleanup and listings rely on that order, so a deploy within the
    same second as (or before) the newest release on the host takes the second after it.
    """
    t = int(time.time() if now is None else now)
    newest = max((int(id_time(r)) for r in taken if valid_id(r)), default=None)
    if newest is not None and t <= newest:
        t = newest + 1
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t)) + "-" + short_revision


def id_time(release_id: str) -> float:
    """The UTC time a release id was made at."""
    return float(calendar.timegm(time.strptime(release_id.split("-", 1)[0], "%Y%m%dT%H%M%SZ")))


def valid_id(release_id: str) -> bool:
    return bool(ID_RE.match(release_id))


def parse(lines: list[str]) -> Listing:
    """Parse '@@release ID STATE REV' and '@@current ID' lines of a remote script's output."""
    releases = []
    current = None
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "@@release" and valid_id(parts[1]):
            releases.append(Release(parts[1], parts[2], parts[3] if len(parts) > 3 else "-"))
        elif len(parts) == 2 and parts[0] == "@@current":
            current = parts[1] if valid_id(parts[1]) else None
    return Listing(tuple(sorted(releases, key=lambda r: r.id)), current)
