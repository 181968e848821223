"""A throw-away local host: a real OpenSSH sshd and a real Apache 2.4 + mod_wsgi on loopback.

`Sandbox(user, apache=False)` is a light host: sshd only (with `netns=True`, many of them are cheap; the
fleet-scale benchmark starts 50). Its deploy_to dir exists, owned by the deploy user; nothing serves HTTP.

Used by the integration tests, the benchmarks and `python -m tests.sandbox` (the README's demo).
Everything it starts is stopped by pid and everything it creates (user, sudoers rule, files)
is removed again; the system's own sshd and Apache services are never touched.
Needs root and the Debian packages openssh-server, apache2, libapache2-mod-wsgi-py3 and sudo.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

APACHE_BIN = "/usr/sbin/apache2"
SSHD_BIN = "/usr/sbin/sshd"
MODULES = "/usr/lib/apache2/modules"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 15.0, netns: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


CMD_TIMEOUT = 60  # seconds: no set-up command (ip, ssh-keygen, apachectl, useradd) hangs a test or a benchmark


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=CMD_TIMEOUT)


@dataclass
class DeployUser:
    """A local account that the deploy logs in as; created and removed by us when new."""

    name: str
    created: bool = False

    @classmethod
    def ensure(cls, name: str) -> DeployUser:
        try:
            pwd.getpwnam(name)
            return cls(name, created=False)
        except KeyError:
            pass
        _run("useradd", "--create-home", "--shell", "/bin/bash", name)
        # A locked password ('!') makes sshd refuse the account when PAM is off; '*' only
        # forbids password logins, which is what a key-only deploy user wants.
        _run("usermod", "-p", "*", name)
        # Embedded mode runs the app as Apache's user: the deploy user gives it the shared paths (README).
        _run("usermod", "-aG", "www-data", name)
        return cls(name, created=True)

    @property
    def home(self) -> Path:
        return Path(pwd.getpwnam(self.name).pw_dir)

    def remove(self) -> None:
        if not self.created:
            return
        # userdel refuses a user with a process left; one killed a moment ago may not be reaped yet (a user of
        # a completed run was found left behind once): kill and try again, then say so instead of passing.
        for _ in range(25):
            subprocess.run(["pkill", "-KILL", "-u", self.name], capture_output=True)
            done = subprocess.run(["userdel", "--remove", self.name], capture_output=True, text=True)
            if done.returncode in (0, 6):  # 6: no such user
                return
            time.sleep(0.2)
        print(f"sandbox: could not remove user {self.name}: {done.stderr.strip()}", file=sys.stderr)


@dataclass
class Sandbox:
    """One host: sshd + Apache on 127.0.0.1, a deploy user reaching apachectl through sudo."""

    user: DeployUser
    mpm: str = "event"
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fabdeploy-")))
    host_alias: str = "sandbox"
    bind: str = "127.0.0.1"
    ssh_port: int = 0
    http_port: int = 0
    sshd_log_level: str = "DEBUG1"
    sshd_extra: str = ""
    # In its own network namespace (a "remote" host at 10.231.N.2, reached over a veth pair).
    netns: bool = False
    # With netns: the host sees its root at this path too (a private bind mount for sshd and Apache),
    # so that several hosts can share one config (deploy_to, apachectl, sites dir) as real hosts do.
    common_root: str | None = None
    # False: sshd only (a light host: no Apache, no sudoers rule); deploy_to is still made for the user.
    apache: bool = True
    _ns: str | None = None
    _sshd: subprocess.Popen[bytes] | None = None
    _sudoers: Path | None = None

    # ---- paths
    @property
    def key(self) -> Path:
        return self.root / "client_key"

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh_config"

    @property
    def sshd_log(self) -> Path:
        return self.root / "sshd.log"

    @property
    def apachectl(self) -> Path:
        return self.root / "bin" / "apachectl"

    @property
    def apache_root(self) -> Path:
        return self.root / "apache"

    @property
    def sites_dir(self) -> Path:
        return self.apache_root / "sites"

    @property
    def error_log(self) -> Path:
        return self.apache_root / "logs" / "error.log"

    @property
    def access_log(self) -> Path:
        return self.apache_root / "logs" / "access.log"

    @property
    def deploy_to(self) -> Path:
        return self.root / "srv"

    # ---- lifecycle
    def start(self) -> Sandbox:
        try:
            return self._start()
        except BaseException:
            self.stop()  # a half-started sandbox leaves nothing behind either
            raise

    def _start(self) -> Sandbox:
        self.root.chmod(0o755)
        if self.netns:
            self._make_netns()
            self.ssh_port, self.http_port = self.ssh_port or 22, self.http_port or 80
        self.ssh_port = self.ssh_port or free_port(self.bind)
        self.http_port = self.http_port or free_port(self.bind)
        self._start_sshd()
        if self.apache:
            self._start_apache()
        else:
            self._make_deploy_to()
        return self

    def _in_ns(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self._ns, *argv] if self._ns else argv

    def on_host(self, path: Path) -> str:
        """`path` (below root) as the host's processes see it."""
        if self.common_root:
            return f"{self.common_root}/{path.relative_to(self.root)}"
        return str(path)

    def _make_netns(self) -> None:
        # Another rig (a test run next to a benchmark) may take an index between our look and our claim:
        # the namespace and the veth pair are the claims; when either is taken, try the next index.
        for idx in range(1, 250):
            veth = f"fdv{idx}"
            if subprocess.run(["ip", "link", "show", veth], capture_output=True, timeout=CMD_TIMEOUT).returncode == 0:
                continue
            ns = f"fabdeploy{idx}"
            if subprocess.run(["ip", "netns", "add", ns], capture_output=True, timeout=CMD_TIMEOUT).returncode != 0:
                continue  # that namespace is someone else's
            self._ns = ns
            pair = ["ip", "link", "add", veth, "type", "veth", "peer", "name", f"fdp{idx}"]
            if subprocess.run(pair, capture_output=True, timeout=CMD_TIMEOUT).returncode != 0:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=CMD_TIMEOUT)
                self._ns = None
                continue
            break
        else:
            raise RuntimeError("no free veth index for a sandbox namespace")
        _run("ip", "link", "set", f"fdp{idx}", "netns", ns)
        _run("ip", "addr", "add", f"10.231.{idx}.1/30", "dev", veth)
        _run("ip", "link", "set", veth, "up")
        _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"10.231.{idx}.2/30", "dev", f"fdp{idx}")
        _run("ip", "netns", "exec", ns, "ip", "link", "set", f"fdp{idx}", "up")
        _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        self.bind = f"10.231.{idx}.2"

    def stop(self) -> None:
        pid = self.apache_pid()
        if pid:
            _kill_and_wait(pid)
        if self._sshd is not None:
            self._sshd.terminate()
            try:
                self._sshd.wait(10)
            except subprocess.TimeoutExpired:
                self._sshd.kill()
                self._sshd.wait()
            self._sshd = None
        if self._sudoers is not None:
            self._sudoers.unlink(missing_ok=True)
        # The deploy user's leftovers (e.g. a sleeping hook, a check kept warm) must not outlive the sandbox,
        # whichever path they were started with.
        for root in {str(self.root), self.common_root or str(self.root)}:
            subprocess.run(["pkill", "-KILL", "-u", self.user.name, "-f", "--", root], capture_output=True)
        if self._ns:
            # Deleting the namespace deletes its end of the veth pair, and so the pair.
            subprocess.run(["ip", "netns", "del", self._ns], capture_output=True)
            self._ns = None
        if self.common_root:
            try:
                Path(self.common_root).rmdir()  # only the empty mount point; another host may still use it
            except OSError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- sshd
    def _start_sshd(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        host_key = self.root / "ssh_host_ed25519_key"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key))
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
        keys_dir = self.root / "authorized_keys"
        keys_dir.mkdir(mode=0o755)
        shutil.copy(f"{self.key}.pub", keys_dir / self.user.name)
        (keys_dir / self.user.name).chmod(0o644)
        conf = self.root / "sshd_config"
        conf.write_text(
            f"""Port {self.ssh_port}
ListenAddress {self.bind}
HostKey {host_key}
PidFile {self.root}/sshd.pid
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile {keys_dir}/%u
StrictModes no
AllowUsers {self.user.name}
LogLevel {self.sshd_log_level}
MaxSessions 50
MaxStartups 100:30:200
Subsystem sftp internal-sftp
{self.sshd_extra}
"""
        )
        argv = [SSHD_BIN, "-f", str(conf), "-D", "-E", str(self.sshd_log)]
        if self.common_root:
            Path(self.common_root).mkdir(parents=True, exist_ok=True)
            mount = f'mount --bind {shlex.quote(str(self.root))} {shlex.quote(self.common_root)} && exec "$@"'
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh", *argv]
        self._sshd = subprocess.Popen(
            self._in_ns(argv),
            stdin=subprocess.DEVNULL,
        )
        wait_for_port(self.bind, self.ssh_port)
        self.ssh_config.write_text(
            f"""Host {self.host_alias}
    HostName {self.bind}
    Port {self.ssh_port}
    User {self.user.name}
    IdentityFile {self.key}
"""
        )

    def exec_requests(self) -> int:
        """How many commands sshd was asked to run so far (exec requests and subsystems)."""
        text = self.sshd_log.read_text(errors="replace")
        return text.count("request exec") + text.count("subsystem request")

    def _make_deploy_to(self) -> None:
        self.deploy_to.mkdir()
        shutil.chown(self.deploy_to, self.user.name)

    # ---- Apache
    def _start_apache(self) -> None:
        ar = self.apache_root
        for sub in ("logs", "run", "sites"):
            (ar / sub).mkdir(parents=True, exist_ok=True)
        # The deploy user installs its own vhost here, as it would in a sites dir it was given.
        shutil.chown(ar / "sites", self.user.name)
        self._make_deploy_to()
        # rewrite and headers: `fab maintenance` (a 503 keyed on a flag file, with Retry-After).
        modules = ["authz_core", "alias", "mime", "dir", "wsgi", "rewrite", "headers", f"mpm_{self.mpm}"]
        loads = "\n".join(f"LoadModule {m}_module {MODULES}/mod_{m}.so" for m in modules)
        (ar / "httpd.conf").write_text(
            f"""ServerRoot "{ar}"
ServerName {self.host_alias}
Listen {self.http_port if self._ns else f"{self.bind}:{self.http_port}"}
{loads}
User www-data
Group www-data
PidFile {ar}/run/httpd.pid
DefaultRuntimeDir {ar}/run
ErrorLog {self.error_log}
LogFormat "%h %t \\"%r\\" %>s %D %{{X-Deploy-Release}}o" timing
# GlobalLog: every request, those of vhosts with a CustomLog of their own (the app's) too.
GlobalLog {ar}/logs/access.log timing
LogLevel warn wsgi:info
TypesConfig /etc/mime.types
WSGISocketPrefix {ar}/run/wsgi
KeepAlive On
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<IfModule mpm_prefork_module>
    StartServers 2
    MinSpareServers 2
    MaxSpareServers 4
    MaxRequestWorkers 30
</IfModule>
IncludeOptional {ar}/sites/*.conf
"""
        )
        bin_dir = self.root / "bin"
        bin_dir.mkdir()
        # apache2ctl look-alike for this sandbox: the deploy user may run it through sudo only.
        self.apachectl.write_text(
            f"""#!/bin/sh
cmd="$1"; [ $# -gt 0 ] && shift
case "$cmd" in
  configtest) exec {APACHE_BIN} -d {ar} -f {ar}/httpd.conf -t "$@" ;;
  start|stop|restart|graceful|graceful-stop)
    exec {APACHE_BIN} -d {ar} -f {ar}/httpd.conf -k "$cmd" "$@" ;;
  *) exec {APACHE_BIN} -d {ar} -f {ar}/httpd.conf "$cmd" "$@" ;;
esac
"""
        )
        self.apachectl.chmod(0o755)
        sudoers = Path("/etc/sudoers.d") / f"fabdeploy-{self.root.name.replace('.', '_')}"
        ctl = {str(self.apachectl), self.on_host(self.apachectl)}
        sudoers.write_text(f"{self.user.name} ALL=(root) NOPASSWD: {', '.join(sorted(ctl))}\n")
        sudoers.chmod(0o440)
        self._sudoers = sudoers
        start = [str(self.apachectl), "start"]
        if self.common_root and self._sshd is not None:
            # Apache must see the same private mount as the deploy user's sessions.
            start = ["nsenter", "-t", str(self._sshd.pid), "-m", "-n", *start]
        else:
            start = self._in_ns(start)
        subprocess.run(start, check=True, capture_output=True)
        wait_for_port(self.bind, self.http_port)

    def ctl(self, *args: str) -> None:
        """apachectl ARGS as the host runs it (in its network namespace and private mount, if any)."""
        argv = [str(self.apachectl), *args]
        if self.common_root and self._sshd is not None:
            argv = ["nsenter", "-t", str(self._sshd.pid), "-m", "-n", *argv]
        else:
            argv = self._in_ns(argv)
        subprocess.run(argv, check=True, capture_output=True)

    def graceful(self, timeout: float = 20.0) -> None:
        """apachectl graceful, returning once the new generation is up: the signal alone returns before
        the config is read again, and a request sent at once may still see the old one."""

        def generations() -> int:
            try:
                return self.error_log.read_text(errors="replace").count("resuming normal operations")
            except FileNotFoundError:
                return 0

        before = generations()
        self.ctl("graceful")
        deadline = time.monotonic() + timeout
        while generations() <= before:
            if time.monotonic() > deadline:
                raise AssertionError(f"apache graceful not done within {timeout}s")
            time.sleep(0.05)

    def apache_pid(self) -> int | None:
        try:
            return int((self.apache_root / "run" / "httpd.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    # ---- HTTP
    def get(self, path: str, host: str = "localhost", timeout: float = 30.0) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection(self.bind, self.http_port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
        finally:
            conn.close()


def _kill_and_wait(pid: int, timeout: float = 15.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def random_user() -> str:
    return "fd" + secrets.token_hex(3)


def app_config(sb: Sandbox, mode: str = "daemon", app: str = "imdb", **over: object) -> dict[str, object]:
    """The `deploy:` section that deploys the example app (example/) to this sandbox."""
    cfg: dict[str, object] = {
        "app": app,
        "path": ".",
        "source": "git",
        "deploy_to": f"{sb.on_host(sb.deploy_to)}/{app}",
        "server_name": f"{app}.test",
        "listen": f"{sb.bind}:{sb.http_port}",
        "wsgi": "imdb.wsgi:application",
        "django_settings": "imdb.settings",
        "mode": mode,
        "static": {"/static/": "staticfiles"},
        "shared_files": ["db.sqlite3"],
        "shared_dirs": ["media"],
        "hooks": [
            # A dependency bump can bring migrations and static files of its own (Django's admin): both name
            # the requirements file among their inputs.
            {
                "name": "migrate",
                "run": "python manage.py migrate --noinput",
                "when_changed": ["*/migrations/*", "requirements.txt"],
            },
            {
                "name": "collectstatic",
                "run": "python manage.py collectstatic --noinput -v0",
                "when_changed": ["*/static/*", "*/settings.py", "requirements.txt"],
                "outputs": ["staticfiles"],
            },
        ],
        "release_header": True,
        "daemon": {"user": sb.user.name, "group": sb.user.name, "processes": 2, "threads": 15},
        "apache": {"ctl": sb.on_host(sb.apachectl), "sudo": True, "sites_dir": sb.on_host(sb.sites_dir), "enable": ""},
    }
    cfg.update(over)
    return cfg


REPO_ROOT = Path(__file__).resolve().parent.parent


def example_repo(sb: Sandbox, dest: Path, mode: str = "daemon", app: str = "imdb", **over: object) -> Path:
    """A git repository at `dest` holding a copy of example/, a one-line fabfile and its config."""
    shutil.copytree(REPO_ROOT / "example", dest, ignore=shutil.ignore_patterns("__pycache__", "db.sqlite3", "staticfiles"))
    (dest / "fabfile.py").write_text("from deploy.tasks import *  # noqa: F403\n")
    cfg = app_config(sb, mode=mode, app=app)
    cfg.update(over)
    (dest / "fabric.json").write_text(json.dumps({"deploy": cfg}, indent=2))
    git = ["git", "-c", "user.email=demo@example.com", "-c", "user.name=demo"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "initial"], cwd=dest, check=True)
    return dest


def slot_roles(deploy_to: Path) -> dict[str, str]:
    """The daemon slots' live.map: live, idle, spare, load, preview, token ({} before there is one)."""
    try:
        text = (deploy_to / "slots" / "live.map").read_text()
    except OSError:
        return {}
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def slot_markers(deploy_to: Path, app: str, kind: str = "ready") -> dict[str, set[int]]:
    """{'a': pids, 'b': pids, 'c': pids}: live processes of each slot with a `kind` marker (shared/run)."""
    out: dict[str, set[int]] = {"a": set(), "b": set(), "c": set()}
    for f in (deploy_to / "shared" / "run").glob(f"{kind}.*"):
        pid = int(f.name.split(".")[1])
        try:
            text = f.read_text()
        except OSError:
            continue
        for slot in out:
            if f"group {app}-{slot}\n" in text and os.path.exists(f"/proc/{pid}"):
                out[slot].add(pid)
    return out


def imported_ahead(deploy_to: Path, pid: int) -> tuple[int, int, float, str] | None:
    """A waiting spare process's 'ahead' line (slot.wsgi's _preimport): modules it imported, modules it holds,
    seconds, and where it stopped ('-': the whole list); None before it has."""
    try:
        text = (deploy_to / "shared" / "run" / f"spare.{pid}").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("ahead "):
            done, held, secs, stop = line.split(" ", 4)[1:]
            return int(done), int(held), float(secs), stop
    return None


def waiting_spare(deploy_to: Path, app: str, processes: int = 2, ahead: bool = False) -> set[int] | None:
    """The spare slot's pids when all `processes` of it wait with Python started and none is loaded (`ahead`:
    and each has imported ahead); None until then (the spare restarts after each flip: ~1 s, Apache's
    respawn tick, then imports ahead)."""
    spare = slot_roles(deploy_to).get("spare", "-")
    if spare == "-":
        return None
    pids = slot_markers(deploy_to, app, "spare")[spare]
    if ahead and not all(imported_ahead(deploy_to, p) for p in pids):
        return None
    return pids if len(pids) >= processes and not slot_markers(deploy_to, app)[spare] else None


def set_version(repo: Path, version: str) -> None:
    """Save the example app's view with another VERSION (what GET /movie reports); nothing committed."""
    views = repo / "movies" / "views.py"
    text = views.read_text()
    start = text.index('VERSION = "')
    end = text.index('"', start + len('VERSION = "'))
    views.write_text(text[:start] + f'VERSION = "{version}"' + text[end + 1 :])


def fab_argv(sb: Sandbox, *args: str) -> list[str]:
    """`fab` against this sandbox, reading only its ssh_config (never ~/.ssh/config)."""
    return [sys.executable, "-m", "fabric", "-S", str(sb.ssh_config), "-H", sb.host_alias, *args]


def demo(argv: list[str] | None = None) -> int:
    """The README's demo: a real deploy of the example app to a sandbox host on loopback."""
    ap = argparse.ArgumentParser(prog="python -m tests.sandbox", description=demo.__doc__)
    ap.add_argument("--mode", choices=("daemon", "embedded"), default="daemon")
    ap.add_argument("--no-wait", action="store_true", help="stop the sandbox right after the deploy")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("the sandbox needs root (it creates a user and starts sshd and Apache)", file=sys.stderr)
        return 2
    user = DeployUser.ensure(random_user())
    sb = Sandbox(user, mpm="event" if args.mode == "daemon" else "prefork")
    try:
        sb.start()
        repo = example_repo(sb, sb.root / "app", args.mode)
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        for task in ("setup", "deploy", "change", "plan", "deploy", "status"):
            if task == "change":  # a code change to plan and ship
                set_version(repo, "2")
                git = ["git", "-c", "user.email=demo@example.com", "-c", "user.name=demo"]
                subprocess.run([*git, "commit", "-qam", "Version 2 of the movie list"], cwd=repo, check=True)
                print("$ git commit -am 'Version 2 of the movie list'   # VERSION = \"2\" in movies/views.py", flush=True)
                continue
            print(f"$ fab -H {sb.host_alias} {task}", flush=True)
            if subprocess.run(fab_argv(sb, task), cwd=repo, env=env).returncode != 0:
                return 1
        status, headers, body = sb.get("/movie", host="imdb.test")
        print(
            f"\nGET http://{sb.bind}:{sb.http_port}/movie (Host: imdb.test) -> {status}, "
            f"release {headers.get('x-deploy-release')}"
        )
        print(body[:300] + ("..." if len(body) > 300 else ""))
        if not args.no_wait:
            print(f"\ntry: curl -H 'Host: imdb.test' http://{sb.bind}:{sb.http_port}/movie")
            print(f"     cd {repo} && {' '.join(fab_argv(sb, 'releases'))}")
            print("Ctrl-C stops the sandbox and removes everything it made.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0 if status == 200 else 1
    finally:
        sb.stop()
        user.remove()


if __name__ == "__main__":
    sys.exit(demo())
