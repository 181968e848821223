"""deploy.guesses: what the last deploy from this machine left on a host, kept per host and app."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy import guesses, host, releases
from deploy.config import Settings, load

RID = "20260101T000000Z-abc"


@dataclass(frozen=True)
class Conn:
    user: str = "deploy"
    host: str = "web1"
    port: int = 22


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def settings(**over: object) -> Settings:
    return load({"app": "imdb", "deploy_to": "/srv/imdb", "server_name": "x", "wsgi": "imdb.wsgi:application", **over})


def facts(fingerprint: str = "f" * 64) -> host.Facts:
    listing = releases.Listing((releases.Release(RID, "finished", "abc123"),), RID)
    return host.Facts(listing, "h  app.py\n", "3.11.2", frozenset({"k1", "k2"}), True, "x86_64", fingerprint)


def test_what_is_saved_is_loaded_for_that_host_and_app_only(home: Path) -> None:
    s = settings()
    guesses.save(Conn(), s, facts())
    assert guesses.load(Conn(), s) == facts()
    for other, t in ((Conn(port=2222), s), (Conn(host="web2"), s), (Conn(user="ops"), s),
                     (Conn(), settings(deploy_to="/srv/other")), (Conn(), settings(app="other"))):
        assert guesses.load(other, t) is None
    (saved,) = (home / ".cache" / "fabdeploy" / "hosts").iterdir()
    assert saved.stat().st_mode & 0o777 == 0o600


def test_no_guess_from_a_file_it_cannot_read_or_a_release_without_a_fingerprint(home: Path) -> None:
    s = settings()
    guesses.save(Conn(), s, facts(fingerprint=""))
    assert guesses.load(Conn(), s) is None
    guesses.save(Conn(), s, facts())
    (saved,) = (home / ".cache" / "fabdeploy" / "hosts").iterdir()
    for text in ("{not json", "[]", '{"current": "../etc"}', ""):
        saved.write_text(text)
        assert guesses.load(Conn(), s) is None
