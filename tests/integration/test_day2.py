"""Day-2 operations against real sshd + Apache/mod_wsgi: secrets from the deploying machine, check, logs, exec,
maintenance (issue 17). One app for the module, deployed once; each test leaves it as it found it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.integration.conftest import App, make_app
from tests.sandbox import REPO_ROOT, Sandbox, app_config, fab_argv

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


def start_fab(a: App, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, HOME=str(a.home), PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen(
        fab_argv(a.sb, *args), cwd=a.path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


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


# ---- fab check


def checks_of(p: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    doc = json.loads(p.stdout)
    return {str(x["name"]): x for x in doc["hosts"][0]["checks"]}


def failed(p: subprocess.CompletedProcess[str]) -> list[str]:
    return [n for n, x in checks_of(p).items() if x["status"] == "fail"]


def layout(a: App) -> list[str]:
    """What is under deploy_to, but the daemon processes' own markers (shared/run: a spare still starting
    after the fixture's first deploy writes its own) and uv's cache bookkeeping (tools/uv-cache)."""
    skip = (a.deploy_to / "shared" / "run", a.deploy_to / "tools" / "uv-cache")
    return sorted(str(p) for p in a.deploy_to.rglob("*") if not any(p == d or d in p.parents for d in skip))


def test_check_passes_on_a_ready_host_and_changes_nothing(app: App) -> None:
    before = layout(app)
    execs = app.sb.exec_requests()
    p = app.ok("check")
    assert "all" in p.stdout and "checks passed" in p.stdout, p.stdout
    assert app.sb.exec_requests() - execs == 1  # one SSH command
    got = checks_of(app.ok("check", "--json"))
    for name in ("ssh", "python", "venv", "deploy_to", "disk", "sudo:graceful", "sudo:candidate", "mpm", "apache",
                 "mod_wsgi", "mod_rewrite", "mod_wsgi-python", "user", "group", "run-group"):
        assert got[name]["status"] == "ok", (name, got[name])
    assert "Python 3.11" in str(got["mod_wsgi-python"]["detail"])
    assert layout(app) == before


def test_check_names_a_deploy_to_it_cannot_write(app: App) -> None:
    app.deploy_to.chmod(0o555)
    try:
        p = app.fab("check")
        s = app.fab("setup")
    finally:
        app.deploy_to.chmod(0o755)
    assert p.returncode == 9, p.stderr
    assert "! FAIL  deploy_to" in p.stdout and f"sudo install -d -o {app.sb.user.name}" in p.stdout, p.stdout
    assert "1 check failed (deploy_to)" in p.stderr
    # fab setup checks first, and changes nothing when a check fails.
    assert s.returncode == 9 and f"fix: sudo install -d -o {app.sb.user.name}" in s.stderr, s.stderr


def test_check_names_a_missing_sudo_rule_with_its_sudoers_line(app: App) -> None:
    sudoers = app.sb._sudoers
    assert sudoers is not None
    original = sudoers.read_text()
    ctl = app.sb.on_host(app.sb.apachectl)
    allowed = ", ".join(f"{ctl} {args}" for args in ("configtest", "-V", "-M", "-t -D *"))
    sudoers.write_text(f"{app.sb.user.name} ALL=(root) NOPASSWD: {allowed}\n")
    try:
        p = app.fab("check", "--json")
    finally:
        sudoers.write_text(original)
    assert p.returncode == 9 and failed(p) == ["sudo:graceful"], p.stdout
    fix = checks_of(p)["sudo:graceful"]["fix"]
    assert fix == [f"add to sudoers (visudo -f /etc/sudoers.d/fabdeploy): {app.sb.user.name} ALL=(root) NOPASSWD: {ctl} graceful"]


def test_check_names_a_module_apache_does_not_load(app: App) -> None:
    conf = app.sb.apache_root / "httpd.conf"
    original = conf.read_text()
    # mod_headers: a warning (only fab maintenance's Retry-After needs it). mod_rewrite is required by the
    # daemon slots (without it their vhost does not load at all).
    conf.write_text("\n".join(ln for ln in original.splitlines() if "mod_headers" not in ln) + "\n")
    try:
        p = app.ok("check", "--json")
    finally:
        conf.write_text(original)
    headers = checks_of(p)["mod_headers"]
    assert headers["status"] == "warn"
    assert headers["fix"] == [f"sudo a2enmod headers && sudo {app.sb.on_host(app.sb.apachectl)} graceful"]
    assert checks_of(p)["mod_rewrite"]["status"] == "ok"


def test_check_names_a_missing_package_and_a_missing_user(app: App) -> None:
    # A Python without venv/ensurepip and virtualenv, as on a Debian without python3-venv.
    base = app.sb.root / "nopkg"  # where the deploy user can read (pytest's tmp_path is root's only)
    shadow = base / "shadow"
    shadow.mkdir(parents=True, exist_ok=True)
    for mod in ("ensurepip", "virtualenv"):
        (shadow / f"{mod}.py").write_text("raise ImportError('not installed (test)')\n")
    python = base / "python3"
    python.write_text(f"#!/bin/sh\nPYTHONPATH={shadow} exec /usr/bin/python3 \"$@\"\n")
    python.chmod(0o755)
    # installer pip: the venv check is about the host's own virtualenv/venv (uv is shipped by the tool).
    configure(app, python=str(python), installer="pip", daemon={"user": "fdnosuchuser", "group": app.sb.user.name})
    try:
        p = app.fab("check", "--json")
    finally:
        configure(app)
    assert p.returncode == 9 and failed(p) == ["venv", "user"], p.stdout
    got = checks_of(p)
    assert got["venv"]["fix"] == ["sudo apt-get install python3-venv   # or python3-virtualenv"]
    assert got["user"]["fix"] == ["sudo adduser --system --group --no-create-home fdnosuchuser"]


# ---- fab logs


def test_a_failed_deploy_points_to_fab_logs_which_shows_the_traceback(app: App) -> None:
    live = app.current()
    views = app.path / "movies" / "views.py"
    good = views.read_text()
    broken = '    raise RuntimeError("broken-movie-list-fabdeploy")\n    movies = [{"title"'
    views.write_text(good.replace('    movies = [{"title"', broken, 1))
    app.commit("broken view")
    try:
        p = app.fab("deploy")
    finally:
        views.write_text(good)
        app.commit("fixed view")
    assert p.returncode == 7, p.stderr
    assert "health check failed" in p.stderr and "the app's error log: fab logs" in p.stderr
    assert app.current() == live
    logs = app.ok("logs", "--lines", "300")
    assert "RuntimeError: broken-movie-list-fabdeploy" in logs.stdout, logs.stdout[-3000:]
    assert "Traceback (most recent call last)" in logs.stdout
    # The log files are the deploy user's, under deploy_to.
    error_log = app.deploy_to / "logs" / "error.log"
    assert error_log.stat().st_uid == app.deploy_to.stat().st_uid
    assert error_log.stat().st_mode & 0o007 == 0 and (app.deploy_to / "logs").stat().st_mode & 0o007 == 0
    # --since: what is older is left out; --access: the access log; --json: the lines themselves.
    access = app.ok("logs", "--access", "--since", "10m", "--lines", "0").stdout
    assert re.search(r'"GET /movie HTTP/1\.[01]" 500', access), access[-2000:]  # the health check speaks HTTP/1.0
    doc = json.loads(app.ok("logs", "--json", "--lines", "5").stdout)
    assert doc["task"] == "logs" and len(doc["hosts"][0]["lines"]) == 5


def test_a_release_that_cannot_be_imported_or_fails_a_hook_is_in_fab_logs_too(app: App) -> None:
    live = app.current()
    models = app.path / "movies" / "models.py"
    good = models.read_text()
    models.write_text("import nosuchmodule_day2_fabdeploy  # noqa: F401\n" + good)
    app.commit("import error")
    try:
        p = app.fab("deploy")
    finally:
        models.write_text(good)
        app.commit("import fixed")
    assert p.returncode == 5 and "import check failed" in p.stderr and "the app's error log: fab logs" in p.stderr, p.stderr
    assert app.current() == live
    logs = app.ok("logs", "--since", "5m", "--lines", "0").stdout
    assert "[fabdeploy:error] [import check of release" in logs, logs[-2000:]
    assert "No module named 'nosuchmodule_day2_fabdeploy'" in logs
    # A failing hook (a migration, say) too.
    configure(app, hooks=[{"name": "failing", "run": "echo hook-output-day2; exit 1"}])
    try:
        p = app.fab("deploy")
    finally:
        configure(app)
    assert p.returncode == 5 and "hook failing failed" in p.stderr and "fab logs" in p.stderr, p.stderr
    # Not the last few lines: mod_wsgi's info lines of the idle slot's processes may land after the entry.
    logs = app.ok("logs", "--since", "5m", "--lines", "0").stdout
    assert "[fabdeploy:error] [hook failing of release" in logs and "hook-output-day2" in logs, logs


def host_tails(a: App) -> bool:
    """Whether the host runs a `fab logs` (logs.py, run as `python3 -` by the deploy user)."""
    return subprocess.run(["pgrep", "-u", a.sb.user.name, "-x", "-f", "/usr/bin/python3 - .*/logs/error.log.*"],
                          capture_output=True).returncode == 0


def test_logs_follow_prints_new_lines_until_interrupted(app: App) -> None:
    proc = start_fab(app, "logs", "--follow", "--lines", "0")
    try:
        deadline = time.monotonic() + 30
        seen = ""
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        while "boom-from-the-view-fabdeploy" not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, seen
            assert app.get("/boom")[0] == 500
            time.sleep(0.5)
            # os.read, not the text wrapper's read(): on a non-blocking pipe that raises TypeError when a
            # read comes back empty midway (seen once in CI: "can't concat NoneType to bytes").
            try:
                seen += os.read(proc.stdout.fileno(), 65536).decode(errors="replace")
            except BlockingIOError:
                pass
        assert host_tails(app)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 130
    # The host's side of the command ends too (within the 2 s tick of an idle log).
    deadline = time.monotonic() + 10
    while host_tails(app):
        assert time.monotonic() < deadline, "the host still runs fab logs --follow"
        time.sleep(0.2)


# ---- fab exec, fab manage


def test_exec_runs_in_the_live_release_with_its_environment(app: App) -> None:
    rel = app.deploy_to / "releases" / str(app.current())
    script = "import os, sys; print(os.environ['DAY2_SECRET'], os.getcwd(), sys.prefix, os.environ['DEPLOY_RELEASE'])"
    before = app.sb.exec_requests()
    p = app.ok("exec", f'python -c "{script}"')
    assert app.sb.exec_requests() - before == 1  # one SSH command
    secret, cwd, prefix, release = p.stdout.split()
    assert secret == SECRET and cwd == str(rel) and prefix == str(rel / ".venv") and release == app.current()
    # The exit code is passed through; a shell command line as one string; --all prefixes each line.
    failed = app.fab("exec", "echo to-stderr >&2; echo out; exit 3")
    assert failed.returncode == 3 and failed.stdout == "out\n" and "to-stderr" in failed.stderr, failed
    assert "the command exited with 3" in failed.stderr
    assert app.ok("exec", "--all", "echo one; echo two").stdout == "[sandbox] one\n[sandbox] two\n"
    doc = json.loads(app.fab("exec", "--json", "echo hi; exit 5").stdout)
    assert doc["ok"] is False and doc["exit_code"] == 5 and doc["hosts"][0]["exit_code"] == 5
    assert doc["hosts"][0]["stdout"] == "hi\n"


def test_manage_runs_django_in_the_release(app: App) -> None:
    p = app.ok("manage", "check")
    assert "System check identified no issues" in p.stdout + p.stderr
    p = app.ok("manage", "shell -c 'from movies.models import Movie; print(Movie.objects.count())'")
    assert p.stdout.strip().splitlines()[-1] == "24"


def test_exec_on_a_terminal_gets_a_pty(app: App) -> None:
    import pty

    master, slave = pty.openpty()
    env = dict(os.environ, HOME=str(app.home), PYTHONPATH=str(REPO_ROOT), TERM="xterm")
    script = "import sys; print('tty', sys.stdin.isatty(), input('name? ')); sys.exit(4)"
    proc = subprocess.Popen(fab_argv(app.sb, "exec", f'python -c "{script}"'), cwd=app.path, env=env,
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    sent = False
    while True:
        assert time.monotonic() < deadline, seen
        try:
            data = os.read(master, 4096)
        except OSError:
            break  # the child closed the terminal
        if not data:
            break
        seen += data
        if b"name? " in seen and not sent:
            os.write(master, b"alice\r")
            sent = True
    proc.wait(30)
    os.close(master)
    assert b"tty True alice" in seen, seen
    assert proc.returncode == 4, seen


# ---- fab maintenance


def test_maintenance_answers_503_without_a_reload_and_deploys_wait(app: App) -> None:
    import threading

    assert app.get("/movie")[0] == 200
    vhost = (app.sb.sites_dir / "day2.conf").stat().st_mtime_ns
    processes = sorted(p.name for p in (app.deploy_to / "shared" / "run").glob("ready.*"))
    slow: list[int] = []
    running = threading.Thread(target=lambda: slow.append(app.get("/slow?s=3")[0]))
    running.start()
    time.sleep(0.5)
    try:
        app.ok("maintenance", "on", "--message", "Upgrading the <database>")
        status, headers, body = app.get("/movie")
        assert status == 503 and headers.get("retry-after") == "600", (status, headers)
        assert "Upgrading the &lt;database&gt;" in body and "<!DOCTYPE html>" in body
        assert headers.get("content-type", "").startswith("text/html")
        assert app.get("/static/movies/site.css")[0] == 503
        running.join(30)
        assert slow == [200]  # a request already running finished
        # No reload: the same vhost file, the same daemon processes.
        assert (app.sb.sites_dir / "day2.conf").stat().st_mtime_ns == vhost
        assert sorted(p.name for p in (app.deploy_to / "shared" / "run").glob("ready.*")) == processes
        assert "MAINTENANCE since" in app.ok("status").stdout
        # A deploy is refused, before anything changes; --keep-maintenance deploys (its checks reach the app).
        live = app.current()
        p = app.fab("deploy")
        assert p.returncode == 10 and "fab maintenance off first, or deploy with --keep-maintenance" in p.stderr, p.stderr
        assert app.current() == live and not (app.deploy_to / ".lock").exists()
        app.set_version("maint")
        app.ok("deploy", "--keep-maintenance")
        assert app.current() != live and app.get("/movie")[0] == 503
    finally:
        app.ok("maintenance", "off")
    assert app.wait_version("maint")["release"] == app.current()
    assert "MAINTENANCE" not in app.ok("status").stdout
    assert app.ok("maintenance", "off").stderr.strip().endswith("maintenance was off")


def test_maintenance_is_refused_where_apache_would_not_show_it(app: App) -> None:
    # One daemon slot: its vhost loads without mod_rewrite (the two slots need it), and maintenance cannot work.
    daemon = {**app_config(app.sb)["daemon"], "slots": 1}  # type: ignore[dict-item]
    configure(app, daemon=daemon)
    app.ok("deploy")
    conf = app.sb.apache_root / "httpd.conf"
    original = conf.read_text()
    ctl = str(app.sb.apachectl)
    try:
        conf.write_text("\n".join(ln for ln in original.splitlines() if "mod_rewrite" not in ln) + "\n")
        subprocess.run([ctl, "graceful"], check=True, capture_output=True)
        time.sleep(1)  # the children of the old config finish
        p = app.fab("maintenance", "on")
    finally:
        conf.write_text(original)
        subprocess.run([ctl, "graceful"], check=True, capture_output=True)
        configure(app)
    app.ok("deploy")
    assert p.returncode == 5 and "not 503" in p.stderr and "sudo a2enmod rewrite" in p.stderr, p.stderr
    assert not (app.deploy_to / "maintenance").exists()
    app.wait_version(app.version())


def test_an_interrupted_exec_stops_the_command_on_the_host(app: App) -> None:
    marker = "3600.123"  # a sleep only this test runs
    proc = start_fab(app, "exec", f"echo started; sleep {marker}")
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["pgrep", "-u", app.sb.user.name, "-f", f"sleep {marker}"], capture_output=True).returncode:
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted: the command was stopped on the host" in err, err
    deadline = time.monotonic() + 10
    while subprocess.run(["pgrep", "-u", app.sb.user.name, "-f", f"sleep {marker}"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "the command still runs on the host"
        time.sleep(0.1)


def test_a_refused_sudo_rule_is_named_with_its_sudoers_line(app: App) -> None:
    sites = app.sb.sites_dir
    live = app.current()
    sites.chmod(0o555)  # the deploy user's no more: the vhost goes through `sudo tee`, which sudoers lacks
    (sites / "day2.conf").chmod(0o444)
    configure(app, server_aliases=["www.day2.test"])
    try:
        p = app.fab("deploy")
        c = app.fab("check", "--json")
    finally:
        sites.chmod(0o755)
        (sites / "day2.conf").chmod(0o644)
        configure(app)
    vhost = f"{app.sb.on_host(sites)}/day2.conf"
    tee = f"/usr/bin/tee {vhost}"
    assert p.returncode == 5 and f"vhost install failed: could not write {vhost}: sudo refuses" in p.stderr, p.stderr
    assert f"NOPASSWD: {tee}; fab check lists every rule" in p.stderr
    assert app.current() == live
    assert c.returncode == 9 and failed(c) == ["sudo:tee"], c.stdout
    app.ok("deploy")


def test_check_names_a_group_the_deploy_user_is_not_in(app: App) -> None:
    # fab setup gives shared/run to the daemon processes' group: the deploy user must be in it. (The sandbox's
    # deploy user is in www-data, Apache's Group, for embedded mode: a group it is not in is named here.)
    configure(app, daemon={"user": app.sb.user.name, "group": "nogroup", "processes": 2, "threads": 15})
    try:
        p = app.fab("check", "--json")
    finally:
        configure(app)
    assert p.returncode == 9 and failed(p) == ["run-group"], p.stdout
    assert checks_of(p)["run-group"]["fix"] == [f"sudo usermod -aG nogroup {app.sb.user.name}   # then log in again"]
