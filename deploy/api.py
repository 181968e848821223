"""The Python API: `deploy`, `plan`, `rollback`, `reload`, `setup`, `unlock`, `status`, `watch` on hosts.

A facade over `fleet` (every task that changes hosts, in parallel, all-or-none) and `planning` (the
read-only plan); the tasks in deploy/tasks.py call only this module and deploy/output.py. Each function
takes one Connection or several and returns one `Result` per host, in the order given; a failure raises
a DeployError (one host: its own error; several: a FleetError naming each host's).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from fabric import Config, Connection

from deploy import fleet, release, reloading, render, secrets
from deploy.config import Settings, load
from deploy.connect import connection, open_connection
from deploy.errors import CheckFailed, CommandExited, ConfigError, DeployError, FleetError, InMaintenance
from deploy.output import Reporter

Hosts: TypeAlias = "Connection | Sequence[Connection]"  # one host, or several


@dataclass
class Result:
    """What a task did on one host (the JSON document's host entry, plus `details`)."""

    host: str
    action: str
    result: str = "ok"
    release: str | None = None
    previous: str | None = None
    revision: str | None = None
    seconds: float = 0.0
    reload: str | None = None
    health: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Project:
    """An app's deploy config read as `fab` reads it, for scripts: `deploy.project("path/to/app")`."""

    path: Path
    settings: Settings
    config: Config

    def connections(self, hosts: list[str] | tuple[str, ...] | None = None) -> list[Connection]:
        """Connections to `hosts` (default: the stage's hosts), each with its own copy of the config."""
        return connections(list(hosts or self.settings.hosts), self.config)


def project(path: Path | str = ".", stage: str | None = None, ssh_config: Path | str | None = None) -> Project:
    """Read the app's config like `fab` does (fabric.yaml/json/py in `path`, ~/.fabric.yaml, /etc/fabric.yaml,
    FABRIC_* environment variables) and validate its `deploy:` section for `stage`."""
    where = Path(path).resolve()
    config = Config(project_location=str(where), runtime_ssh_path=str(ssh_config) if ssh_config else None)
    config.load_project()
    config.load_shell_env()
    config.load_ssh_config()
    return Project(where, load(config.get("deploy"), stage=stage), config)


def settings(raw: Any, stage: str | None = None) -> Settings:
    """The `deploy:` section of a Fabric config, validated for `stage` (ConfigError names what to fix)."""
    return load(raw, stage=stage)


def connections(names: Sequence[str], config: Config) -> list[Connection]:
    """One Connection per host name, each with a config of its own (see deploy.connect.connection)."""
    if not names:
        raise ConfigError("no host to work on: pass -H HOST, or set deploy.hosts or a stage's hosts")
    return [connection(h, config) for h in names]


def _list(hosts: Hosts) -> list[Connection]:
    return [hosts] if isinstance(hosts, Connection) else list(hosts)


def _result(action: str, run: fleet.HostRun, revision: str | None = None) -> Result:
    return Result(
        run.name, action, run.result, run.release_id or None, run.previous, revision, round(run.seconds, 3), run.reload,
        run.health, run.details,
    )


def deploy(
    hosts: Hosts,
    s: Settings,
    project_dir: Path,
    ref: str | None = None,
    reporter: Reporter | None = None,
    parallel: int = 10,
    batch: str | int | None = None,
    rollback_all_on_failure: bool = False,
    rollback_on_failure: bool = True,
    keep_maintenance: bool = False,
    force: bool = False,
) -> list[Result]:
    """Ship, prepare, switch and reload every host; on any failure the live release stays (or is again) live.
    A host in maintenance refuses (InMaintenance, exit 10) unless `keep_maintenance`. When every host already
    runs exactly this release (revision, files, dependencies, settings), nothing is deployed: each Result
    says 'unchanged'; `force` deploys anyway.

    Every host prepares before any switches (all-or-none), or batch by batch with `batch`. A failed health
    check after the switch rolls back in the same SSH command, unless `rollback_on_failure` is false
    (`fab deploy --no-rollback`). See deploy.fleet for the failure rules.
    """
    conns = _list(hosts)
    connecting = fleet.Connecting(conns, parallel)  # the handshakes go on while the source is read
    render.preload()  # and Jinja2's import, while git runs
    try:
        src = release.load_source(s, project_dir, ref)
        s = secrets.resolve(s)  # once for every host, before any command runs on one
        runs = fleet.deploy(
            conns, s, project_dir, ref, reporter, parallel, batch, rollback_all_on_failure, rollback_on_failure, src,
            keep_maintenance=keep_maintenance, force=force, connecting=connecting,
        )
    finally:
        connecting.close()
    return [_result("deploy", r, src.revision) for r in runs]


def plan(hosts: Hosts, s: Settings, project_dir: Path, ref: str | None = None, parallel: int = 10) -> list[Result]:
    """What a deploy would do on each host (see deploy.planning); one read-only SSH command each."""
    from deploy import planning  # here: a deploy or rollback does not pay for its imports

    t0 = time.monotonic()
    src = release.load_source(s, project_dir, ref)
    s = secrets.resolve(s)  # the plan compares the values with the host's (never shows them)
    conns = _list(hosts)

    def one(c: Connection) -> Result:
        open_connection(c)
        p = planning.plan(c, s, src, project_dir)
        return Result(c.original_host, "plan", "planned" if p["set_up"] else "not set up", p["release"], p["live_release"],
                      src.revision, time.monotonic() - t0, details=p)

    found = fleet.each(conns, one, parallel)
    for exc in found.failed.values():
        raise exc
    return [found[c] for c in conns]


def rollback(
    hosts: Hosts, s: Settings, to: str | None = None, reporter: Reporter | None = None, parallel: int = 10,
    batch: str | int | None = None,
) -> list[Result]:
    """Point every host back at its previous release (or `to`) and reload; all-or-none (see deploy.fleet)."""
    return [_result("rollback", r) for r in fleet.rollback(_list(hosts), s, to, reporter, parallel, batch)]


def reload(
    hosts: Hosts, s: Settings, reporter: Reporter | None = None, strategy: str | None = None, parallel: int = 10,
    batch: str | int | None = None,
) -> list[Result]:
    """Reload every host's live release (`strategy`: a one-off rolling, touch or graceful) and health-check it."""
    s = reloading.with_strategy(s, strategy)
    return [_result("reload", r) for r in fleet.reload(_list(hosts), s, reporter, parallel, batch)]


def status(hosts: Hosts, s: Settings, parallel: int = 10) -> list[Result]:
    """Each host's live release, processes, health, disk, lock (`details`: see deploy.host.status)."""
    return [_result("status", r) for r in fleet.status(_list(hosts), s, parallel)]


def logs(
    hosts: Hosts,
    s: Settings,
    on_line: Callable[[str, str], None],
    access: bool = False,
    lines: int = 50,
    since: str | int | None = None,
    follow: bool = False,
) -> list[Result]:
    """The app's own error log (`access`: its access log) on every host: each line to on_line(host, line) as it
    comes; the last `lines`, of the last `since` ('10m', '2h', seconds) only, then new ones while `follow`."""
    if lines < 0:
        raise ConfigError(f"--lines must be 0 or more, got {lines}")
    results = fleet.logs(_list(hosts), s, on_line, access, lines, since_seconds(since), follow)
    return [_result("logs", r) for r in results]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_seconds(since: str | int | None) -> int:
    """'90s', '10m', '2h', '1d' or a number of seconds, as seconds (0: no limit)."""
    if since in (None, ""):
        return 0
    m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", str(since))
    if not m:
        raise ConfigError(f"--since must be like 90s, 10m, 2h or 1d, got {since!r}")
    return int(m.group(1)) * _UNITS[m.group(2) or "s"]


def maintenance(hosts: Hosts, s: Settings, on: bool, project_dir: Path | None = None, message: str | None = None) -> list[Result]:
    """Maintenance mode on every host: on, the vhost answers every request 503 with Retry-After
    (`maintenance_retry_after`) and the page of conf_templates/maintenance.html.j2 (`message` in it); off, the
    app again. No reload, the release untouched. details['maintenance']: what each host did."""

    page = render.maintenance_page(s, project_dir, message) if on else ""
    return [_result("maintenance", r) for r in fleet.maintenance(_list(hosts), s, on, page)]


def exec_command(
    hosts: Hosts,
    s: Settings,
    argv: Sequence[str],
    on_stdout: Callable[[str, bytes], None],
    on_stderr: Callable[[str, bytes], None],
    shell: bool = False,
    terminal: Callable[[Any], None] | None = None,
    size: tuple[int, int] = (80, 24),
    term: str = "xterm",
) -> list[Result]:
    """Run `argv` in the live release of each host (its venv, `home`, python path, environment); `shell`: argv
    is one shell command line. Output goes to on_stdout/on_stderr(host, bytes) as it comes; `terminal` (one
    host): the command gets a pty (see deploy.remote.run_command). details['exit_code']: the command's code
    (exit_error gives the error to end with)."""
    if not [a for a in argv if a.strip()]:
        raise ConfigError("no command given: fab -H HOST exec 'CMD ARGS'")
    runs = fleet.exec_command(_list(hosts), s, argv, on_stdout, on_stderr, shell, terminal, size, term)
    return [_result("exec", r) for r in runs]


def manage_argv(s: Settings, args: Sequence[str]) -> list[str]:
    """`fab manage ARGS`: Django's manage.py in the release's home (where hooks run it too)."""
    if not s.django_settings:
        raise ConfigError("fab manage is for Django apps: set django_settings (or use fab exec)")
    return ["python", "manage.py", *args]


def exit_error(results: Sequence[Result]) -> DeployError | None:
    """CommandExited (exit code: the command's) when a command of `results` ended non-zero, else None."""
    codes = {r.host: int(r.details["exit_code"]) for r in results if r.details.get("exit_code")}
    return CommandExited(codes) if codes else None


def check(hosts: Hosts, s: Settings, parallel: int = 10) -> list[Result]:
    """Each host's prerequisites, changing nothing (`details['checks']`: name, status ok/warn/fail, detail, fix).

    A host whose checks failed has result 'failed' (check_error gives the error to end with); an
    unreachable host raises as in every task.
    """
    return [_result("check", r) for r in fleet.check(_list(hosts), s, parallel)]


def check_error(results: Sequence[Result]) -> DeployError | None:
    """The error for the failed checks of `results` (CheckFailed, exit 9; several hosts: a FleetError), or None."""
    return fleet.check_error([(r.host, r.details["checks"]) for r in results])


def setup(hosts: Hosts, s: Settings, project_dir: Path, reporter: Reporter | None = None, parallel: int = 10) -> list[Result]:
    """Check every host (as `check`; one lacking a prerequisite: CheckFailed, no host changed), then create the
    layout and install the vhost on every host."""
    return [_result("setup", r) for r in fleet.setup(_list(hosts), s, project_dir, reporter, parallel)]


def unlock(hosts: Hosts, s: Settings, force: bool = False) -> list[Result]:
    """Remove each host's lock (`details['lock']`: the one removed); refused while its holder runs, unless `force`."""
    return [_result("unlock", r) for r in fleet.unlock(_list(hosts), s, force)]


def watch(
    c: Connection, s: Settings, project_dir: Path, reporter: Reporter, interval: float = 0.5, seconds: float = 0.0
) -> Result:
    """`fab watch`: ship saved files into a dev host's live release (see deploy.devloop)."""
    from deploy import devloop  # here: only this task needs it

    batches = devloop.watch(c, s, project_dir, reporter, interval=interval, seconds=seconds)
    shipped = [{"shipped": b.shipped, "removed": b.removed, "seconds": round(b.seconds, 3)} for b in batches]
    return Result(c.original_host, "watch", "stopped", details={"batches": shipped})


__all__ = [
    "CheckFailed",
    "CommandExited",
    "ConfigError",
    "DeployError",
    "FleetError",
    "InMaintenance",
    "Project",
    "Result",
    "Settings",
    "check",
    "check_error",
    "connections",
    "exec_command",
    "exit_error",
    "logs",
    "maintenance",
    "manage_argv",
    "deploy",
    "plan",
    "project",
    "reload",
    "rollback",
    "settings",
    "setup",
    "status",
    "unlock",
    "watch",
]
