"""How many SSH commands each operation costs, counted from sshd's own log (LogLevel DEBUG1).

Budgets (issue: speed): first deploy <= 6 (setup included); a redeploy is ONE command (begin, prepare
and switch in one channel: remote.Session), forced with nothing changed, with one .py changed, or with
nothing changed at all (then it says 'unchanged' and makes no release); rollback <= 2, reload <= 2; plan
(issue: for people and pipelines) <= 2, here 1. An SFTP session would count as one too.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from typing import Any

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


def test_unchanged_says_so(app: App) -> None:
    """A deploy of exactly what is live: exit 0, 'unchanged' with the live release, no release made."""
    app.ok("deploy", "--force")
    live, before = app.current(), sorted(p.name for p in (app.deploy_to / "releases").iterdir())
    p = app.ok("deploy")
    assert "unchanged" in p.stdout + p.stderr and str(live) in p.stdout + p.stderr
    assert app.current() == live and sorted(p.name for p in (app.deploy_to / "releases").iterdir()) == before
    assert not (app.deploy_to / ".lock").exists()
    app.write_config(keep_releases=4)  # a setting is part of what a release is made of
    app.commit("keep 4")
    app.ok("deploy")
    assert app.current() != live


def test_fab_gone_between_prepare_and_switch(app: App) -> None:
    """The deploy's one command waits for its switch; fab going away there (a dropped connection, kill -9)
    leaves the host as it was: the prepared release marked failed, the lock freed by the host itself."""
    import deploy
    from deploy import host, lock, release, releases, secrets
    from deploy.connect import open_connection
    from deploy.output import Reporter

    p = deploy.project(app.path, ssh_config=app.sb.ssh_config)
    (c,) = p.connections([app.sb.host_alias])
    open_connection(c)
    s = secrets.resolve(p.settings)
    live = app.current()
    info = lock.info("deploy")
    facts = host.begin(c, s, info)
    assert facts.session is not None and (app.deploy_to / ".lock").is_dir()
    app.set_version("gone")
    src = release.load_source(s, p.path)
    rid = releases.new_id(src.short_revision)
    release.prepare(c, s, src, rid, facts, info, Reporter(quiet=True), p.path, stage=False)
    state = app.deploy_to / "releases" / rid / ".release" / "state"
    assert state.read_text().strip() == "prepared" and (app.deploy_to / ".lock").is_dir()
    c.close()
    deadline = time.monotonic() + 15
    while (app.deploy_to / ".lock").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (app.deploy_to / ".lock").exists()
    assert state.read_text().strip() == "failed" and app.current() == live
    app.ok("deploy")
    assert app.current() not in (live, rid)


def test_the_hosts_login_notice_is_acked_at_once(daemon_host: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """sshd holds its answer to the first channel open until its post-login notice is ACKed (Nagle is on
    until the first exec); a client that delays that ACK waits 40 ms more (measured: 42-49 ms for the
    first open on loopback, 3-4 ms with the notice ACKed at once: deploy.connect._ack_notices_at_once)."""
    from fabric import Config

    from deploy import connect

    acks: list[int] = []

    class Spy(socket.socket):
        def setsockopt(self, level: int, opt: int, value: Any, *rest: Any) -> None:
            if level == socket.IPPROTO_TCP and opt == socket.TCP_QUICKACK:
                acks.append(value)
            super().setsockopt(level, opt, value, *rest)

    plain = socket.create_connection

    def spied(address: tuple[str, int], timeout: float | None = None) -> socket.socket:
        raw = plain(address, timeout=timeout)
        return Spy(fileno=raw.detach())

    monkeypatch.setattr(socket, "create_connection", spied)  # the module deploy.connect calls
    config = Config(runtime_ssh_path=str(daemon_host.ssh_config))
    config.load_ssh_config()
    c = connect.connection(daemon_host.host_alias, config)
    try:
        connect.open_connection(c)
        assert c.run("true", hide=True, in_stream=False).ok
        deadline = time.monotonic() + 5
        while not acks and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        c.close()
    assert acks, "the host's hostkeys notice came and was not ACKed at once"



def test_a_deploy_to_one_host_sends_its_release_with_the_begin(app: App) -> None:
    """With what the last deploy from this machine left on the host (deploy/guesses.py), the prepare goes out
    with the begin instead of a round trip after its facts; the host runs it only while the guess holds
    (deploy/remote/ahead.sh) and otherwise drops it for the one made from the facts."""

    def deploy(version: str) -> str:
        app.set_version(version)
        p = app.ok("deploy")
        assert app.wait_version(version)
        return p.stdout + p.stderr

    app.ok("deploy", "--force")  # whatever came before, the guess is now this deploy's release
    out = deploy("ahead-1")
    assert "sent ahead" in out and "ahead used" in out, out

    # The host changed behind this machine's back (a rollback): the guess is stale, the host drops it.
    live = app.current()
    app.ok("rollback")
    out = deploy("ahead-2")
    assert "ahead dropped" in out and "sent ahead" not in out, out
    assert app.current() not in (live, None)

    # A release newer than the one sent ahead (another machine's, failed): the id fab guessed is not one the
    # facts give, so the host drops it and the release gets an id after that one.
    newer = "20991231T235958Z-zzz"
    (app.deploy_to / "releases" / newer / ".release").mkdir(parents=True)
    (app.deploy_to / "releases" / newer / ".release" / "state").write_text("failed\n")
    out = deploy("ahead-3")
    assert "ahead dropped" in out and str(app.current()) > newer, out

    # No guess (another machine, a cache cleared, one this version cannot read): the deploy waits for the facts.
    for f in (app.home / ".cache" / "fabdeploy" / "hosts").iterdir():
        f.write_text("{not json")
    out = deploy("ahead-4")
    assert "ahead" not in out, out
