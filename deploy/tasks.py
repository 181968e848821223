"""The Fabric tasks: `fab deploy`, `rollback`, `reload`, `setup`, `status`, `releases`, `unlock`.

Thin on purpose: read the config, pick the hosts, call deploy.api, turn errors into exit codes.
Hosts come from `-H` (one task run per host, as Fabric does) or, without `-H`, from the stage
(`--stage NAME`, else `deploy.default_stage`), like Capistrano's `cap production deploy`.
"""

from __future__ import annotations

import functools
import inspect
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fabric import Connection, task
from invoke.context import Context
from invoke.exceptions import Exit

from deploy import api, config, fleet
from deploy.connect import connection
from deploy.errors import ConfigError, DeployError
from deploy.output import Reporter, TaskRun, duration

F = TypeVar("F", bound=Callable[..., Any])

JSON_HELP = "print one JSON document on stdout at the end (progress stays on stderr); or set deploy.output: json"
STAGE_HELP = "stage from deploy.stages (default: deploy.default_stage); its settings also apply to hosts given with -H"


def _wants_json(c: Context, flag: bool) -> bool:
    raw = c.config.get("deploy")
    return flag or (hasattr(raw, "get") and raw.get("output") == "json")


def _task(fn: F) -> F:
    """The one place errors become a one-line message and an exit code (and, with --json, a document).

    The task body gets a TaskRun after its Context; Fabric sees the signature without it.
    """

    @functools.wraps(fn)
    def wrapper(c: Context, *args: Any, **kwargs: Any) -> Any:
        run = TaskRun(fn.__name__, _wants_json(c, bool(kwargs.get("json"))), Reporter(), stage=kwargs.get("stage"))
        code, error = 0, None  # type: int, BaseException | None
        restore = _interrupt_on_term()
        try:
            if fn(c, run, *args, **kwargs) is False:
                return None  # a later per-host call of a task that already handled every -H host
        except DeployError as exc:
            code, error = exc.exit_code, exc
            _failed(run, exc)
        except KeyboardInterrupt as exc:
            code, error = 130, exc
            _mark(run, "interrupted")
        finally:
            restore()
            run.reporter.close()
        if run.json:
            print(run.dump(error, code), flush=True)
        if isinstance(error, KeyboardInterrupt):
            why = str(error) or "the live release was not changed by the unfinished step; lock released"
            raise Exit(f"interrupted: {why}", code=130)
        if error is not None:
            raise Exit(f"error: {error}", code=code)
        return None

    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    wrapper.__signature__ = sig.replace(parameters=[params[0], *params[2:]])  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def _interrupt_on_term() -> Callable[[], None]:
    """SIGTERM (a cancelled CI job) and SIGHUP (a closed terminal) stop a task the way Ctrl-C does: the
    hosts' locks are freed and the unfinished release marked failed. Returns what puts the old handlers back."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signals reach the main thread only (the Python API may run tasks elsewhere)
    old = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def restore() -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    return restore


def _failed(run: TaskRun, exc: DeployError) -> None:
    """Each host's part in a failure, for the JSON document."""
    if isinstance(exc, fleet.FleetError):
        for r in exc.runs:
            run.host(r.name, result=r.result, release=r.release_id or None, previous=r.previous, seconds=round(r.seconds, 3))
        return
    _mark(run, "failed", getattr(exc, "host", None))


def _mark(run: TaskRun, result: str, host: str | None = None) -> None:
    """Hosts still pending (all of them, or just `host`) end with `result`."""
    for entry in run.hosts.values():
        if entry["result"] == "pending" and (host is None or entry["host"] == host):
            entry["result"] = result


def _settings(c: Context, stage: str | None, run: TaskRun) -> config.Settings:
    s = config.load(c.config.get("deploy"), stage=stage)
    run.stage = s.stage  # the default stage, when none was given
    return s


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


def _health(rep: Reporter, name: str, s: config.Settings) -> str:
    if not s.health.enabled:
        return "off"
    return "ok" if any(st["step"] == "health" for st in rep.steps.get(name, [])) else "not run"


def _reloaded(rep: Reporter, name: str) -> str | None:
    return next((e[7:] for e in reversed(rep.events.get(name, [])) if e.startswith("reload ")), None)


@task(
    help={
        "ref": "git ref to deploy (default: deploy.ref, HEAD)",
        "stage": STAGE_HELP,
        "no-rollback": "keep a release that fails its health check live, for debugging",
        "parallel": "how many hosts to work on at once (default 10; 1 = one after another)",
        "batch": "switch N hosts (or N%) at a time, health-checking each batch (default: all at once)",
        "rollback-all-on-failure": "with --batch: a failed batch also rolls back the earlier batches",
        "dry-run": "only show what the deploy would do (same as fab plan); nothing changes on the hosts",
        "json": JSON_HELP,
    }
)
@_task
def deploy(
    c: Context,
    run: TaskRun,
    ref: str | None = None,
    stage: str | None = None,
    no_rollback: bool = False,
    parallel: int = 10,
    batch: str | None = None,
    rollback_all_on_failure: bool = False,
    dry_run: bool = False,
    json: bool = False,
) -> bool:
    """Ship the app as a new release to every host, prepare it everywhere, then switch, reload, health-check."""
    if dry_run:
        run.task, run.fields["dry_run"] = "plan", True
        return _plan(c, run, ref, stage)
    s = _settings(c, stage, run)
    conns = _targets(c, s, "deploy")
    if not conns:
        return False
    rep = run.reporter
    for conn in conns:
        run.host(str(conn.original_host))
    try:
        runs = fleet.deploy(
            conns,
            s,
            _project_dir(c),
            ref,
            rep,
            parallel=parallel,
            batch=batch,
            rollback_all_on_failure=rollback_all_on_failure,
            rollback_on_failure=not no_rollback,
        )
    except fleet.FleetError as exc:
        rep.close()
        rep.note(fleet.table(exc.runs))
        raise
    for r in runs:
        release = r.plan.release_id if r.plan else None
        revision = r.plan.revision if r.plan else None
        run.fields.update(release=release, revision=revision)
        run.host(
            r.name,
            result=r.result,
            release=release,
            previous=r.previous,
            revision=revision,
            seconds=round(r.seconds, 3),
            reload=_reloaded(rep, r.name),
            health=_health(rep, r.name, s),
        )
    rep.close()
    if len(runs) > 1:
        rep.note(fleet.table(runs))
    first = run.hosts[runs[0].name]
    rep.note(
        f"deployed {first['release']} (revision {str(first['revision'])[:12]}) to {len(runs)} host{'s' if len(runs) > 1 else ''}"
        f" in {time.monotonic() - run.started:.2f}s; reload: {first['reload'] or s.reload_strategy};"
        f" health check: {first['health']}"
    )
    return True


@task(help={"ref": "git ref to plan for (default: deploy.ref, HEAD)", "stage": STAGE_HELP, "json": JSON_HELP})
@_task
def plan(c: Context, run: TaskRun, ref: str | None = None, stage: str | None = None, json: bool = False) -> bool:
    """Show what a deploy would do on each host (revision, commits, files, venv, hooks, config diffs, reload); changes nothing."""
    return _plan(c, run, ref, stage)


def _plan(c: Context, run: TaskRun, ref: str | None, stage: str | None) -> bool:
    from deploy import planning  # here: a deploy or rollback does not pay for its imports

    s = _settings(c, stage, run)
    conns = _targets(c, s, "plan")
    if not conns:
        return False
    project = _project_dir(c)
    src = api.load_source(s, project, ref)
    run.fields["revision"] = src.revision
    plans = _on_each(run, conns, lambda conn: planning.plan(conn, s, src, project))
    for conn, p in zip(conns, plans, strict=True):
        name = str(conn.original_host)
        run.host(name, result="planned" if p["set_up"] else "not set up", plan=p, release=p["release"], revision=p["revision"])
        run.say(planning.text(name, p))
    return True


@task(help={"to": "release id to go back to (default: the one before the live one)", "stage": STAGE_HELP, "json": JSON_HELP})
@_task
def rollback(c: Context, run: TaskRun, to: str | None = None, stage: str | None = None, json: bool = False) -> bool:
    """Point `current` back at the previous finished release (or --to ID) and reload."""
    s = _settings(c, stage, run)
    conns = _targets(c, s, "rollback")
    for conn in conns:
        run.host(str(conn.original_host))
    for conn in conns:
        r = api.rollback(conn, s, to, run.reporter)
        run.fields["release"] = r.release
        run.host(r.host, result="live", release=r.release, previous=r.previous, seconds=round(r.seconds, 3))
        run.reporter.line(r.host, f"rolled back {r.previous} -> {r.release} in {r.seconds:.2f}s")
    return bool(conns)


@task(help={"stage": STAGE_HELP, "strategy": "rolling, touch or graceful (default: by mode, see README)", "json": JSON_HELP})
@_task
def reload(c: Context, run: TaskRun, stage: str | None = None, strategy: str | None = None, json: bool = False) -> bool:
    """Reload the live release: rolling daemon restart, touch of the WSGI script, or apachectl graceful."""
    s = _settings(c, stage, run)
    conns = _targets(c, s, "reload")
    for conn in conns:
        run.host(str(conn.original_host))
    for conn in conns:
        r = api.reload(conn, s, run.reporter, strategy)
        run.host(
            r.host,
            result="ok",
            seconds=round(r.seconds, 3),
            reload=_reloaded(run.reporter, r.host),
            health=_health(run.reporter, r.host, s),
        )
        run.reporter.line(r.host, f"reloaded in {r.seconds:.2f}s")
    return bool(conns)


@task(help={"stage": STAGE_HELP, "json": JSON_HELP})
@_task
def setup(c: Context, run: TaskRun, stage: str | None = None, json: bool = False) -> bool:
    """Create <deploy_to>/releases and shared/, install and enable the vhost, check Apache's config."""
    s = _settings(c, stage, run)
    conns = _targets(c, s, "setup")
    for conn in conns:
        run.host(str(conn.original_host))
    for conn in conns:
        r = api.setup(conn, s, _project_dir(c), run.reporter)
        run.host(r.host, result="ok", seconds=round(r.seconds, 3))
        run.reporter.line(r.host, f"set up {s.deploy_to} in {r.seconds:.2f}s")
    return bool(conns)


def _status_text(d: dict[str, Any]) -> str:
    rel = next((r for r in d["releases"] if r["id"] == d["current"]), None)
    lines = [f"{d['host']}: live {d['current'] or 'nothing'}" + (f" (revision {rel['revision'][:12]})" if rel else "")]
    if d.get("deployed"):
        dep = d["deployed"]
        lines.append(f"  deployed   {dep['at']} by {dep['by']} ({dep['action']})")
    if d.get("watched"):
        lines.append(f"  modified   by fab watch, last at {d['watched']} (not a clean release: deploy to replace it)")
    app = d.get("app") or {}
    if "error" in app:
        lines.append(f"  app        {app['error']}")
    else:
        lines.append(
            f"  app        {d['mode'] or 'unknown'} mode"
            + (f" (group {app.get('process_group')})" if app.get("process_group") else "")
            + f", mpm {d['mpm'] or 'unknown'}, python {app.get('python', '?')}, answering release {app.get('release', '?')}"
        )
    procs = d.get("processes") or []
    if procs:
        each = (f"{p['pid']} (up {duration(p['seconds'])}, since {p['started']})" for p in procs)
        lines.append("  processes  " + ", ".join(each))
    elif d.get("mode") == "daemon":
        lines.append("  processes  none has loaded the app yet")
    lines.append(f"  health     {d.get('health') or 'unknown'}")
    disk = d.get("disk_kib") or {}
    if disk:
        sizes = f"releases {disk['releases'] / 1024:.1f} MiB, venvs {disk['venvs'] / 1024:.1f} MiB"
        lines.append(f"  disk       {sizes} ({len(d['releases'])} releases)")
    if d.get("lock"):
        lk = d["lock"]
        lines.append(f"  LOCKED     by {lk.get('owner')}@{lk.get('host')} pid {lk.get('pid')} ({lk.get('cmd')})")
    return "\n".join(lines)


def _on_each(run: TaskRun, conns: list[Connection], fn: Callable[[Connection], Any]) -> list[Any]:
    """`fn` on every host in parallel (read-only tasks), results in the order of `conns`; a failure raises."""
    found = fleet.each(conns, fn, parallel=10)
    for conn in conns:
        run.host(str(conn.original_host))
    for exc in found.failed.values():
        raise exc
    return [found[conn] for conn in conns]


def _statuses(run: TaskRun, s: config.Settings, conns: list[Connection]) -> list[dict[str, Any]]:
    """Every host's status (one SSH command each)."""
    return _on_each(run, conns, lambda conn: api.status(conn, s).details)


@task(help={"stage": STAGE_HELP, "json": JSON_HELP})
@_task
def status(c: Context, run: TaskRun, stage: str | None = None, json: bool = False) -> bool:
    """Show each host's live release, who deployed it and when, the app's real mode, MPM, processes, health, disk."""
    s = _settings(c, stage, run)
    conns = _targets(c, s, "status")
    if not conns:
        return False
    found = _statuses(run, s, conns)
    currents = {d["current"] for d in found}
    if len(currents) > 1:
        run.fields["disagree"] = sorted(str(x) for x in currents)
        run.say(f"hosts disagree on the current release: {', '.join(sorted(str(x) for x in currents))}")
    for d in found:
        run.host(d["host"], result="ok", release=d["current"], status=d)
        run.say(_status_text(d))
    return True


@task(help={"stage": STAGE_HELP, "json": JSON_HELP})
@_task
def releases(c: Context, run: TaskRun, stage: str | None = None, json: bool = False) -> bool:
    """List each host's releases: id, date, state (finished/failed), revision; '*' marks the live one."""
    s = _settings(c, stage, run)
    conns = _targets(c, s, "releases")
    if not conns:
        return False
    for d in _statuses(run, s, conns):
        run.host(d["host"], result="ok", release=d["current"], releases=d["releases"])
        run.say(f"{d['host']}:")
        for r in d["releases"]:
            mark = "*" if r["live"] else " "
            run.say(f" {mark} {r['id']}  {r['date'] or '-':<23} {r['state']:<9} {r['revision'][:12]}")
    return True


@task(
    help={
        "stage": STAGE_HELP,
        "force": "remove the lock even while the holder's step (pip, a hook) still runs on the host",
        "json": JSON_HELP,
    }
)
@_task
def unlock(c: Context, run: TaskRun, stage: str | None = None, force: bool = False, json: bool = False) -> bool:
    """Remove the deploy lock a killed deploy left behind; refused while its step still runs on the host."""
    s = _settings(c, stage, run)
    conns = _targets(c, s, "unlock")
    for conn in conns:
        held: Any = api.unlock(conn, s, force).details.get("lock")
        run.host(str(conn.original_host), result="unlocked" if held else "not locked", lock=held)
        msg = f"removed lock held by {held.get('owner')}@{held.get('host')} pid {held.get('pid')}" if held else "no lock"
        run.reporter.line(str(conn.original_host), msg)
    return bool(conns)


@task(
    help={
        "stage": STAGE_HELP + "; never a production stage",
        "interval": "seconds between looks at the local files (default 0.5)",
        "seconds": "stop after this many seconds (default 0: until Ctrl-C)",
        "json": JSON_HELP,
    }
)
@_task
def watch(
    c: Context, run: TaskRun, stage: str | None = None, interval: float = 0.5, seconds: float = 0.0, json: bool = False
) -> bool:
    """Dev loop: ship files as they are saved into the live release of a dev host and reload it (never production)."""
    from deploy import devloop as watching  # here: only this task needs it

    s = _settings(c, stage, run)
    conns = _targets(c, s, "watch")
    if len(conns) != 1:
        raise ConfigError("fab watch works on one host: pass one -H HOST (or a stage with one host)")
    name = str(conns[0].original_host)
    run.host(name)
    batches = watching.watch(conns[0], s, _project_dir(c), run.reporter, interval=interval, seconds=seconds)
    run.host(
        name,
        result="stopped",
        batches=[{"shipped": b.shipped, "removed": b.removed, "seconds": round(b.seconds, 3)} for b in batches],
    )
    return True


__all__ = ["deploy", "plan", "releases", "reload", "rollback", "setup", "status", "unlock", "watch"]
