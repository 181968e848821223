"""The Fabric tasks: `fab deploy`, `rollback`, `reload`, `setup`, `status`, `releases`, `unlock`.

Thin on purpose: read the config, pick the hosts, call deploy.api, turn errors into exit codes.
Hosts come from `-H` (one task run per host, as Fabric does) or, without `-H`, from the stage
(`--stage NAME`, else `deploy.default_stage`), like Capistrano's `cap production deploy`.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fabric import Connection, task
from invoke.context import Context
from invoke.exceptions import Exit

from deploy import api, config, fleet
from deploy.connect import connection
from deploy.errors import ConfigError, DeployError
from deploy.output import Reporter

F = TypeVar("F", bound=Callable[..., Any])


def _boundary(fn: F) -> F:
    """The one place errors become a one-line message and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DeployError as exc:
            raise Exit(f"error: {exc}", code=exc.exit_code) from exc
        except KeyboardInterrupt as exc:
            raise Exit("interrupted: the live release was not changed by the unfinished step; lock released", code=130) from exc

    return wrapper  # type: ignore[return-value]


def _settings(c: Context, stage: str | None) -> config.Settings:
    return config.load(c.config.get("deploy"), stage=stage)


def _project_dir(c: Context) -> Path:
    prefix = getattr(c.config, "_project_prefix", None)
    return Path(prefix) if prefix else Path(os.getcwd())


_HANDLED: set[str] = set()


def cli_hosts(argv: list[str] | None = None) -> list[str]:
    """The hosts given with -H/--hosts to this `fab` run."""
    args = sys.argv[1:] if argv is None else argv
    hosts: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-H", "--hosts") and i + 1 < len(args):
            hosts += args[i + 1].split(",")
            i += 1
        elif a.startswith("--hosts="):
            hosts += a.split("=", 1)[1].split(",")
        elif a.startswith("-H") and len(a) > 2:
            hosts += a[2:].split(",")
        i += 1
    return [h for h in hosts if h]


def _targets(c: Context, s: config.Settings, task_name: str) -> list[Connection]:
    """Every host this task works on, all at once.

    Fabric calls a task once per `-H` host, each with its own Connection; a fleet deploy must see
    them all (prepare everywhere before any switch). So the first call takes the whole -H list and
    the later calls of the same task do nothing.
    """
    if isinstance(c, Connection):
        hosts = cli_hosts()
        if len(hosts) <= 1:
            return [c]
        if task_name in _HANDLED:
            return []
        _HANDLED.add(task_name)
        return [c] + [connection(h, c.config) for h in hosts[1:]]
    if not s.hosts:
        raise ConfigError("no host to work on: pass -H HOST, or set deploy.hosts or a stage's hosts")
    return [connection(h, c.config) for h in s.hosts]


@task(
    help={
        "ref": "git ref to deploy (default: deploy.ref, HEAD)",
        "stage": "stage from deploy.stages",
        "no-rollback": "keep a release that fails its health check live, for debugging",
        "parallel": "how many hosts to work on at once (default 10; 1 = one after another)",
        "batch": "switch N hosts (or N%) at a time, health-checking each batch (default: all at once)",
        "rollback-all-on-failure": "with --batch: a failed batch also rolls back the earlier batches",
    }
)
@_boundary
def deploy(
    c: Context,
    ref: str | None = None,
    stage: str | None = None,
    no_rollback: bool = False,
    parallel: int = 10,
    batch: str | None = None,
    rollback_all_on_failure: bool = False,
) -> None:
    """Ship the app as a new release to every host, prepare it everywhere, then switch, reload, health-check."""
    s = _settings(c, stage)
    conns = _targets(c, s, "deploy")
    if not conns:
        return
    rep = Reporter()
    project = _project_dir(c)
    try:
        runs = fleet.deploy(
            conns,
            s,
            project,
            ref,
            rep,
            parallel=parallel,
            batch=batch,
            rollback_all_on_failure=rollback_all_on_failure,
            rollback_on_failure=not no_rollback,
        )
    except fleet.FleetError as exc:
        print(fleet.table(exc.runs), file=sys.stderr)
        raise
    for r in runs:
        rep.line(r.name, f"deployed {r.plan.release_id if r.plan else '-'} (was {r.previous or 'nothing'}) in {r.seconds:.2f}s")
    if len(runs) > 1:
        print(fleet.table(runs), file=sys.stderr)


@task(help={"to": "release id to go back to (default: the one before the live one)", "stage": "stage from deploy.stages"})
@_boundary
def rollback(c: Context, to: str | None = None, stage: str | None = None) -> None:
    """Point `current` back at the previous finished release (or --to ID) and reload."""
    s = _settings(c, stage)
    rep = Reporter()
    for conn in _targets(c, s, "rollback"):
        r = api.rollback(conn, s, to, rep)
        rep.line(r.host, f"rolled back {r.previous} -> {r.release} in {r.seconds:.2f}s")


@task(help={"stage": "stage from deploy.stages", "strategy": "rolling, touch or graceful (default: by mode, see README)"})
@_boundary
def reload(c: Context, stage: str | None = None, strategy: str | None = None) -> None:
    """Reload the live release: rolling daemon restart, touch of the WSGI script, or apachectl graceful."""
    s = _settings(c, stage)
    rep = Reporter()
    for conn in _targets(c, s, "reload"):
        r = api.reload(conn, s, rep, strategy)
        rep.line(r.host, f"reloaded in {r.seconds:.2f}s")


@task(help={"stage": "stage from deploy.stages"})
@_boundary
def setup(c: Context, stage: str | None = None) -> None:
    """Create <deploy_to>/releases and shared/, install and enable the vhost, check Apache's config."""
    s = _settings(c, stage)
    rep = Reporter()
    for conn in _targets(c, s, "setup"):
        r = api.setup(conn, s, _project_dir(c), rep)
        rep.line(r.host, f"set up {s.deploy_to} in {r.seconds:.2f}s")


@task(help={"stage": "stage from deploy.stages"})
@_boundary
def status(c: Context, stage: str | None = None) -> None:
    """Show the live release, the mode the app really runs in (from the app itself) and Apache's MPM."""
    s = _settings(c, stage)
    conns = _targets(c, s, "status")
    found = fleet.each(conns, lambda conn: api.status(conn, s).details, parallel=10)
    for exc in found.failed.values():
        raise exc
    currents = {found[conn]["current"] for conn in conns}
    if len(currents) > 1:
        print(f"hosts disagree on the current release: {', '.join(sorted(str(x) for x in currents))}")
    for conn in conns:
        d = found[conn]
        app = d.get("app") or {}
        rev = next((r["revision"] for r in d["releases"] if r["id"] == d["current"]), "-")
        print(f"{d['host']}: current {d['current'] or '-'} ({rev[:12]})")
        print(f"  mode {d['mode'] or 'unknown'}, mpm {d['mpm'] or 'unknown'}, app says: {app}")
        if d.get("lock"):
            print(f"  LOCKED: {d['lock']}")
        for line in d.get("log") or []:
            print(f"  log: {line}")


@task(help={"stage": "stage from deploy.stages"})
@_boundary
def releases(c: Context, stage: str | None = None) -> None:
    """List the releases on the host: id, state, revision; '*' marks the live one."""
    s = _settings(c, stage)
    for conn in _targets(c, s, "releases"):
        d = api.status(conn, s).details
        print(f"{d['host']}:")
        for r in d["releases"]:  # type: ignore[attr-defined]
            mark = "*" if r["id"] == d["current"] else " "
            print(f" {mark} {r['id']}  {r['state']:<9} {r['revision'][:12]}")


@task(help={"stage": "stage from deploy.stages"})
@_boundary
def unlock(c: Context, stage: str | None = None) -> None:
    """Remove the deploy lock a killed deploy left behind (check that none is running first)."""
    s = _settings(c, stage)
    for conn in _targets(c, s, "unlock"):
        held: Any = api.unlock(conn, s).details.get("lock")
        msg = f"removed lock held by {held.get('owner')}@{held.get('host')} pid {held.get('pid')}" if held else "no lock"
        print(f"{conn.original_host}: {msg}", file=sys.stderr)


__all__ = ["deploy", "releases", "reload", "rollback", "setup", "status", "unlock"]
