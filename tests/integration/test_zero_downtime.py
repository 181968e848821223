"""Rolling reload (daemon.slots 1), health check with automatic rollback, warm-up: real sshd + Apache/mod_wsgi.

The blue/green slots (the default) have their own tests in test_slots.py.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator

import pytest

from tests.integration.conftest import App, make_app
from tests.sandbox import Sandbox


@pytest.fixture(scope="module")
def app(daemon_host: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    a = make_app(daemon_host, tmp_path_factory.mktemp("zd"), "daemon")
    a.write_config(
        mode="daemon", health={"path": "/movie", "contains": "Godfather", "timeout": 15}, warmup=["/version"],
        daemon={"user": daemon_host.user.name, "group": daemon_host.user.name, "processes": 2, "threads": 15, "slots": 1},
    )
    a.commit("health")
    a.ok("setup")
    a.ok("deploy")
    yield a
    shutil.rmtree(a.deploy_to, ignore_errors=True)


def daemon_pids(app: App) -> set[int]:
    pids = set()
    for f in (app.deploy_to / "shared" / "run").glob("ready.*"):
        pid = int(f.name.split(".")[1])
        if os.path.exists(f"/proc/{pid}"):
            pids.add(pid)
    return pids


def loaded_pids(app: App, n: int, timeout: float = 30) -> set[int]:
    """The daemon processes once `n` have loaded the app (WSGIImportScript: each loads after its start, the
    second can still be loading when the first answers; seen in CI on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while len(pids := daemon_pids(app)) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    return pids


def test_rolling_reload_restarts_every_process_one_by_one(app: App) -> None:
    app.wait_version(app.version())
    before = loaded_pids(app, 2)
    assert len(before) == 2
    p = app.ok("reload")
    assert "reload rolling 2 processes" in p.stderr
    after = daemon_pids(app)
    assert len(after) == 2 and not (after & before)
    app.wait_version(app.version())


def test_deploy_uses_rolling_and_warms_up(app: App) -> None:
    app.set_version("2")
    mark = app.sb.access_log.stat().st_size
    p = app.ok("deploy")
    assert "reload rolling" in p.stderr and "health" in p.stderr
    log = app.sb.access_log.read_text()[mark:]
    # The warm-up and the health check went through the vhost before the deploy returned.
    assert "GET /version" in log and "GET /movie" in log
    assert app.wait_version("2")["release"] == app.current()


def test_failed_health_check_rolls_back(app: App) -> None:
    live, version = app.current(), app.version()
    views = app.path / "movies" / "views.py"
    good = views.read_text()
    views.write_text(good.replace('movies = [{"title"', 'raise RuntimeError("broken")\n    movies = [{"title"'))
    app.commit("broken")
    t = time.monotonic()
    p = app.fab("deploy")
    assert p.returncode == 7, p.stderr
    assert "health check failed" in p.stderr and f"{live} is live again" in p.stderr
    assert time.monotonic() - t < 60
    assert app.current() == live
    assert not (app.deploy_to / ".lock").exists()
    app.wait_version(version)
    states = {d.name: (d / ".release" / "state").read_text().strip() for d in (app.deploy_to / "releases").iterdir()}
    assert "failed" in states.values()
    # --no-rollback keeps the broken release live for debugging.
    p = app.fab("deploy", "--no-rollback")
    assert p.returncode == 7 and "stays live" in p.stderr
    assert app.current() != live
    status, _, _ = app.get("/movie")
    assert status == 500
    views.write_text(good)
    app.commit("fixed")
    app.ok("deploy")
    app.wait_version(version)


def test_reload_strategy_option(app: App) -> None:
    p = app.ok("reload", "--strategy=graceful")
    assert "reload graceful" in p.stderr
    p = app.fab("reload", "--strategy=touch")
    assert p.returncode == 2 and "WSGIScriptReloading Off" in p.stderr
    out = json.dumps(app.get("/movie")[0])
    assert out == "200"
