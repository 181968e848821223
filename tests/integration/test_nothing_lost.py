"""Regressions of issue "Nothing lost" against real sshd + Apache/mod_wsgi: each test is one numbered defect.

Every test deploys an app of its own (own name, deploy_to, vhost and daemon group) so that it passes alone
and in any order.
"""

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
from tests.sandbox import REPO_ROOT, Sandbox, fab_argv


@pytest.fixture
def new_app(daemon_host: Sandbox, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[App]:
    """An app named after the test (set up, nothing deployed), removed again afterwards."""
    # Short by default (mod_wsgi's process titles hold 10 characters of a name): one defect per test.
    name = getattr(request, "param", None) or "nl" + hashlib.sha1(request.node.name.encode()).hexdigest()[:6]
    a = make_app(daemon_host, tmp_path, "daemon", name=name)
    a.write_config(health={"path": "/movie", "contains": "Godfather", "timeout": 20})
    a.commit("config")
    a.ok("setup")
    yield a
    shutil.rmtree(a.deploy_to, ignore_errors=True)
    (daemon_host.sites_dir / f"{name}.conf").unlink(missing_ok=True)
    subprocess.run([str(daemon_host.apachectl), "graceful"], capture_output=True)


def start(a: App, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, HOME=str(a.home), PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen(
        fab_argv(a.sb, *args), cwd=a.path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(pattern: str, user: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run(["pgrep", "-u", user, "-f", pattern], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, f"no process matching {pattern!r}"
        time.sleep(0.05)


def error_line(p: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("error: ")]
    assert lines, p.stderr
    return lines[-1]


def served(a: App, n: int = 40) -> set[str | None]:
    return {a.get("/movie")[1].get("x-deploy-release") for _ in range(n)}


def release_dir(a: App, rid: str | None) -> Path:
    return a.deploy_to / "releases" / str(rid)


# 1. The candidate vhost is checked without ever being written into the live sites dir.
def test_configtest_never_installs_the_candidate(new_app: App) -> None:
    a = new_app
    a.ok("deploy")
    vhost = a.sb.sites_dir / f"{a.name}.conf"
    live = vhost.read_bytes()
    ctl = a.sb.apachectl
    original = ctl.read_text()
    flag, started = a.home / "slow-configtest", a.home / "configtest-started"
    # The sandbox's apachectl, slowed down at its config test while the flag file exists.
    slow = f'if [ -e {flag} ]; then case " $* " in *" configtest "*|*" -t "*) touch {started}; sleep 5 ;; esac; fi\n'
    ctl.write_text(original.replace("#!/bin/sh\n", "#!/bin/sh\n" + slow, 1))
    try:
        a.write_config(health={"path": "/movie", "contains": "Godfather", "timeout": 20}, server_aliases=[f"www.{a.name}.test"])
        a.commit("alias")
        a.ok("setup")  # on a live app setup leaves the vhost to the next deploy's switch
        assert vhost.read_bytes() == live
        flag.touch()
        proc = start(a, "deploy")
        deadline = time.monotonic() + 120
        while not started.exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert vhost.read_bytes() == live, "the candidate vhost is in the live sites dir during the config test"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert vhost.read_bytes() == live
    finally:
        flag.unlink(missing_ok=True)
        ctl.write_text(original)
    p = a.ok("deploy", "--json")
    assert json.loads(p.stdout)["hosts"][0]["reload"].startswith("graceful"), p.stdout
    assert f"ServerAlias www.{a.name}.test" in vhost.read_text()
    assert a.sb.get("/movie", host=f"www.{a.name}.test")[0] == 200


# 2. + 11. A name longer than mod_wsgi's process title keeps the rolling reload; only the app's group
# may write the ready markers.
@pytest.mark.parametrize("new_app", ["imdb-catalogue"], indirect=True)
def test_long_app_name_keeps_rolling_reload(new_app: App) -> None:
    a = new_app
    a.write_config(daemon={"user": a.sb.user.name, "group": a.sb.user.name, "processes": 2, "threads": 5, "slots": 1})
    a.commit("one-slot")
    a.ok("deploy")
    a.set_version("2")
    p = a.ok("deploy", "--json")
    assert json.loads(p.stdout)["hosts"][0]["reload"].startswith("rolling"), p.stdout
    a.wait_version("2")


def test_run_dir_writable_by_the_app_group_only(new_app: App) -> None:
    a = new_app
    run = a.deploy_to / "shared" / "run"
    assert not run.stat().st_mode & 0o002, oct(run.stat().st_mode)
    planted = subprocess.run(["su", "-s", "/bin/sh", "nobody", "-c", f"touch {run}/ready.1"], capture_output=True)
    assert planted.returncode != 0 and not (run / "ready.1").exists()
    a.ok("deploy")
    a.set_version("2")
    a.ok("deploy")
    assert list(run.glob("ready.*")), "the daemon processes could not leave their markers"


# 3. A reload that fails during a rollback leaves every process on the release that stays live.
def test_failed_reload_during_rollback_leaves_no_mixed_versions(new_app: App) -> None:
    a = new_app
    a.write_config(daemon={"user": a.sb.user.name, "group": a.sb.user.name, "processes": 2, "threads": 5,
                           "graceful_timeout": 2, "shutdown_timeout": 2, "slots": 1})
    a.commit("small-timeouts")
    a.ok("deploy")
    first = a.current()
    a.set_version("2")
    a.ok("deploy")
    second = a.current()
    assert served(a) == {second}
    # The first release now loads in one daemon process, and fails in the next one.
    counter = a.deploy_to / "loads"  # where the daemon processes (the deploy user) can read and write
    counter.write_text("0")
    counter.chmod(0o666)
    # In the app's own module, as a real failure would be (the WSGI script marks it failed at once); a new
    # file, not a write through the hard link the releases share.
    module = release_dir(a, first) / "imdb" / "wsgi.py"
    bomb = (
        f"_n = int(open({str(counter)!r}).read())\n"
        f"open({str(counter)!r}, 'w').write(str(_n + 1))\n"
        "if _n >= 1:\n    raise ImportError('second load refused by the test')\n"
    )
    text = module.read_text()
    module.unlink()
    module.write_text(bomb + text)
    p = a.fab("rollback")
    assert int(counter.read_text()) >= 2, "the first release was not loaded twice"
    assert p.returncode == 5, p.stderr
    assert second is not None and "reload" in error_line(p) and second in error_line(p)
    assert a.current() == second
    assert served(a) == {second}


# 4. A hook never writes through a hard link into the live or an earlier release.
def test_hooks_never_write_into_earlier_releases(new_app: App) -> None:
    a = new_app
    (a.path / "notes.txt").write_text("shipped\n")
    hooks = [{"name": "stamp", "run": "echo stamped >> notes.txt", "outputs": ["notes.txt"]}]
    a.write_config(hooks=hooks)
    a.commit("notes")
    a.ok("deploy")
    first = a.current()
    notes = release_dir(a, first) / "notes.txt"
    before = notes.read_text()
    a.set_version("2")
    a.ok("deploy")
    assert notes.read_text() == before  # the hook's declared output was copied, not linked
    # A hook writing a file it did not declare fails loudly instead of changing the live release.
    (a.path / "other.txt").write_text("shipped\n")
    a.write_config(hooks=[{"name": "scribble", "run": "echo scribbled >> other.txt"}])
    a.commit("other")
    a.ok("deploy")  # other.txt is new here: this release's own file
    live = a.current()
    a.set_version("3")
    p = a.fab("deploy")
    assert p.returncode == 5, p.stderr
    assert "hook scribble" in error_line(p)
    assert (release_dir(a, live) / "other.txt").read_text() == "shipped\nscribbled\n"
    assert a.current() == live


# 5. Rollback follows what was live before what; the release rolled back from is never a target.
def test_rollback_after_rollback_goes_further_back(new_app: App) -> None:
    a = new_app
    a.write_config(keep_releases=2)
    a.commit("keep-2")
    ids = []
    for v in ("1", "2", "3"):
        a.set_version(v)
        a.ok("deploy")
        ids.append(a.current())
    a.ok("rollback")
    assert a.current() == ids[1]
    a.set_version("4")
    a.ok("deploy")
    v4 = a.current()
    assert release_dir(a, ids[1]).is_dir(), "cleanup removed the release fab rollback would pick"
    a.ok("rollback")
    assert a.current() == ids[1], f"rolled back from {v4} to {a.current()}, not to {ids[1]}"
    a.wait_version("2")


# 7. A first release that failed its health check is never a rollback target.
def test_unhealthy_first_release_is_no_rollback_target(new_app: App) -> None:
    a = new_app
    a.write_config(health={"path": "/movie", "contains": "no such text", "timeout": 10, "attempts": 1})
    a.commit("unhealthy")
    p = a.fab("deploy", "--json")
    assert p.returncode == 7, p.stderr
    doc = json.loads(p.stdout)
    assert doc["error"]["host"] == "sandbox"  # 12. every host error names its host
    broken = a.current()
    assert (release_dir(a, broken) / ".release" / "state").read_text().strip() != "finished"
    a.write_config(health={"path": "/movie", "contains": "Godfather", "timeout": 20})
    a.commit("healthy")
    a.ok("deploy")
    p = a.fab("rollback")
    assert p.returncode == 6, p.stderr
    assert a.current() != broken


# 8. The lock: a remote step still running is not "stale"; unlock refuses under it; TERM is Ctrl-C.
def test_lock_of_a_running_remote_step_is_not_stale(new_app: App) -> None:
    a = new_app
    a.ok("deploy")
    a.write_config(hooks=[{"name": "slow", "run": "sleep 12.345"}])
    a.commit("slow")
    proc = start(a, "deploy")
    wait_for("^sleep 12.345", a.sb.user.name)
    proc.kill()
    proc.communicate(timeout=30)
    p = a.fab("deploy", "--json")
    assert p.returncode == 4, p.stderr
    line = error_line(p)
    assert "stale" not in line and "still running" in line, line
    assert json.loads(p.stdout)["error"]["host"] == "sandbox"  # 12.
    p = a.fab("unlock")
    assert p.returncode == 4 and "--force" in error_line(p), p.stderr
    assert (a.deploy_to / ".lock").exists()
    deadline = time.monotonic() + 60
    while (a.deploy_to / ".lock").exists():  # once the orphaned step has ended, a plain unlock clears it
        p = a.fab("unlock")
        assert p.returncode in (0, 4) and time.monotonic() < deadline, p.stderr
        time.sleep(0.5)
    assert "stale" in p.stderr or "removed lock" in p.stderr, p.stderr
    a.write_config()
    a.commit("fast")
    a.ok("deploy")


def test_sigterm_during_prepare_is_like_ctrl_c(new_app: App) -> None:
    a = new_app
    a.ok("deploy")
    live = a.current()
    a.write_config(hooks=[{"name": "slow", "run": "sleep 21.5"}])
    a.commit("slow")
    proc = start(a, "deploy")
    wait_for("^sleep 21.5", a.sb.user.name)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not (a.deploy_to / ".lock").exists()
    assert a.current() == live


def test_forced_unlock_never_lets_the_first_deploy_take_the_second_ones_lock(new_app: App) -> None:
    a = new_app
    a.ok("deploy")
    a.write_config(hooks=[{"name": "slow", "run": "sleep 6.25"}])
    a.commit("slow")
    first = start(a, "deploy")
    wait_for("^sleep 6.25", a.sb.user.name)
    a.ok("unlock", "--force")
    a.write_config(hooks=[{"name": "slow", "run": "sleep 14.75"}])
    a.commit("slower")
    second = start(a, "deploy")
    wait_for("^sleep 14.75", a.sb.user.name)
    _, err = first.communicate(timeout=120)
    assert first.returncode != 0, err
    assert "lock" in err
    assert (a.deploy_to / ".lock").exists(), "the first deploy removed the second one's lock"
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err


# 9. known_hosts: never rewritten, markers honoured, gateways checked.
def test_known_hosts_appended_never_rewritten(new_app: App) -> None:
    a = new_app
    ssh = a.home / ".ssh"
    ssh.mkdir(exist_ok=True)
    other = a.home / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kt, kb = (a.home / "other_key.pub").read_text().split()[:2]
    text = (
        "# my hosts, keep this comment\n"
        f"web1,10.0.0.5 {kt} {kb}\n"
        f"@cert-authority *.example.com {kt} {kb}\n"
        f"@revoked other.example.com {kt} {kb}\n"
    )
    known = ssh / "known_hosts"
    known.write_text(text)
    try:
        p = a.fab("releases")
        assert p.returncode == 0, p.stderr
        after = known.read_text()
        assert after.startswith(text), after
        added = after[len(text) :].splitlines()
        host_key = (a.sb.root / "ssh_host_ed25519_key.pub").read_text().split()
        assert added == [f"[{a.sb.bind}]:{a.sb.ssh_port} {host_key[0]} {host_key[1]}"], after
        a.ok("releases")
        assert known.read_text() == after  # known now: nothing more written
        # A revoked host key is refused.
        known.write_text(text + f"@revoked [{a.sb.bind}]:{a.sb.ssh_port} {host_key[0]} {host_key[1]}\n")
        p = a.fab("releases")
        assert p.returncode == 3 and "revoked" in error_line(p), p.stderr
    finally:
        shutil.rmtree(ssh)


def test_gateway_host_key_is_checked(new_app: App) -> None:
    a = new_app
    sb = a.sb
    other = a.home / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kt, kb = (a.home / "other_key.pub").read_text().split()[:2]
    host_key = (sb.root / "ssh_host_ed25519_key.pub").read_text().split()
    known = a.home / "known_hosts_gw"
    # The target's key is right, the gateway's is wrong.
    known.write_text(f"[{sb.bind}]:{sb.ssh_port} {kt} {kb}\n[localhost]:{sb.ssh_port} {host_key[0]} {host_key[1]}\n")
    cfg = a.home / "ssh_config_gw"
    common = f"    Port {sb.ssh_port}\n    User {sb.user.name}\n    IdentityFile {sb.key}\n    UserKnownHostsFile {known}\n"
    cfg.write_text(f"Host gw\n    HostName {sb.bind}\n{common}Host viagw\n    HostName localhost\n    ProxyJump gw\n{common}")
    env = dict(os.environ, HOME=str(a.home), PYTHONPATH=str(REPO_ROOT))
    argv = fab_argv(sb, "releases")
    argv[argv.index("-S") + 1] = str(cfg)
    argv[argv.index("-H") + 1] = "viagw"
    p = subprocess.run(argv, cwd=a.path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, p.stderr
    assert "host key mismatch" in error_line(p) and "gateway" in error_line(p)


# 10. No phase script, variable or hook command shows in `ps`.
def test_phase_scripts_and_hooks_not_in_ps(new_app: App) -> None:
    a = new_app
    token = "tok-7f3a9c"
    a.write_config(hooks=[{"name": "slow", "run": f": {token}; sleep 3.217"}])
    a.commit("token")
    proc = start(a, "deploy")
    wait_for("^sleep 3.217", a.sb.user.name)
    cmdlines = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert token not in cmdlines
    assert "DEPLOY_TO=" not in cmdlines and "lock_acquire" not in cmdlines


# 12. Exit codes mean what the README says, and every error names its host.
def test_reload_with_nothing_deployed(new_app: App) -> None:
    p = new_app.fab("reload", "--json")
    assert p.returncode == 8, p.stderr
    doc = json.loads(p.stdout)
    assert doc["error"]["host"] == "sandbox" and "nothing deployed" in doc["error"]["message"]


def test_wheels_failure_is_a_step_failure_with_its_host(new_app: App) -> None:
    a = new_app
    a.ok("deploy")
    live = a.current()
    (a.path / "requirements.txt").write_text("no-such-package-fabdeploy-wheels==1.0\n")
    a.write_config(wheels=True)
    a.commit("wheels")
    p = a.fab("deploy", "--json")
    assert p.returncode == 5, p.stderr
    doc = json.loads(p.stdout)
    assert doc["error"]["host"] == "sandbox" and "wheels" in doc["error"]["message"]
    assert a.current() == live and not (a.deploy_to / ".lock").exists()


def test_connection_error_names_its_host(new_app: App) -> None:
    a = new_app
    cfg = a.home / "ssh_config_refused"
    cfg.write_text(f"Host sandbox\n    HostName {a.sb.bind}\n    Port 9\n    User {a.sb.user.name}\n")
    env = dict(os.environ, HOME=str(a.home), PYTHONPATH=str(REPO_ROOT))
    argv = fab_argv(a.sb, "status", "--json")
    argv[argv.index("-S") + 1] = str(cfg)
    p = subprocess.run(argv, cwd=a.path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, p.stderr
    assert json.loads(p.stdout)["error"]["host"] == "sandbox"


def test_a_vhost_installed_before_the_wrapper_is_wrapped(new_app: App) -> None:
    """Hosts set up by an earlier version have the vhost without <IfDefine>: the next deploy still works."""
    a = new_app
    a.ok("deploy")
    vhost = a.sb.sites_dir / f"{a.name}.conf"
    lines = vhost.read_text().splitlines(keepends=True)
    assert lines[0].startswith("<IfDefine !fabdeploy_candidate_")
    vhost.write_text("".join(lines[1:-1]))  # as an earlier version installed it
    a.set_version("2")
    a.ok("deploy")
    assert vhost.read_text().splitlines(keepends=True) == lines
    a.wait_version("2")


# 13. Daemon processes that cannot write shared/run leave no markers, and a deploy would wait them out
# ("not loaded" after 80 s). A vhost naming such processes is refused at once, naming the fix.
def test_daemon_processes_that_cannot_write_shared_run_are_refused(new_app: App) -> None:
    a = new_app
    health = {"path": "/movie", "contains": "Godfather", "timeout": 20}
    a.ok("deploy")
    live = served(a)
    assert len(live) == 1 and None not in live
    # Without daemon.user and daemon.group mod_wsgi runs them as Apache's User and Group (www-data), outside
    # the group fab setup gave shared/run to (the deploy user's, from the config before).
    a.write_config(health=health, daemon={"processes": 2, "threads": 5})
    a.commit("apache's user")
    t0 = time.monotonic()
    p = a.fab("deploy")
    took = time.monotonic() - t0
    assert p.returncode == 5, f"{p.returncode}\n{p.stdout}\n{p.stderr}"
    line = error_line(p)
    assert "www-data" in line and "shared/run" in line and "fab setup" in line, line
    assert took < 30, f"{took:.1f} s: it waited for markers instead of refusing"
    assert served(a) == live
    # Setup gives shared/run to the processes' group, and the deploy goes through.
    a.ok("setup")
    assert (a.deploy_to / "shared" / "run").group() == "www-data"
    a.ok("deploy")
    assert served(a) != live


# 14. daemon.user alone: mod_wsgi runs the processes in Apache's group, not in the user's own, so that is
# the group shared/run needs (setup gave it the user's own group: no marker could be written).
def test_daemon_user_alone_runs_in_apaches_group(daemon_host: Sandbox, tmp_path: Path) -> None:
    a = make_app(daemon_host, tmp_path, "daemon", name="nlnobody")
    try:
        a.write_config(daemon={"user": "nobody", "processes": 2, "threads": 5})
        a.commit("nobody")
        a.ok("setup")
        assert (a.deploy_to / "shared" / "run").group() == "www-data"
        a.ok("deploy")
        assert served(a) != {None}
    finally:
        shutil.rmtree(a.deploy_to, ignore_errors=True)
        (daemon_host.sites_dir / "nlnobody.conf").unlink(missing_ok=True)
        subprocess.run([str(daemon_host.apachectl), "graceful"], capture_output=True)
