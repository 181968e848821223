"""How many SSH commands each operation costs, counted from sshd's own log (LogLevel DEBUG1).

Budgets (issue: speed): first deploy <= 6 (setup included), redeploy <= 3 (nothing changed or
one .py changed), rollback <= 2, reload <= 2. An SFTP session would count as one too.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from deploy.sandbox import Sandbox
from tests.integration.conftest import App, make_app


@pytest.fixture(scope="module")
def app(daemon_host: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    a = make_app(daemon_host, tmp_path_factory.mktemp("rt"), "daemon")
    yield a
    shutil.rmtree(a.deploy_to, ignore_errors=True)


def count(app: App, *args: str) -> int:
    before = app.sb.exec_requests()
    app.ok(*args)
    return app.sb.exec_requests() - before


def test_command_budgets(app: App) -> None:
    first = count(app, "setup") + count(app, "deploy")
    assert first <= 6
    assert count(app, "deploy") <= 3  # nothing changed
    app.set_version("rt")
    assert count(app, "deploy") <= 3  # one .py changed
    assert count(app, "rollback") <= 2
    assert count(app, "reload") <= 2
    assert count(app, "status") <= 1


def test_python_api(app: App) -> None:
    """The same steps from a release pipeline: `from deploy import load, deploy, rollback`."""
    import json

    from fabric import Config

    from deploy import DeployError, deploy, load, rollback
    from deploy.connect import connection

    config = Config(runtime_ssh_path=str(app.sb.ssh_config))
    config.load_ssh_config()
    s = load(json.loads((app.path / "fabric.json").read_text())["deploy"])
    before = app.current()
    r = deploy(connection(app.sb.host_alias, config), s, app.path)
    assert r.release == app.current() and r.previous == before and r.revision and r.seconds > 0
    back = rollback(connection(app.sb.host_alias, config), s, to=before)
    assert back.release == before == app.current() and back.previous == r.release
    try:
        rollback(connection(app.sb.host_alias, config), s, to="../../etc")
    except DeployError as exc:
        assert exc.exit_code == 6
    else:
        raise AssertionError("rollback --to a path was accepted")
