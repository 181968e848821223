"""host without a server: which phase scripts may travel in their command line (remote.inline)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from deploy import host, releases, remote
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
    host.reload(Conn(), load(BASE), "owner=me", None)
    host.reload(Conn(), load({**BASE, "health": {"headers": {"Authorization": TOKEN}}}), "owner=me", None)
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
    host.begin(Conn(), s, "owner=me")
    (text, in_line), = made
    assert in_line and TOKEN not in text and "HEALTH_HEADERS=''" in text


def assigned(text: str) -> set[str]:
    """The upper-case names a shell text assigns (NAME=..., also after `local`/`export` or in a list)."""
    return set(re.findall(r"(?<![\w$])([A-Z][A-Z0-9_]*)=", text))


# Set by lib.sh only in a subshell or one command's environment (a check's), never kept between phases.
SUBSHELL_ONLY = {"ID", "PY_PATH", "DJANGO_SETTINGS", "HEALTH_HEADERS"}


def test_the_phases_that_follow_the_begin_keep_clear_of_what_lib_sh_keeps_between_phases() -> None:
    """A phase that follows the begin in its command sets its variables in the same shell: one named like a
    global lib.sh keeps (AHEAD_VENV: the import check started at the begin) overwrote it, and a deploy sent
    ahead silently lost the import check started ahead."""
    sent: list[bytes] = []

    class Session:
        def send(self, data: bytes) -> None:
            sent.append(data)

    s = load(BASE)
    plan = host.PrepareArgs("20260101T000001Z-def", "def", (("migrate", "true"),), venv_key="k1", then_switch=True,
                            session=Session())  # type: ignore[arg-type]
    guess = host.Facts(releases.Listing((), None), "", "3.11", frozenset(), False, "x86_64", "f" * 64)
    sent_ahead = host.send_ahead(Conn(), s, plan, b"", "owner=me", guess, plan.session)  # type: ignore[arg-type]
    assert len(sent) == 1  # the ahead check and the prepare; the switch only once fab has seen the facts
    host.send_switch(Conn(), s, sent_ahead, "owner=me")
    brought = set()
    data = b"".join(sent)
    while data:  # frames: a length, a newline, the phase's text; each text opens with its variables
        size, _, data = data.partition(b"\n")
        text, data = data[: int(size)].decode(), data[int(size) :]
        for line in text.splitlines():
            if not re.match(r"[A-Z][A-Z0-9_]*=", line):
                break
            brought.add(line.partition("=")[0])
    assert {"GUESS_VENV", "VENV_KEY", "NO_ROLLBACK"} <= brought  # the ahead, prepare and switch phases
    kept = assigned((remote.HERE / "lib.sh").read_text() + (remote.HERE / "begin.sh").read_text()) - SUBSHELL_ONLY
    assert brought & kept == set()
