"""Day-2 operations against real sshd + Apache/mod_wsgi: secrets from the deploying machine, check, logs, exec,
maintenance (issue 17). One app for the module, deployed once; each test leaves it as it found it."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.conftest import App, make_app
from tests.sandbox import Sandbox

SECRET = "day2-s3cr3t-Value"
VIEWS = '''

def env(request):
    import os

    return JsonResponse({"value": os.environ.get(request.GET["name"])})


def boom(request):
    raise RuntimeError("boom-from-the-view-fabdeploy")
'''


def configure(a: App, **over: object) -> None:
    cfg: dict[str, object] = {
        "environment": {"DAY2_SECRET": {"env": "FD_DAY2_SECRET"}, "PLAIN": "plain-value"},
        "health": {"path": "/movie", "contains": "Godfather", "timeout": 20},
    }
    cfg.update(over)
    a.write_config(**cfg)
    a.commit("config")


@pytest.fixture(scope="module")
def app(daemon_host: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    mp = pytest.MonkeyPatch()
    mp.setenv("FD_DAY2_SECRET", SECRET)
    a = make_app(daemon_host, tmp_path_factory.mktemp("day2"), "daemon", name="day2")
    with open(a.path / "movies" / "views.py", "a") as f:
        f.write(VIEWS)
    urls = a.path / "imdb" / "urls.py"
    urls.write_text(urls.read_text().replace("]\n", '    path("env", views.env),\n    path("boom", views.boom),\n]\n'))
    configure(a)
    a.ok("setup")
    a.ok("deploy")
    yield a
    mp.undo()
    shutil.rmtree(a.deploy_to, ignore_errors=True)
    (daemon_host.sites_dir / "day2.conf").unlink(missing_ok=True)
    subprocess.run([str(daemon_host.apachectl), "graceful"], capture_output=True)


def env_of(a: App, name: str) -> object:
    status, _, body = a.get(f"/env?name={name}")
    assert status == 200, body
    return json.loads(body)["value"]


# ---- secrets


def test_the_app_reads_a_secret_from_the_deploying_machine(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_of(app, "DAY2_SECRET") == SECRET and env_of(app, "PLAIN") == "plain-value"
    # A changed secret: the plan says so without the value; the deploy ships it; nothing prints it.
    monkeypatch.setenv("FD_DAY2_SECRET", SECRET + "-2")
    plan = app.ok("plan")
    assert "environment values changed (not shown)" in plan.stdout
    deployed = app.ok("deploy")
    for out in (plan.stdout, plan.stderr, deployed.stdout, deployed.stderr, app.ok("plan", "--json").stdout):
        assert SECRET not in out
    assert env_of(app, "DAY2_SECRET") == SECRET + "-2"
    assert (app.deploy_to / "current" / ".release" / "env.sh").stat().st_mode & 0o077 == 0
    monkeypatch.setenv("FD_DAY2_SECRET", SECRET)
    app.ok("deploy")


def test_a_missing_secret_fails_before_any_host_is_contacted(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FD_DAY2_SECRET")
    live, before = app.current(), app.sb.exec_requests()
    p = app.fab("deploy")
    assert p.returncode == 2, p.stderr
    assert "environment.DAY2_SECRET: the variable FD_DAY2_SECRET is not set" in p.stderr
    configure(app, environment={"DAY2_SECRET": {"command": "echo nope >&2; exit 3"}})
    try:
        p = app.fab("deploy")
        assert p.returncode == 2 and "the command `echo nope >&2; exit 3` failed (exit 3): nope" in p.stderr, p.stderr
    finally:
        configure(app)
    assert app.sb.exec_requests() == before and app.current() == live
