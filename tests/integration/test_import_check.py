"""A release that cannot be imported never reaches a daemon process: prepare imports the app in the new
release's venv first (issue "Blue/green daemon slots": 1334-1448 failed requests before)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import App, make_app
from tests.sandbox import Sandbox


def live_app(sb: Sandbox, tmp_path: Path, mode: str, name: str) -> Iterator[App]:
    """An app of `mode` set up and deployed on `sb`, with a health check; removed afterwards."""
    a = make_app(sb, tmp_path, mode, name=name)
    a.write_config(mode=mode, health={"path": "/movie", "contains": "Godfather", "timeout": 20})
    a.commit("config")
    a.ok("setup")
    a.ok("deploy")
    yield a
    shutil.rmtree(a.deploy_to, ignore_errors=True)
    (sb.sites_dir / f"{name}.conf").unlink(missing_ok=True)


@pytest.fixture
def app(daemon_host: Sandbox, tmp_path: Path) -> Iterator[App]:
    yield from live_app(daemon_host, tmp_path, "daemon", "impchk")


class Load:
    """GET /movie in a loop while a deploy runs: bounded in count (3000) and time (120 s)."""

    def __init__(self, a: App) -> None:
        self.a, self.stop, self.failed, self.ok = a, threading.Event(), 0, 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        deadline = time.monotonic() + 120
        while not self.stop.is_set() and self.ok + self.failed < 3000 and time.monotonic() < deadline:
            try:
                status, _, _ = self.a.get("/movie")
            except OSError:
                status = 0
            if status == 200:
                self.ok += 1
            else:
                self.failed += 1

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def deploy_broken(app: App, file: str, change: Callable[[str], str]) -> tuple[subprocess.CompletedProcess[str], Load]:
    """Deploy under load with `file` changed by `change` (the good file put back after, and committed)."""
    path = app.path / file
    good = path.read_text()
    path.write_text(change(good))
    app.commit("broken")
    try:
        with Load(app) as load:
            p = app.fab("deploy")
    finally:
        path.write_text(good)
        app.commit("fixed")
    return p, load


def test_a_release_that_cannot_be_imported_is_refused_before_the_switch(app: App) -> None:
    live = app.current()
    p, load = deploy_broken(app, "movies/models.py", lambda good: "import nosuchmodule_fabdeploy  # noqa: F401\n" + good)
    assert p.returncode == 5, p.stderr
    assert "import check failed" in p.stderr and "No module named 'nosuchmodule_fabdeploy'" in p.stderr, p.stderr
    assert app.current() == live
    assert load.ok > 0 and load.failed == 0, (load.ok, load.failed)
    after = [app.get("/movie")[0] for _ in range(40)]
    assert after == [200] * 40


def test_a_factory_named_without_parentheses_is_caught(app: App) -> None:
    (app.path / "hello.py").write_text(
        "def create_app():\n    def app(environ, start_response):\n        start_response('200 OK', [])\n"
        "        return [b'hi']\n    return app\n"
    )
    app.write_config(wsgi="hello:create_app", django_settings=None)
    app.commit("factory")
    p = app.fab("deploy")
    assert p.returncode == 5, p.stderr
    assert "write wsgi: hello:create_app()" in p.stderr, p.stderr


@pytest.fixture
def embedded_app(embedded_host: Sandbox, tmp_path: Path) -> Iterator[App]:
    yield from live_app(embedded_host, tmp_path, "embedded", "embchk")


def test_embedded_mode_calls_the_new_release_once_before_graceful(embedded_app: App) -> None:
    """Embedded mode has no idle slot: the import check also GETs the health path from the imported app, so a
    release whose page raises is refused before Apache's graceful ever loads it."""
    app = embedded_app
    live = app.current()
    head = '    movies = [{"title"'
    p, load = deploy_broken(
        app, "movies/views.py", lambda good: good.replace(head, '    raise RuntimeError("embedded-broken")\n' + head, 1)
    )
    assert p.returncode == 5, p.stderr
    assert "import check failed" in p.stderr and "GET /movie" in p.stderr, p.stderr
    assert app.current() == live
    assert load.ok > 0 and load.failed == 0, (load.ok, load.failed)


def touch_deployed(sb: Sandbox, tmp_path: Path, name: str, **config: object) -> Iterator[App]:
    a = make_app(sb, tmp_path, "daemon", name=name)
    a.write_config(mode="daemon", reload="touch", health={"enabled": False}, **config)
    a.commit("config")
    a.ok("setup")
    a.ok("deploy")
    assert [a.get("/movie")[0] for _ in range(3)] == [200] * 3  # the live processes list their imports
    yield a
    subprocess.run(["pkill", "-u", sb.user.name, "-f", "--", f"- --warm .*/{name}/shared/"], check=False)
    shutil.rmtree(a.deploy_to, ignore_errors=True)
    (sb.sites_dir / f"{name}.conf").unlink(missing_ok=True)


@pytest.fixture
def touch_app(daemon_host: Sandbox, tmp_path: Path) -> Iterator[App]:
    """Touch mode with the check started ahead only (none kept warm)."""
    yield from touch_deployed(daemon_host, tmp_path, "impahead", import_warm=False)


@pytest.fixture
def warm_app(daemon_host: Sandbox, tmp_path: Path) -> Iterator[App]:
    """Touch mode, defaults: a check is kept warm after each switch."""
    yield from touch_deployed(daemon_host, tmp_path, "impwarm")


def import_note(p: subprocess.CompletedProcess[str]) -> str:
    (host,) = json.loads(p.stdout)["hosts"]
    return str(next(s["note"] for s in host["steps"] if s["step"] == "import"))


def ahead_processes(app: App) -> list[str]:
    out = subprocess.run(["pgrep", "-a", "-u", app.sb.user.name, "-f", "--", "- --ahead "], capture_output=True, text=True)
    assert out.returncode in (0, 1), out.stderr  # 1: none; 2 was a pattern read as options, and no process ever seen
    return out.stdout.splitlines()


def refuses_a_release_that_cannot_be_imported(app: App) -> None:
    """A release whose models import a missing module, deployed under load: refused with the app's own words."""
    live = app.current()
    p, load = deploy_broken(app, "movies/models.py", lambda good: "import nosuchmodule_fabdeploy  # noqa: F401\n" + good)
    assert p.returncode == 5, p.stderr
    assert "import check failed" in p.stderr and "No module named 'nosuchmodule_fabdeploy'" in p.stderr, p.stderr
    assert "  | " in p.stderr and "movies/models.py" in p.stderr, p.stderr
    assert app.current() == live and load.failed == 0, (load.ok, load.failed)


def warm_processes(app: App) -> list[int]:
    pattern = f"- --warm .*/{app.name}/shared/"
    out = subprocess.run(["pgrep", "-u", app.sb.user.name, "-f", "--", pattern], capture_output=True, text=True)
    assert out.returncode in (0, 1), out.stderr
    return [int(p) for p in out.stdout.split()]


def warm_ready(app: App, timeout: float = 30) -> int:
    """The pid of the check kept warm, once it has imported."""
    ready = app.deploy_to / "shared" / "run" / "warm" / "ready"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = int(ready.read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
            continue
        assert warm_processes(app) == [pid]
        return pid
    raise AssertionError(f"no check kept warm within {timeout}s: {warm_processes(app)}")


WARM_NOTE = r"[1-9]\d\d+ modules imported warm \(since \d\d:\d\d:\d\dZ\)"


def test_the_import_check_kept_warm_checks_the_next_release_and_still_refuses_a_broken_one(warm_app: App) -> None:
    """Issue "Speed": the check started at the begin spent ~0.2 s of a touch redeploy importing the venv's
    modules again. One kept warm since the last switch forks from a process that has them: the next check
    starts with them imported, a broken release is still refused with the app's own words, and it is the
    only process left behind (replaced by each switch)."""
    app = warm_app
    first = warm_ready(app)
    (app.path / "movies" / "views.py").write_text((app.path / "movies" / "views.py").read_text() + "\n# one\n")
    app.commit("one .py")
    note = import_note(app.ok("deploy", "--json"))
    assert re.fullmatch(WARM_NOTE, note), note
    second = warm_ready(app)
    assert second != first and ahead_processes(app) == []
    # `fab status` shows it, with its memory: it is a process the deploy left on the host.
    st = json.loads(app.ok("status", "--json").stdout)["hosts"][0]["status"]
    assert st["warm"]["pid"] == second and st["warm"]["rss_kib"] > 10_000 and st["slots"] == [], st["warm"]
    assert f"warm check {second} (" in app.ok("status").stdout
    refuses_a_release_that_cannot_be_imported(app)
    assert warm_ready(app) == second  # nothing was switched: the same one waits for the next deploy
    assert re.fullmatch(WARM_NOTE, import_note(app.ok("deploy", "--json")))


def test_a_check_kept_warm_that_died_or_was_turned_off_is_not_waited_for(warm_app: App) -> None:
    """A warm check killed meanwhile: the deploy imports ahead as before (no wait, no error); import_warm:
    false leaves none behind after the switch."""
    app = warm_app
    os.kill(warm_ready(app), signal.SIGKILL)
    (app.path / "movies" / "views.py").write_text((app.path / "movies" / "views.py").read_text() + "\n# two\n")
    app.commit("two")
    out = app.ok("deploy", "--json")
    note = import_note(out)
    assert "modules imported ahead" in note, out.stdout + out.stderr
    warm_ready(app)
    app.write_config(mode="daemon", reload="touch", health={"enabled": False}, import_warm=False)
    app.commit("no warm")
    app.ok("deploy")
    assert warm_processes(app) == [] and not (app.deploy_to / "shared" / "run" / "warm").exists()


def test_the_import_check_starts_at_the_begin_and_still_refuses_a_release_that_cannot_be_imported(touch_app: App) -> None:
    """Without slots the import check is a child Python (~0.25 s of Django here): it starts when the deploy's
    command does, in the live venv, importing what the live processes imported while the release is sent;
    it leaves no process behind, takes no release with another environment, and refuses a broken one."""
    app = touch_app
    (app.path / "movies" / "views.py").write_text((app.path / "movies" / "views.py").read_text() + "\n# one\n")
    app.commit("one .py")
    note = import_note(app.ok("deploy", "--json"))
    assert re.fullmatch(r"[1-9]\d\d+ modules imported ahead \(\d\.\d\ds before the release\)", note), note
    assert ahead_processes(app) == []
    refuses_a_release_that_cannot_be_imported(app)
    assert ahead_processes(app) == []
    app.write_config(
        mode="daemon", reload="touch", health={"enabled": False}, import_warm=False, environment={"FD_AHEAD": "other"}
    )
    app.commit("another environment")
    assert import_note(app.ok("deploy", "--json")) == ""


def test_a_deploy_of_what_is_live_does_not_wait_for_the_import_started_ahead(touch_app: App) -> None:
    """The check started ahead dies with the command, but while it finishes the module it is importing it
    held the channel's stderr, and sshd ended the command only then: ~0.2 s of every deploy of what is
    live (the deploy itself took 0.01 s). A module of the live venv that takes 8 s to import makes it plain."""
    app = touch_app
    venv = (app.deploy_to / "current" / ".venv").resolve()
    (site,) = venv.glob("lib/python3*/site-packages")
    done = app.deploy_to / "fd_slow_import.done"  # where the deploy user may write
    done.unlink(missing_ok=True)
    (site / "fd_slow_import.py").write_text(f"import time\ntime.sleep(8)\nopen({str(done)!r}, 'w').close()\n")
    run = app.deploy_to / "shared" / "run"
    # Each live process writes the list when it has loaded the app: both must have, or one overwrites ours.
    deadline = time.monotonic() + 20
    while len(list(run.glob("ready.*"))) < 2 and time.monotonic() < deadline:
        app.get("/movie")
        time.sleep(0.1)
    imports = run / f"imports.{venv.name}"
    imports.write_text("fd_slow_import\n" + imports.read_text())
    try:
        p = app.ok("deploy", "--json")
        assert [h["result"] for h in json.loads(p.stdout)["hosts"]] == ["unchanged"]
        assert not done.exists(), "fab deploy waited for the import started ahead to end"
    finally:
        subprocess.run(["pkill", "-u", app.sb.user.name, "-f", "--", "- --ahead "], check=False)
        (site / "fd_slow_import.py").unlink()
        imports.write_text(imports.read_text().replace("fd_slow_import\n", "", 1))
        done.unlink(missing_ok=True)
