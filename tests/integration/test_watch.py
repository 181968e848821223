"""The dev loop on real sshd + Apache/mod_wsgi: a dev stage renders the code-change monitor, `fab watch`
ships a saved (uncommitted) change that the very next request serves, and production refuses both."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import jsonschema
import pytest

from deploy.output import schema
from tests.integration.conftest import ROOT, App, make_app
from tests.sandbox import Sandbox, fab_argv, set_version

STAGES = {"dev": {"dev": True}, "production": {}}


@pytest.fixture(scope="module")
def app(daemon_host: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    a = make_app(daemon_host, tmp_path_factory.mktemp("watch"), "daemon")
    a.write_config(stages=STAGES)
    a.commit("stages")
    a.ok("setup", "--stage", "dev")
    a.ok("deploy", "--stage", "dev")
    a.set_version("2")
    a.ok("deploy", "--stage", "dev")  # the live release's unchanged files are hard links into the first
    a.wait_version("2")
    yield a
    shutil.rmtree(a.deploy_to, ignore_errors=True)


def test_dev_stage_renders_the_monitor(app: App) -> None:
    script = (app.deploy_to / "current" / ".release" / "app.wsgi").read_text()
    assert "_monitor()" in script and "signal.SIGINT" in script
    vhost = (app.sb.sites_dir / "imdb.conf").read_text()
    assert "WSGIScriptReloading Off" not in vhost  # dev stages reload by touch unless told otherwise


def test_production_refuses_dev_and_watch(app: App) -> None:
    p = app.fab("watch", "--stage", "production", "--seconds", "1")
    assert p.returncode == 2 and "refusing to watch stage 'production'" in p.stderr
    app.write_config(stages={"production": {"dev": True}})
    try:
        p = app.fab("plan", "--stage", "production")
        assert p.returncode == 2 and "setting dev: true is refused in stage 'production'" in p.stderr
    finally:
        app.write_config(stages=STAGES)


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            q.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return q


def _wait_for(q: queue.Queue[str], text: str, timeout: float, seen: list[str]) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = q.get(timeout=max(0.05, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if text in line:
            return line
    raise AssertionError(f"no {text!r} from fab watch within {timeout}s:\n{''.join(seen)}")


def test_watch_ships_a_saved_change_served_by_the_next_request(app: App) -> None:
    live = app.current()
    first = sorted(p.name for p in (app.deploy_to / "releases").iterdir())[0]
    env = dict(os.environ, HOME=str(app.home), PYTHONPATH=str(ROOT))
    argv = fab_argv(app.sb, "watch", "--stage", "dev", "--interval", "0.2", "--seconds", "120", "--json")
    proc = subprocess.Popen(argv, cwd=app.path, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    seen: list[str] = []
    try:
        q = _lines(proc)
        _wait_for(q, "watching", 60, seen)
        for n in (1, 2):
            set_version(app.path, f"saved-{n}")
            _wait_for(q, "shipped movies/views.py", 30, seen)
            status, headers, body = app.get("/movie")  # the very next request
            assert status == 200 and json.loads(body)["version"] == f"saved-{n}", body
        # A deploy holding the lock: the batch waits for the next save instead of ending the loop.
        (app.deploy_to / ".lock").mkdir()
        (app.deploy_to / ".lock" / "info").write_text("owner=bob host=ci pid=1 time=1 cmd=deploy\n")
        set_version(app.path, "saved-3")
        assert "deploy lock held by bob@ci" in _wait_for(q, "not shipped", 30, seen)
        shutil.rmtree(app.deploy_to / ".lock")
        urls = app.path / "imdb" / "urls.py"
        urls.write_text(urls.read_text() + "# saved\n")
        line = _wait_for(q, "shipped ", 30, seen)
        assert "movies/views.py" in line and "imdb/urls.py" in line  # the refused file went with the next save
        assert json.loads(app.get("/movie")[2])["version"] == "saved-3"
        assert "modified   by fab watch" in app.ok("status", "--stage", "dev").stdout
        assert app.current() == live  # into the live release, no new one
        old = (app.deploy_to / "releases" / first / "movies" / "views.py").read_text()
        assert 'VERSION = "1"' in old  # the earlier release, hard-linked, is untouched
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, "".join(seen)
        doc = json.loads(out)
        jsonschema.validate(doc, schema())
        batches = doc["hosts"][0]["batches"]
        assert doc["task"] == "watch" and doc["stage"] == "dev" and len(batches) == 3
        assert batches[-1]["shipped"] == ["imdb/urls.py", "movies/views.py"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (app.deploy_to / ".lock").exists()
    # The next deploy compares with what watch shipped: the saved file is not sent again.
    subprocess.run(["git", "checkout", "--", "movies/views.py", "imdb/urls.py"], cwd=app.path, check=True)
    p = app.ok("plan", "--stage", "dev")
    assert "~ movies/views.py" in p.stdout  # back to the committed version: a change again
    # What watch shipped is not the release its fingerprint names: a deploy of that very commit is not
    # "unchanged", nor does it take the prepare it sent ahead from what the last deploy left (the guess).
    p = app.ok("deploy", "--stage", "dev")
    assert "unchanged" not in p.stderr and "ahead used" not in p.stderr, p.stderr
    app.wait_version("2")
