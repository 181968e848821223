"""End to end, both modes: setup, deploy, change, redeploy, rollback, status; failures keep the old release live."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import App, make_app
from tests.sandbox import Sandbox


@pytest.fixture(scope="module", params=["daemon", "embedded"])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    sb: Sandbox = request.getfixturevalue(f"{request.param}_host")
    a = make_app(sb, tmp_path_factory.mktemp(request.param), request.param)
    a.mode = request.param  # type: ignore[attr-defined]
    # Every test starts from the same state, alone or in any order: set up, version 1 deployed, then 2.
    a.ok("setup")
    a.ok("deploy")
    a.first = a.wait_version("1")  # type: ignore[attr-defined]
    a.set_version("2")
    a.ok("deploy")
    yield a
    shutil.rmtree(a.deploy_to, ignore_errors=True)


def test_setup_and_first_deploy(app: App) -> None:
    assert (app.deploy_to / "releases").is_dir() and (app.deploy_to / "shared").is_dir()
    data = app.first  # type: ignore[attr-defined]
    assert data["count"] == 24
    assert data["release"] == sorted(d.name for d in (app.deploy_to / "releases").iterdir())[0]
    status, _, body = app.get("/static/movies/site.css")
    assert status == 200 and "font-family" in body


def test_status_reads_mode_from_live_app(app: App) -> None:
    out = app.ok("status").stdout
    assert f"{app.mode} mode" in out  # type: ignore[attr-defined]
    assert "mpm " + ("event" if app.mode == "daemon" else "prefork") in out  # type: ignore[attr-defined]


def test_changed_view_is_served_after_deploy(app: App) -> None:
    before = app.current()
    app.set_version("2b")
    app.ok("deploy")
    assert app.current() != before
    data = app.wait_version("2b")
    assert data["release"] == app.current()


def test_redeploy_sends_only_changes_and_skips_unneeded_hooks(app: App) -> None:
    p = app.ok("deploy", "--force")  # nothing changed: without --force, 'unchanged' and no release
    assert "0 sent" in p.stderr and "linked" in p.stderr
    assert "hook:migrate" in p.stderr and "skipped" in p.stderr
    app.wait_version(app.version())
    status, _, body = app.get("/static/movies/site.css")
    assert status == 200 and "font-family" in body  # collectstatic's output carried over
    rel = app.deploy_to / "releases" / str(app.current())
    assert (rel / "movies" / "views.py").stat().st_nlink >= 2  # hard-linked, not copied


def finished(app: App) -> list[str]:
    rels = app.deploy_to / "releases"
    return sorted(d.name for d in rels.iterdir() if (d / ".release" / "state").read_text().strip() == "finished")


def test_rollback_serves_old_code_and_its_venv(app: App) -> None:
    live, version = app.current(), app.version()
    ids = finished(app)
    app.ok("rollback")
    assert app.current() == ids[ids.index(str(live)) - 1]
    if app.current() != ids[0]:  # alone, the first rollback went there already
        app.ok("rollback", f"--to={ids[0]}")
    app.wait_version("1")
    # Each release links its own venv: the rolled-back release runs with the one it was built with.
    venv = os.readlink(app.deploy_to / "current" / ".venv")
    assert venv.startswith("../../shared/venvs/")
    app.ok("rollback", f"--to={live}")
    app.wait_version(version)


def test_releases_lists_live_one(app: App) -> None:
    out = app.ok("releases").stdout
    assert f"* {app.current()}" in out


def test_failed_pip_install_keeps_old_release(app: App) -> None:
    live = app.current()
    (app.path / "requirements.txt").write_text("Django>=4.2,<5.3\nno-such-package-fabdeploy-test==0.0.1\n")
    app.commit("bad-requirement")
    p = app.fab("deploy")
    assert p.returncode == 5, p.stderr
    assert "pip install" in p.stderr and "sandbox" in p.stderr
    assert app.current() == live
    assert not (app.deploy_to / ".lock").exists()
    app.wait_version(app.version())
    subprocess_revert(app)


def subprocess_revert(app: App) -> None:
    (app.path / "requirements.txt").write_text("Django>=4.2,<5.3\n")
    app.commit("fix-requirement")


def test_failed_configtest_keeps_old_release_and_vhost(app: App) -> None:
    live = app.current()
    vhost = app.sb.sites_dir / "imdb.conf"
    before = vhost.read_bytes()
    templates = app.path / "conf_templates"
    templates.mkdir()
    shipped = Path(__file__).resolve().parents[2] / "conf_templates" / "vhost.conf.j2"
    (templates / "vhost.conf.j2").write_text(shipped.read_text().replace("ServerName", "NoSuchDirective x\n    ServerName"))
    try:
        p = app.fab("deploy")
        assert p.returncode == 5, p.stderr
        assert "configtest" in p.stderr and "NoSuchDirective" in p.stderr
        assert app.current() == live
        assert vhost.read_bytes() == before
        assert not (app.deploy_to / ".lock").exists()
        app.wait_version(app.version())
    finally:
        shutil.rmtree(templates)
    # The half-made release is never a rollback target and goes away with the next deploy.
    app.ok("deploy")
    states = [(d / ".release" / "state").read_text().strip() for d in (app.deploy_to / "releases").iterdir()]
    assert set(states) == {"finished"}


def test_lock_held_fails_fast_and_unlock_clears(app: App) -> None:
    lock = app.deploy_to / ".lock"
    lock.mkdir()
    (lock / "info").write_text("owner=alice host=elsewhere pid=4242 time=1 cmd=deploy\n")
    shutil.chown(lock, app.sb.user.name)
    live = app.current()
    p = app.fab("deploy")
    assert p.returncode == 4
    assert "alice@elsewhere" in p.stderr and "unlock" in p.stderr
    assert app.current() == live
    app.ok("unlock")
    assert not lock.exists()


def test_rollback_without_previous_release_is_refused(app: App) -> None:
    p = app.fab("rollback", "--to=../../etc")
    assert p.returncode == 6 and "not a release id" in p.stderr
