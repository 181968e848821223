"""The fault matrix, against real sshd + Apache/mod_wsgi: each failure is a one-line error with its exit
code, the live release keeps serving, `current` and shared/ are untouched, no lock is left, and the next
normal deploy succeeds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import App, make_app
from tests.sandbox import REPO_ROOT, Sandbox, app_config, fab_argv

SECRET = "s3cr3t-Token-4242"
WEIRD = "'; touch /tmp/fabdeploy-pwned-1; echo '$(touch /tmp/fabdeploy-pwned-2)`id`"


@pytest.fixture(scope="module")
def app(daemon_host: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    a = make_app(daemon_host, tmp_path_factory.mktemp("faults"), "daemon")
    configure(a)
    a.ok("setup")
    a.ok("deploy")
    yield a
    shutil.rmtree(a.deploy_to, ignore_errors=True)


def configure(a: App, **over: object) -> None:
    cfg: dict[str, object] = {
        "mode": "daemon",
        "environment": {"API_TOKEN": SECRET, "WEIRD": WEIRD},
        "health": {"path": "/movie", "contains": "Godfather", "timeout": 20},
    }
    cfg.update(over)
    a.write_config(**cfg)
    a.commit("config")


def shared_digest(a: App) -> str:
    h = hashlib.sha256()
    root = a.deploy_to / "shared"
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith(("venvs", "run", ".vhost")) or not p.is_file():
            continue
        h.update(rel.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


class Live:
    """What must not change while a deploy fails."""

    def __init__(self, a: App) -> None:
        self.a = a
        self.current = a.current()
        self.shared = shared_digest(a)

    def intact(self, deploy_after: bool = True) -> None:
        a = self.a
        assert a.current() == self.current
        status, headers, _ = a.get("/movie")
        assert status == 200 and headers.get("x-deploy-release") == self.current
        assert shared_digest(a) == self.shared
        assert not (a.deploy_to / ".lock").exists()
        if deploy_after:
            configure(a)
            a.ok("deploy")


def one_line_error(p: subprocess.CompletedProcess[str]) -> str:
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert errors, p.stderr
    return errors[-1]


# 1. Connection failures: refused, DNS, authentication, host key.
@pytest.mark.parametrize(
    "kind,ssh_extra,expect",
    [
        ("refused", "HostName 127.0.0.1\n    Port 9", "cannot connect"),
        ("dns", "HostName no-such-host.invalid", "not found"),
        ("auth", "IdentityFile {wrong_key}", "authentication failed"),
        ("hostkey", "", "host key mismatch"),
    ],
)
def test_connection_failures(app: App, kind: str, ssh_extra: str, expect: str) -> None:
    live = Live(app)
    wrong_key = app.home / "wrong_key"
    if not wrong_key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong_key)], check=True)
    sb = app.sb
    base = sb.ssh_config.read_text()
    cfg = app.home / f"ssh_config_{kind}"
    # Host-specific lines first: ssh_config takes the first value of a key.
    lines = {k: v for k, v in (ln.strip().split(None, 1) for ln in base.splitlines()[1:] if ln.strip())}
    for extra in ssh_extra.format(wrong_key=wrong_key).split("\n"):
        if extra.strip():
            key, value = extra.strip().split(None, 1)
            lines[key] = value
    cfg.write_text("Host bad\n" + "".join(f"    {k} {v}\n" for k, v in lines.items()))
    if kind == "hostkey":
        (app.home / ".ssh").mkdir(exist_ok=True)
        other = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(app.home / "other")], check=True)
        del other
        pub = (app.home / "other.pub").read_text().split()
        (app.home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{sb.ssh_port} {pub[0]} {pub[1]}\n")
    try:
        env = dict(os.environ, HOME=str(app.home), PYTHONPATH=str(REPO_ROOT))
        argv = fab_argv(sb, "deploy")
        argv[argv.index("-S") + 1] = str(cfg)
        argv[argv.index("-H") + 1] = "bad"
        p = subprocess.run(argv, cwd=app.path, env=env, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(app.home / ".ssh", ignore_errors=True)
    assert p.returncode == 3, p.stderr
    line = one_line_error(p)
    assert "bad" in line and expect in line
    live.intact(deploy_after=False)


# 2. Config errors: before any connection.
@pytest.mark.parametrize(
    "over,args,expect",
    [
        ({}, ["--stage=nope"], "unknown stage 'nope'"),
        ({"daemon": {"processes": "many"}}, [], "daemon.processes must be a whole number"),
        ({"keep_release": 3}, [], "unknown setting 'keep_release'"),
        ({"app": "imdb; rm -rf /"}, [], "setting app"),
        ({"server_name": "$(id)"}, [], "setting server_name"),
    ],
)
def test_config_errors_before_connecting(app: App, over: dict[str, object], args: list[str], expect: str) -> None:
    live = Live(app)
    configure(app, **over)
    before = app.sb.exec_requests()
    p = app.fab("deploy", *args)
    assert p.returncode == 2, p.stderr
    assert expect in one_line_error(p)
    assert app.sb.exec_requests() == before  # nothing reached the host
    live.intact()


def test_missing_required_setting(app: App) -> None:
    live = Live(app)
    cfg = json.loads((app.path / "fabric.json").read_text())
    del cfg["deploy"]["server_name"]
    (app.path / "fabric.json").write_text(json.dumps(cfg))
    app.commit("missing")
    p = app.fab("deploy")
    assert p.returncode == 2 and "missing required setting deploy.server_name" in one_line_error(p)
    live.intact()


# 3. Template errors.
@pytest.mark.parametrize("text,expect", [("ServerName {{ nope }}\n", "nope"), ("{% if %}\n", "line 1")])
def test_template_errors(app: App, text: str, expect: str) -> None:
    live = Live(app)
    (app.path / "conf_templates").mkdir(exist_ok=True)
    (app.path / "conf_templates" / "vhost.conf.j2").write_text(text)
    app.commit("template")
    try:
        p = app.fab("deploy")
    finally:
        shutil.rmtree(app.path / "conf_templates")
        app.commit("template-gone")
    assert p.returncode == 2, p.stderr
    assert "vhost.conf.j2" in one_line_error(p) and expect in p.stderr
    live.intact()


# 4./5. A step on the host fails: pip, a hook, configtest.
@pytest.mark.parametrize("case", ["pip", "hook", "configtest"])
def test_failing_step_on_host(app: App, case: str) -> None:
    live = Live(app)
    if case == "pip":
        (app.path / "requirements.txt").write_text("no-such-package-fabdeploy-faults==1.0\n")
        app.commit("pip")
    elif case == "hook":
        configure(app, hooks=[{"name": "migrate", "run": "echo migrating; exit 1"}])
    else:
        (app.path / "conf_templates").mkdir(exist_ok=True)
        shipped = (REPO_ROOT / "conf_templates" / "vhost.conf.j2").read_text()
        (app.path / "conf_templates" / "vhost.conf.j2").write_text(shipped.replace("ServerName", "Bogus x\n    ServerName"))
        app.commit("configtest")
    try:
        p = app.fab("deploy")
    finally:
        subprocess.run(["git", "checkout", "HEAD~1", "--", "."], cwd=app.path, check=False, capture_output=True)
        shutil.rmtree(app.path / "conf_templates", ignore_errors=True)
        (app.path / "requirements.txt").write_text((REPO_ROOT / "example" / "requirements.txt").read_text())
        app.commit("restore")
    assert p.returncode == 5, p.stderr
    line = one_line_error(p)
    assert "sandbox" in line and {"pip": "pip install", "hook": "hook migrate", "configtest": "configtest"}[case] in line
    live.intact()


# 6. Health check after the switch: rolled back, shared/ untouched, lock free.
def test_health_check_failure(app: App) -> None:
    live = Live(app)
    configure(app, health={"path": "/movie", "contains": "no such text", "timeout": 10, "attempts": 1})
    p = app.fab("deploy")
    assert p.returncode == 7, p.stderr
    # Slots (the default): the release failed its check in the idle slot and was never flipped to.
    assert "nothing was switched" in one_line_error(p)
    live.intact()


def slow_prepare(app: App, seconds: float = 20) -> None:
    app.sleep = f"sleep {seconds}.{time.monotonic_ns() % 1000:03d}"  # type: ignore[attr-defined]
    configure(app, hooks=[{"name": "slow", "run": app.sleep}])  # type: ignore[attr-defined]


def start_deploy(app: App) -> subprocess.Popen[str]:
    env = dict(os.environ, HOME=str(app.home), PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen(
        fab_argv(app.sb, "deploy"), cwd=app.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_lock(app: App, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not (app.deploy_to / ".lock").exists():
        assert time.monotonic() < deadline, "the deploy never took the lock"
        time.sleep(0.05)


def wait_for_hook(app: App, timeout: float = 30) -> None:
    """Until this test's own slow hook runs (a unique sleep time: never an earlier test's)."""
    deadline = time.monotonic() + timeout
    pattern = "^" + app.sleep.replace(".", "[.]")  # type: ignore[attr-defined]
    while subprocess.run(["pgrep", "-u", app.sb.user.name, "-f", pattern], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "the slow hook never started"
        time.sleep(0.05)


# 7. Interrupted deploys.
def test_sigint_during_prepare_releases_lock(app: App) -> None:
    live = Live(app)
    slow_prepare(app)
    proc = start_deploy(app)
    wait_for_hook(app)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not (app.deploy_to / ".lock").exists()
    # The half-made release is no rollback target and goes with the next deploy.
    states = {d.name: (d / ".release" / "state").read_text().strip() for d in (app.deploy_to / "releases").iterdir()}
    assert "failed" in states.values()
    live.intact()
    assert all((d / ".release" / "state").read_text().strip() == "finished" for d in (app.deploy_to / "releases").iterdir())


def test_sigkill_during_prepare_leaves_stale_lock_that_unlock_clears(app: App) -> None:
    live = Live(app)
    slow_prepare(app, 5)
    proc = start_deploy(app)
    wait_for_hook(app)
    proc.kill()
    proc.communicate(timeout=30)
    configure(app)
    deadline = time.monotonic() + 60
    while True:  # the orphaned remote step ends on its own; until then the lock is not stale
        p = app.fab("deploy")
        assert p.returncode == 4, p.stderr
        line = one_line_error(p)
        if "still running on the host" not in line:
            break
        assert time.monotonic() < deadline, line
        time.sleep(0.5)
    assert "stale" in line and "pid" in line and "fab -H sandbox unlock" in line
    app.ok("unlock")
    live.intact()


def test_connection_dropped_mid_prepare(app: App) -> None:
    live = Live(app)
    slow_prepare(app)
    proc = start_deploy(app)
    wait_for_hook(app)
    # Kill the session's sshd processes (not the listener): the connection drops mid-step.
    subprocess.run(["pkill", "-KILL", "-f", f"^sshd: {app.sb.user.name}"], check=True)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "connection lost" in err
    time.sleep(1)
    live.intact()


def test_connection_dropped_during_the_upload(app: App) -> None:
    live = Live(app)
    big = app.path / "movies" / "static" / "movies" / "big.bin"
    big.write_bytes(os.urandom(48 << 20))  # incompressible: the upload lasts long enough to cut
    app.commit("big-file")
    try:
        proc = start_deploy(app)
        deadline = time.monotonic() + 60
        # The prepare command's tar is reading the archive from the connection: cut it now.
        while subprocess.run(["pgrep", "-u", app.sb.user.name, "-f", "^tar -xzf -"], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline and proc.poll() is None, "the upload never started"
            time.sleep(0.01)
        subprocess.run(["pkill", "-KILL", "-f", f"^sshd: {app.sb.user.name}"], check=True)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 3, err
        assert "connection lost" in err or "not connected" in err, err
    finally:
        big.unlink()
        app.commit("no-big-file")
    time.sleep(1)
    live.intact()


def test_sigkill_during_switch_ends_consistent(app: App) -> None:
    configure(app, warmup=["/slow?s=4"])
    proc = start_deploy(app)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while True:  # kill fab once the switch command is under way (its reload has been reported)
        line = proc.stderr.readline()
        assert line and time.monotonic() < deadline, "no reload reported"
        if "reload " in line:
            break
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while (app.deploy_to / ".lock").exists():  # the switch command finishes on the host and unlocks
        assert time.monotonic() < deadline, "lock left after a killed switch"
        time.sleep(0.2)
    status, headers, _ = app.get("/movie")
    assert status == 200 and headers.get("x-deploy-release") == app.current()
    configure(app)
    app.ok("deploy")


def test_sigint_during_switch_lets_the_switch_finish(app: App) -> None:
    # One slot: the rolling reload runs in the switch (with slots, Ctrl-C there is test_slots.py's case).
    daemon = {**app_config(app.sb)["daemon"], "slots": 1}  # type: ignore[dict-item]
    configure(app, warmup=["/slow?s=3"], daemon=daemon)
    before = app.current()
    proc = start_deploy(app)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while True:  # Ctrl-C once the switch command is under way: prepare's last step was reported
        line = proc.stderr.readline()
        assert line and time.monotonic() < deadline, "prepare never finished"
        if "configtest" in line:
            break
    time.sleep(0.3)  # inside the rolling reload
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: during the switch" in err and "fab status" in err
    deadline = time.monotonic() + 30
    while (app.deploy_to / ".lock").exists():  # the switch finishes on the host and unlocks
        assert time.monotonic() < deadline, "lock left after an interrupted switch"
        time.sleep(0.2)
    new = app.current()
    log = (app.deploy_to / "revisions.log").read_text()
    states = {d.name: (d / ".release" / "state").read_text() for d in (app.deploy_to / "releases").iterdir()}
    assert new != before, f"{log}\n{states}\n{err}"
    assert (app.deploy_to / "releases" / str(new) / ".release" / "state").read_text().strip() == "finished"
    status, headers, _ = app.get("/movie")
    assert status == 200 and headers.get("x-deploy-release") == new
    configure(app)
    app.ok("deploy")


# 8. Two deploys at once: one proceeds, the other fails fast naming the holder.
def test_concurrent_deploys(app: App) -> None:
    slow_prepare(app, 4)
    first = start_deploy(app)
    wait_for_lock(app)
    t = time.monotonic()
    p = app.fab("deploy")
    assert time.monotonic() - t < 10
    assert p.returncode == 4 and "deploy lock held by" in one_line_error(p)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    configure(app)
    app.ok("deploy")


# 9. The disk fills up during unpack.
def test_disk_full(app: App, tmp_path: Path) -> None:
    live = Live(app)
    big = app.path / "big.bin"
    # Incompressible, larger than what is left on a small tmpfs over the releases directory.
    big.write_bytes(os.urandom(48 * 1024 * 1024))
    app.commit("big")
    rel = app.deploy_to / "releases"
    keep = tmp_path / "releases"
    shutil.copytree(rel, keep, symlinks=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(rel)], check=True)
    try:
        subprocess.run(["cp", "-a", f"{keep}/.", str(rel)], check=True)
        shutil.chown(rel, app.sb.user.name)
        p = app.fab("deploy")
        assert p.returncode == 5, p.stderr
        assert "unpack" in one_line_error(p)
        live.intact(deploy_after=False)
    finally:
        subprocess.run(["cp", "-a", f"{rel}/.", str(keep)], check=False)
        subprocess.run(["umount", "-l", str(rel)], check=True)
        subprocess.run(["cp", "-a", f"{keep}/.", str(rel)], check=True)
    big.unlink()
    app.commit("small")
    live.intact()


# 10. Rollback refusals.
@pytest.mark.parametrize(
    "args,expect", [(["--to=../../etc"], "not a release id"), (["--to=20200101T000000Z-abc"], "not a finished release")]
)
def test_rollback_refused(app: App, args: list[str], expect: str) -> None:
    live = Live(app)
    p = app.fab("rollback", *args)
    assert p.returncode == 6 and expect in one_line_error(p)
    live.intact(deploy_after=False)


# 11./12. Metacharacters are data, never code; secrets never shown.
def test_metacharacters_and_secrets(app: App) -> None:
    app.sleep = "sleep 2.718"  # type: ignore[attr-defined]
    configure(app, hooks=[{"name": "env", "run": "printenv WEIRD > .release/weird.txt; sleep 2.718"}])
    proc = start_deploy(app)
    wait_for_hook(app)
    cmdlines = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert SECRET not in cmdlines
    for pwned in ("/tmp/fabdeploy-pwned-1", "/tmp/fabdeploy-pwned-2"):
        assert not Path(pwned).exists()
    rel = app.deploy_to / "current" / ".release"
    assert (rel / "weird.txt").read_text() == WEIRD + "\n"
    assert SECRET not in out + err
    assert SECRET not in (app.deploy_to / "revisions.log").read_text()
    assert SECRET not in app.sb.sshd_log.read_text(errors="replace")
    assert oct((rel / "app.wsgi").stat().st_mode & 0o777) == "0o640"
    assert oct((rel / "env.sh").stat().st_mode & 0o777) == "0o600"
    assert SECRET in (rel / "app.wsgi").read_text()  # the app does get it
    configure(app)
    app.ok("deploy")
