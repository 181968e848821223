"""How many SSH commands each operation costs, counted from sshd's own log (LogLevel DEBUG1).

Budgets (issue: speed): first deploy <= 6 (setup included); a redeploy is ONE command (begin, prepare
and switch in one channel: remote.Session), forced with nothing changed, with one .py changed, or with
nothing changed at all (then it says 'unchanged' and makes no release); rollback <= 2, reload <= 2; plan
(issue: for people and pipelines) <= 2, here 1. An SFTP session would count as one too.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.integration.conftest import App, make_app
from tests.sandbox import Sandbox


@pytest.fixture(scope="module")
def app(daemon_host: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    a = make_app(daemon_host, tmp_path_factory.mktemp("rt"), "daemon")
    a.ok("setup")
    a.ok("deploy")  # every test starts from a live release, alone or in any order
    yield a
    shutil.rmtree(a.deploy_to, ignore_errors=True)


def count(app: App, *args: str) -> int:
    before = app.sb.exec_requests()
    app.ok(*args)
    return app.sb.exec_requests() - before


def test_command_budgets(app: App) -> None:
    first = count(app, "setup") + count(app, "deploy")
    assert first <= 6
    assert count(app, "deploy", "--force") == 1  # nothing changed, deployed anyway
    app.set_version("rt")
    assert count(app, "deploy") == 1  # one .py changed
    live = app.current()
    assert count(app, "deploy") == 1  # nothing changed: nothing deployed
    assert app.current() == live
    assert count(app, "rollback") <= 2
    assert count(app, "reload") <= 2
    assert count(app, "status") <= 1
    assert count(app, "plan") <= 1  # issue: one or two round trips
    assert count(app, "releases") <= 1


def test_python_api(app: App) -> None:
    """The same steps from a release pipeline: `import deploy`, the project's own config, result objects."""
    import deploy
    from deploy import DeployError

    p = deploy.project(app.path, ssh_config=app.sb.ssh_config)  # fabric.json, as fab reads it
    (conn,) = p.connections([app.sb.host_alias])
    before = app.current()
    app.set_version("api")
    (planned,) = deploy.plan(conn, p.settings, p.path)  # one Result per host given
    assert planned.previous == before and "movies/views.py" in planned.details["files"]["changed"]
    (r,) = deploy.deploy(p.connections([app.sb.host_alias]), p.settings, p.path)
    assert r.release == app.current() and r.previous == before and r.revision and r.seconds > 0
    assert r.result == "live" and r.health == "ok" and r.reload
    (back,) = deploy.rollback(p.connections([app.sb.host_alias])[0], p.settings, to=before)
    assert back.release == before == app.current() and back.previous == r.release
    try:
        deploy.rollback(p.connections([app.sb.host_alias])[0], p.settings, to="../../etc")
    except DeployError as exc:
        assert exc.exit_code == 6
    else:
        raise AssertionError("rollback --to a path was accepted")
