from __future__ import annotations

from pathlib import Path

from deploy import planning as plan
from deploy import render
from deploy.config import load
from deploy.output import plan_text

BASE = {"app": "imdb", "deploy_to": "/srv/imdb", "server_name": "imdb.example.com", "wsgi": "imdb.wsgi"}


def test_environment_values_never_in_a_diff() -> None:
    old = render.render(load({**BASE, "environment": {"TOKEN": "old-secret"}}), "20260101T000000Z-a", "a")["app.wsgi"]
    new = render.render(load({**BASE, "environment": {"TOKEN": "new-secret"}}), "20260101T000001Z-b", "b")["app.wsgi"]
    d = plan.diff(plan.mask(old), plan.mask(new), "app.wsgi")
    assert "secret" not in d
    assert "os.environ['TOKEN'] = <hidden>" in plan.mask(new)
    assert "os.environ[\"DEPLOY_RELEASE\"] = '20260101T000001Z-b'" in plan.mask(new)


def test_diff_of_nothing_and_of_the_same() -> None:
    assert plan.diff("a\n", "a\n", "x") == ""
    assert plan.diff(None, "a\n", "x").splitlines()[-1] == "+a"


def test_plan_text_for_a_host_not_set_up() -> None:
    p = {"set_up": False, "revision": "abcdef1234567890"}
    assert "not set up: run fab setup first" in plan_text("web1", p)


def _survey(files: dict[str, bytes], python: str = "3.11.2", venvs: frozenset[str] = frozenset()) -> object:
    from deploy import dependencies, host, releases, source, venv

    src = source.Source(tuple(source.File(p, d, 0o644) for p, d in files.items()), "a" * 40, 0)
    live = "20260101T000000Z-aaaaaaa"
    listing = releases.Listing((releases.Release(live, "finished", "a" * 40),), live)
    key = venv.key(dependencies.requirement_files("requirements.txt", src), python, ())
    vhost = render.render(load(BASE), live, "a" * 40)["vhost.conf"]
    return host.Survey(True, host.Facts(listing, src.manifest(), python, venvs | {key}), key, None, vhost, None)


def test_make_compares_with_the_live_release() -> None:
    from deploy import source

    live_files = {"app.py": b"1", "old.py": b"x", "requirements.txt": b"Django\n"}
    survey = _survey(live_files)
    s = load({**BASE, "hooks": [{"name": "migrate", "run": "m", "when_changed": ["*/migrations/*"]}]})
    new = {"app.py": b"2", "new.py": b"y", "requirements.txt": b"Django\n"}
    src = source.Source(tuple(source.File(p, d, 0o644) for p, d in new.items()), "b" * 40, 0)
    p = plan.make(s, src, survey, Path("."))  # type: ignore[arg-type]
    assert p["files"] == {"added": ["new.py"], "changed": ["app.py"], "removed": ["old.py"], "unchanged": 1}
    assert p["requirements_changed"] is False and p["venv"].startswith("reuse ")
    assert p["hooks"] == [{"name": "migrate", "run": False, "reason": "no matching file changed"}]
    assert "vhost.conf" not in p["diffs"] and p["reload"] == "slots"

    new["requirements.txt"] = b"Django\nrequests\n"
    src = source.Source(tuple(source.File(q, d, 0o644) for q, d in new.items()), "b" * 40, 0)
    p = plan.make(load({**BASE, "server_aliases": ["www.imdb.example.com"]}), src, survey, Path("."))  # type: ignore[arg-type]
    assert p["requirements_changed"] is True and p["venv"].startswith("build ")
    assert "+    ServerAlias www.imdb.example.com" in p["diffs"]["vhost.conf"]
    assert p["reload"].startswith("graceful")


def test_tracked_files_under_shared_paths_are_named() -> None:
    from deploy.planning import shared_tracked

    s = load({**BASE, "shared_dirs": ["media"], "shared_files": ["db.sqlite3"]})
    paths = {"media/default.png": "x", "media/a/b.png": "y", "mediafile.txt": "z", "db.sqlite3": "w", "app.py": "v"}
    assert shared_tracked(s, paths) == {"media": ["media/a/b.png", "media/default.png"], "db.sqlite3": ["db.sqlite3"]}
