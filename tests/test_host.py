"""host without a server: which phase scripts may travel in their command line (remote.inline)."""

from __future__ import annotations

from typing import Any

import pytest

from deploy import host, remote
from deploy.config import load

BASE = {"app": "imdb", "deploy_to": "/srv/imdb", "server_name": "imdb.example.com", "wsgi": "imdb.wsgi"}
TOKEN = "Bearer tok-123"


class Conn:
    original_host = "web1"


def test_a_script_with_a_secret_stays_off_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ps` on the host shows command lines to every user: a health check's header (a token) keeps the
    phase's script on stdin; without one the script goes in the command line (a round trip less)."""
    sent: list[tuple[str, bool]] = []

    def run(c: Any, text: str, **kw: Any) -> remote.Outcome:
        sent.append((text, kw["in_line"]))
        return remote.Outcome(0, ("reload graceful",), "")

    monkeypatch.setattr(remote, "run", run)
    host.reload(Conn(), load(BASE), "owner=me", None)  # type: ignore[arg-type]
    host.reload(Conn(), load({**BASE, "health": {"headers": {"Authorization": TOKEN}}}), "owner=me", None)  # type: ignore[arg-type]
    assert [in_line for _, in_line in sent] == [True, False]
    assert TOKEN in sent[1][0]  # the check still gets its header, on stdin


def test_begin_goes_in_its_command_line_without_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deploy's begin needs no health check: its private variables are blanked and it always goes inline;
    the phases after it in the session bring their own variables, on stdin."""
    made: list[tuple[str, bool]] = []

    class Session:
        def __init__(self, c: Any, text: str, in_line: bool = False) -> None:
            made.append((text, in_line))

        def step(self, *a: Any) -> remote.Outcome:
            return remote.Outcome(0, ("python 3.11.2",), "")

    monkeypatch.setattr(remote, "Session", Session)
    s = load({**BASE, "health": {"headers": {"Authorization": TOKEN}}})
    host.begin(Conn(), s, "owner=me")  # type: ignore[arg-type]
    (text, in_line), = made
    assert in_line and TOKEN not in text and "HEALTH_HEADERS=''" in text
