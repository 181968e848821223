"""Blue/green daemon slots (the default in daemon mode) against real sshd + Apache/mod_wsgi.

A deploy loads the new release in the spare slot (its processes have Python started and wait), checks it
through the preview route and only then flips live.map; a rollback is a flip back to the slot that still
has the previous release loaded.
Every failure case runs under a bounded load loop: no request may fail (issue "Blue/green daemon slots").
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import App, make_app
from tests.integration.test_import_check import Load, deploy_broken
from tests.sandbox import REPO_ROOT, Sandbox, app_config, fab_argv, imported_ahead, slot_markers, slot_roles, waiting_spare


def configure(a: App, **over: object) -> None:
    a.write_config(**{"health": {"path": "/movie", "contains": "Godfather", "timeout": 20}, "warmup": ["/version"], **over})
    a.commit("config")


@pytest.fixture(scope="module")
def app(daemon_host: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    a = make_app(daemon_host, tmp_path_factory.mktemp("slots"), "daemon", name="slotapp")
    configure(a)
    a.ok("setup")
    a.ok("deploy")
    yield a
    shutil.rmtree(a.deploy_to, ignore_errors=True)
    (daemon_host.sites_dir / "slotapp.conf").unlink(missing_ok=True)


def slot_pids(a: App, kind: str = "ready") -> dict[str, set[int]]:
    """{'a': pids, 'b': pids, 'c': pids} from the ready (or spare) markers of live processes."""
    return slot_markers(a.deploy_to, a.name, kind)


def roles(a: App) -> dict[str, str]:
    """live.map: live, idle, spare, load, preview, token."""
    return slot_roles(a.deploy_to)


def live_slot(a: App) -> str:
    return roles(a)["live"]


def spare_waits(a: App, timeout: float = 10, ahead: bool = False) -> set[int]:
    """The spare's processes, once both wait with Python started (the spare restarts after each flip);
    `ahead`: and have imported ahead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = waiting_spare(a.deploy_to, a.name, ahead=ahead)
        if pids is not None:
            return pids
        time.sleep(0.1)
    markers = {f.name: f.read_text() for f in (a.deploy_to / "shared" / "run").glob("*.*") if not f.name.startswith("imports.")}
    waiting, loaded = slot_pids(a, "spare"), slot_pids(a)
    ps = subprocess.run(["ps", "-eo", "pid,ppid,etimes,stat,wchan:24,args"], capture_output=True, text=True).stdout
    procs = "\n".join(line for line in ps.splitlines() if f"wsgi:{a.name}" in line)
    raise AssertionError(
        f"slot {roles(a)['spare']} has no 2 waiting processes: {waiting}, {loaded}, {markers}, {roles(a)}\n{procs}"
    )


def serve_from_slot_c(a: App) -> None:
    """Reload (each reload flips to the spare) until slot c serves: at most two reloads."""
    for _ in range(3):
        if live_slot(a) == "c":
            break
        spare_waits(a)
        a.ok("reload")
    assert live_slot(a) == "c"


def with_slots(a: App, count: int) -> None:
    """The app's config with daemon.slots `count` (the sandbox's own daemon user and group kept)."""
    daemon = app_config(a.sb)["daemon"]
    assert isinstance(daemon, dict)
    configure(a, daemon={**daemon, "slots": count})


def bump(a: App, version: str) -> None:
    a.set_version(version)


def broken(a: App, file: str, old: str, new: str) -> str:
    path = a.path / file
    good = path.read_text()
    path.write_text(good.replace(old, new))
    a.commit("broken")
    return good


def test_deploy_loads_the_spare_and_flips(app: App) -> None:
    was = roles(app)
    spare = spare_waits(app)
    before = slot_pids(app)
    assert len(before[was["live"]]) == 2
    version = str(int(app.version()) + 1)
    bump(app, version)
    with Load(app) as load:
        p = app.ok("deploy")
    assert "reload" in p.stderr and "slots" in p.stderr, p.stderr
    assert load.ok > 0 and load.failed == 0, (load.ok, load.failed)
    now = roles(app)
    assert (now["live"], now["idle"], now["spare"]) == (was["spare"], was["live"], was["idle"]), (was, now)
    after = slot_pids(app)
    # The spare's own processes loaded the release: no restart. The slot that served was never restarted:
    # it keeps the previous release loaded, for a rollback.
    assert after[now["live"]] == spare
    assert after[was["live"]] == before[was["live"]]
    assert app.wait_version(version)["release"] == app.current()
    # The slot with the release before that restarts and waits as the next spare.
    assert not spare_waits(app) & before[was["idle"]]


def test_rollback_is_a_flip_in_one_command(app: App) -> None:
    bump(app, str(int(app.version()) + 1))
    app.ok("deploy")
    spare_waits(app)
    before, live = slot_pids(app), live_slot(app)
    n0 = app.sb.exec_requests()
    with Load(app) as load:
        p = app.ok("rollback")
    assert app.sb.exec_requests() - n0 == 1
    assert "restart:none" in p.stderr or "restart" not in p.stderr, p.stderr
    assert load.failed == 0, (load.ok, load.failed)
    assert live_slot(app) != live and slot_pids(app) == before  # nothing restarted
    app.wait_version(str(int(app.version()) - 1))
    app.ok("deploy")  # back to the newest, for the next tests


def test_a_broken_view_is_never_flipped_to(app: App) -> None:
    live, slot, version = app.current(), live_slot(app), app.version()
    good = broken(app, "movies/views.py", 'movies = [{"title"', 'raise RuntimeError("broken")\n    movies = [{"title"')
    try:
        with Load(app) as load:
            p = app.fab("deploy")
    finally:
        (app.path / "movies" / "views.py").write_text(good)
        app.commit("fixed")
    assert p.returncode == 7, p.stderr
    assert "health check failed in slot" in p.stderr and f"nothing was switched: {live} is live" in p.stderr, p.stderr
    assert load.ok > 0 and load.failed == 0, (load.ok, load.failed)
    assert app.current() == live and live_slot(app) == slot
    assert [app.get("/movie")[0] for _ in range(40)] == [200] * 40
    assert app.wait_version(version)
    assert not (app.deploy_to / ".lock").exists()


def test_a_release_that_cannot_load_is_never_flipped_to(app: App) -> None:
    # The import check off: the release reaches the idle slot's processes, which fail to load it.
    configure(app, import_check=False)
    live, slot = app.current(), live_slot(app)
    head = "from django.db import models"
    good = broken(app, "movies/models.py", head, "import nosuchmodule_fabdeploy  # noqa\n" + head)
    try:
        with Load(app) as load:
            t = time.monotonic()
            p = app.fab("deploy")
            seconds = time.monotonic() - t
    finally:
        (app.path / "movies" / "models.py").write_text(good)
        configure(app)
    assert p.returncode == 7, p.stderr
    assert "could not be loaded in slot" in p.stderr and "nosuchmodule_fabdeploy" in p.stderr, p.stderr
    # The app's own traceback, as the host quoted it under the error line, down to the app's own frame.
    assert any(line.startswith("  | File ") and "movies/models.py" in line for line in p.stderr.splitlines()), p.stderr
    assert seconds < 30, seconds  # found at once (the failed marker), not after a timeout
    assert load.ok > 0 and load.failed == 0, (load.ok, load.failed)
    assert app.current() == live and live_slot(app) == slot
    assert [app.get("/movie")[0] for _ in range(40)] == [200] * 40
    # No process is left with the broken import: the spare restarted and waits again.
    spare_waits(app)
    # The next good deploy loads the spare.
    bump(app, str(int(app.version()) + 1))
    app.ok("deploy")
    app.wait_version(app.version())


def first_goes_on(flag: str, others_wait: float) -> str:
    """Python source: the first process to run it goes on at once, every later one sleeps `others_wait` s."""
    return (f"import os, time\ntry:\n    os.close(os.open({flag!r}, os.O_CREAT | os.O_EXCL))\n"
            f"except FileExistsError:\n    time.sleep({others_wait})\n")


def test_a_restarted_spare_that_cannot_load_is_left_waiting(app: App) -> None:
    """A spare that restarts for the deploy (another environment) loads the release as its processes
    start. The first to fail calls the deploy off while the other still imports: that one is found too and
    restarts, to wait (seen in CI: it stayed, loaded with the failed release, and the spare never waited)."""
    first = f"/tmp/fabdeploy-first-{os.getpid()}-{time.monotonic_ns()}"
    spare_waits(app)
    configure(app, import_check=False, environment={"FD_RESTART": first})
    head = "from django.db import models"
    # The first process to import fails at once; the other fails 3 s later, after the deploy gave up.
    slow = first_goes_on(first, 3) + "import nosuchmodule_fabdeploy  # noqa\n"
    good = broken(app, "movies/models.py", head, slow + head)
    try:
        p = app.fab("deploy")
    finally:
        (app.path / "movies" / "models.py").write_text(good)
        configure(app)
        Path(first).unlink(missing_ok=True)
    assert p.returncode == 7 and "restarting it" in p.stderr, p.stderr
    assert "could not be loaded in slot" in p.stderr, p.stderr
    time.sleep(3)  # the slow one has failed (or restarted) by now
    spare_waits(app)
    app.ok("deploy")


def test_a_spare_still_importing_ahead_when_the_load_is_called_off_waits_again(app: App) -> None:
    """The map lets the spare load; one process fails at once and the deploy calls the load off, while the
    other is still finishing a module it imported ahead. That one must not go on to load what its link
    names by then (the live release), nor be missed by the restart (seen in CI: a spare process left with
    the live release loaded, so that every later deploy restarted the spare)."""
    flag = f"/tmp/fabdeploy-ahead-{os.getpid()}-{time.monotonic_ns()}"
    spare = spare_waits(app, timeout=30, ahead=True)
    run = app.deploy_to / "shared" / "run"
    marker = (run / f"spare.{min(spare)}").read_text().splitlines()
    venv = Path(next(line.split(" ", 1)[1] for line in marker if line.startswith("venv ")))
    module = next(venv.glob("lib/python3*/site-packages")) / "fd_slow_ahead.py"
    imports = run / f"imports.{venv.name}"
    listed = imports.read_text()
    # Imported ahead first: by the first process at once, by the other in 4 s (its thread busy meanwhile).
    module.write_text(first_goes_on(flag, 4))
    imports.write_text("fd_slow_ahead\n" + listed)
    configure(app, import_check=False)
    head = "from django.db import models"
    good = broken(app, "movies/models.py", head, "import nosuchmodule_fabdeploy  # noqa\n" + head)
    try:
        for pid in spare:
            os.kill(pid, signal.SIGUSR1)  # the spare restarts and imports the list again
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = slot_pids(app, "spare")[roles(app)["spare"]]
            if len(now) == 2 and not now & spare and sum(bool(imported_ahead(app.deploy_to, p)) for p in now) == 1:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"the restarted spare did not import ahead: {now}")
        p = app.fab("deploy")
    finally:
        (app.path / "movies" / "models.py").write_text(good)
        module.unlink()
        imports.write_text(listed)
        configure(app)
        Path(flag).unlink(missing_ok=True)  # no process can import the module again
    assert p.returncode == 7 and "could not be loaded in slot" in p.stderr, p.stderr
    time.sleep(4)  # the slow import has ended by now
    spare_waits(app)
    app.ok("deploy")


def test_a_failed_warm_up_is_never_flipped_to(app: App) -> None:
    live = app.current()
    head = "def version(request: HttpRequest) -> JsonResponse:\n"
    good = broken(app, "movies/views.py", head, head + "    raise RuntimeError('cold')\n")
    try:
        with Load(app) as load:
            p = app.fab("deploy")
    finally:
        (app.path / "movies" / "views.py").write_text(good)
        app.commit("fixed")
    assert p.returncode == 7 and "warm-up GET /version answered 500" in p.stderr, p.stderr
    assert load.failed == 0 and app.current() == live


def test_no_rollback_flips_to_a_failing_release_and_marks_it(app: App) -> None:
    """--no-rollback: the release that fails its check in the idle slot goes live anyway (as asked), is
    marked unhealthy (never a rollback target, never 'unchanged'), and the next good deploy replaces it."""
    live, slot = app.current(), live_slot(app)
    good = broken(app, "movies/views.py", 'movies = [{"title"', 'raise RuntimeError("broken")\n    movies = [{"title"')
    try:
        p = app.fab("deploy", "--no-rollback")
        failing = app.current()
        again = app.fab("deploy")  # the same failing release: deployed over, not 'unchanged'
    finally:
        (app.path / "movies" / "views.py").write_text(good)
        app.commit("fixed")
    assert p.returncode == 7, p.stderr
    assert "--no-rollback" in p.stderr and "is live" in p.stderr, p.stderr
    assert failing != live and live_slot(app) != slot
    assert "unchanged" not in again.stdout + again.stderr and again.returncode == 7, again.stderr
    rel = app.deploy_to / "releases" / str(failing) / ".release" / "state"
    assert rel.read_text().strip() == "unhealthy"
    assert app.get("/movie")[0] == 500
    app.ok("deploy")
    assert app.get("/movie")[0] == 200 and app.current() not in (live, failing)
    app.ok("rollback")
    assert app.current() == live  # over the unhealthy ones
    app.ok("deploy")


@pytest.mark.parametrize("how", ["sigint", "sigkill"])
def test_interrupted_between_loading_and_the_flip(app: App, how: str) -> None:
    live, slot, version = app.current(), live_slot(app), app.version()
    # The new release answers its health path slowly: the interruption lands while it is being checked.
    good = broken(app, "movies/views.py", 'movies = [{"title"', 'import time; time.sleep(3)\n    movies = [{"title"')
    try:
        proc = subprocess.Popen(
            fab_argv(app.sb, "deploy"), cwd=app.path, env={**os.environ, "HOME": str(app.home), "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        seen = []
        for line in proc.stdout:  # the idle slot has loaded the release: its check (3 s a request) comes next
            seen.append(line)
            if "restart:" in line or time.monotonic() > deadline:
                break
        time.sleep(1.0)
        assert proc.poll() is None, f"the deploy ended before it could be interrupted:\n{''.join(seen)}{proc.stdout.read()}"
        proc.send_signal(signal.SIGINT if how == "sigint" else signal.SIGKILL)
        proc.wait(60)
    finally:
        (app.path / "movies" / "views.py").write_text(good)
        app.commit("fixed")
    assert app.current() == live and live_slot(app) == slot  # nothing was flipped
    assert app.wait_version(version)
    if how == "sigkill":
        time.sleep(5)  # the orphaned check ends on the host; its lock is then stale
        app.ok("unlock")
    assert not (app.deploy_to / ".lock").exists()
    bump(app, str(int(version) + 1))
    app.ok("deploy")
    app.wait_version(app.version())


def test_reload_loads_the_live_release_in_the_spare(app: App) -> None:
    was, release = roles(app), app.current()
    spare = spare_waits(app)
    with Load(app) as load:
        p = app.ok("reload")
    assert "slots" in p.stderr and load.failed == 0, (p.stderr, load.failed)
    assert live_slot(app) == was["spare"] and app.current() == release
    assert slot_pids(app)[was["spare"]] == spare


def test_status_names_every_slot(app: App) -> None:
    spare_waits(app)
    doc = json.loads(app.ok("status", "--json").stdout)
    slots = doc["hosts"][0]["status"]["slots"]
    assert [s["slot"] for s in slots] == ["a", "b", "c"]
    assert sorted(s["role"] for s in slots) == ["idle", "live", "spare"]
    live = [s for s in slots if s["live"]]
    assert len(live) == 1 and live[0]["release"] == app.current() and len(live[0]["pids"]) == 2
    assert all(s["rss_kib"] > 0 and len(s["pids"]) == 2 for s in slots)
    text = app.ok("status").stdout + app.ok("status").stderr
    assert "slot a" in text and "slot c" in text and "spare" in text


def test_plan_names_the_slots(app: App) -> None:
    r = roles(app)
    p = app.ok("plan")
    want = (f"reload     slots: load slot {r['spare']} (the spare: no restart), check it on the preview route,"
            f" flip from slot {r['live']}")
    assert want in p.stdout + p.stderr


def test_a_changed_venv_restarts_the_spare(app: App) -> None:
    """The spare waits with the live release's venv started; a release with other requirements needs a
    fresh Python: the spare restarts (and still serves nobody) instead of loading in place."""
    was = roles(app)
    spare = spare_waits(app)
    # sqlparse is Django's own dependency: another venv, nothing new to fetch.
    p, load = deploy_broken(app, "requirements.txt", lambda good: good + "sqlparse>=0.4\n")
    assert p.returncode == 0 and "waits in another venv" in p.stderr, p.stderr
    assert load.failed == 0, (load.ok, load.failed)
    assert live_slot(app) == was["spare"] and not slot_pids(app)[was["spare"]] & spare
    app.ok("deploy")


def test_two_slots_restart_the_idle_one(app: App) -> None:
    """daemon.slots 2: no spare; a deploy restarts the idle slot (the slot that served keeps its release)."""
    serve_from_slot_c(app)  # slot c serving: the vhost without it must not be installed before c is left
    with_slots(app, 2)
    try:
        p = app.ok("deploy")  # the vhost changed: a graceful
        assert "slot c serves, and goes" in p.stderr, p.stderr
        assert live_slot(app) in "ab" and app.get("/movie")[0] == 200
        assert "spare" not in roles(app) or roles(app)["spare"] == "-"
        live = live_slot(app)
        before = slot_pids(app)
        bump(app, str(int(app.version()) + 1))
        with Load(app) as load:
            p = app.ok("deploy")
        assert "restart:" in p.stderr and load.failed == 0, (p.stderr, load.failed)
        now = roles(app)
        assert now["idle"] == live and slot_pids(app)[live] == before[live]
        assert app.ok("rollback") and live_slot(app) == live
    finally:
        configure(app)
    app.ok("deploy")
    spare_waits(app)


def test_one_slot_then_two_while_the_map_names_slot_c(app: App) -> None:
    """3 slots (slot c live) -> 1 -> 2: the map still names c, but no slot runs after daemon.slots 1; the
    deploy to two slots starts them with its graceful instead of trying to move off c (seen in a benchmark:
    'no process of slot a runs')."""
    serve_from_slot_c(app)
    try:
        with_slots(app, 1)
        app.ok("deploy")
        with_slots(app, 2)
        app.ok("deploy")
        assert live_slot(app) in "ab" and app.get("/movie")[0] == 200
    finally:
        configure(app)
    app.ok("deploy")
    spare_waits(app)


def test_the_spare_imports_ahead_what_the_live_release_imported(app: App) -> None:
    """Before it knows the next release, the spare imports what the live release's processes imported from
    the stdlib and the venv, never the app's own modules: a deploy's load is then the app's code alone."""
    app.ok("deploy", "--force")  # the live release's processes list their imports in its venv
    spare = spare_waits(app, timeout=30, ahead=True)
    lists = list((app.deploy_to / "shared" / "run").glob("imports.*"))
    assert len(lists) == 1, lists
    names = lists[0].read_text().split()
    assert "django.core.handlers.wsgi" in names, names[:20]
    assert not [n for n in names if n.split(".")[0] in ("movies", "imdb")], names
    for pid in spare:
        ahead = imported_ahead(app.deploy_to, pid)
        assert ahead and ahead[0] > 0 and ahead[1] > 300, ahead
    bump(app, str(int(app.version()) + 1))
    with Load(app) as load:
        p = app.ok("deploy")
    assert "restarting it" not in p.stderr, p.stderr
    assert load.failed == 0, (load.ok, load.failed)
    assert slot_pids(app)[live_slot(app)] == spare


def test_a_changed_environment_restarts_the_spare(app: App) -> None:
    """A module may read the environment when it is imported: a spare that imported ahead under another
    environment than the new release's restarts instead of loading it."""
    try:
        for value, restarts in (("1", True), ("2", True), ("2", False)):
            configure(app, environment={"FD_AHEAD": value})
            spare_waits(app, timeout=30, ahead=True)
            p = app.ok("deploy", "--force")
            assert ("imported ahead under another environment: restarting it" in p.stderr) is restarts, (value, p.stderr)
    finally:
        configure(app)
        spare_waits(app)
        app.ok("deploy")


# Appended to the app's WSGI module: an exit callback of the app's own, and an object whose __del__ only
# Python's teardown of the module calls.
EXIT_FLAGS = """
import atexit as _atexit
import os as _os

_atexit.register(lambda p={flags!r} + "/atexit.%d" % _os.getpid(): open(p, "w").close())


class _Teardown:
    def __del__(self, _open=open, _p={flags!r} + "/teardown.%d" % _os.getpid()):
        _open(_p, "w").close()


_teardown = _Teardown()
"""


def test_a_restarted_slot_runs_the_apps_exit_callbacks_and_skips_pythons_teardown(app: App) -> None:
    """A slot's processes restart together at a deploy's flip; Python's teardown of a Django app is ~50 ms of
    CPU each, which stalled the slot that serves on a small host. They end after the app's own atexit
    callbacks, before the teardown."""
    flags = Path(tempfile.mkdtemp(prefix="fabdeploy-exit-"))
    flags.chmod(0o777)  # the daemon user writes there
    wsgi = app.path / "imdb" / "wsgi.py"
    good = wsgi.read_text()
    try:
        wsgi.write_text(good + EXIT_FLAGS.format(flags=str(flags)))
        app.commit("exit flags")
        spare_waits(app)
        app.ok("deploy")
        slot = live_slot(app)
        pids = slot_pids(app)[slot]
        assert len(pids) == 2, pids
        wsgi.write_text(good)
        app.commit("no exit flags")
        # Two flips later the slot holds the release before the previous one: it restarts, as the spare.
        for _ in range(2):
            spare_waits(app)
            bump(app, str(int(app.version()) + 1))
            app.ok("deploy")
        deadline = time.monotonic() + 15
        while any(Path(f"/proc/{p}").exists() for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in pids if Path(f"/proc/{p}").exists()], f"slot {slot} did not restart: {roles(app)}"
        seen = {f.name for f in flags.iterdir()}
        assert {f"atexit.{p}" for p in pids} <= seen, seen
        assert not {f"teardown.{p}" for p in pids} & seen, seen
    finally:
        if wsgi.read_text() != good:
            wsgi.write_text(good)
            app.commit("no exit flags")
        shutil.rmtree(flags, ignore_errors=True)


def test_with_one_slot_a_rolling_reload_runs_the_apps_exit_callbacks_and_skips_pythons_teardown(app: App) -> None:
    """The same for the release's own script, with `daemon.slots: 1` (each process restarted in turn)."""
    flags = Path(tempfile.mkdtemp(prefix="fabdeploy-exit-"))
    flags.chmod(0o777)
    wsgi = app.path / "imdb" / "wsgi.py"
    good = wsgi.read_text()
    try:
        wsgi.write_text(good + EXIT_FLAGS.format(flags=str(flags)))
        with_slots(app, 1)
        app.ok("deploy")
        # The one group's processes (the import check, a Python of its own, writes both flags: not these).
        # After the graceful that installed the one-slot vhost, Apache may start the second a tick later.
        deadline = time.monotonic() + 10
        while True:
            pids = {
                int(f.name.split(".")[1])
                for f in (app.deploy_to / "shared" / "run").glob("ready.*")
                if f"group {app.name}\n" in f.read_text() and Path(f"/proc/{f.name.split('.')[1]}").exists()
            }
            if len(pids) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(pids) == 2, pids
        app.ok("reload")
        deadline = time.monotonic() + 15
        while any(Path(f"/proc/{p}").exists() for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in pids if Path(f"/proc/{p}").exists()], "the rolling reload left processes running"
        seen = {f.name for f in flags.iterdir()}
        assert {f"atexit.{p}" for p in pids} <= seen, seen
        assert not {f"teardown.{p}" for p in pids} & seen, seen
    finally:
        wsgi.write_text(good)
        configure(app)
        app.ok("deploy")
        shutil.rmtree(flags, ignore_errors=True)
