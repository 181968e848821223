"""The Fabric tasks: `fab deploy`, `plan`, `rollback`, `reload`, `setup`, `check`, `status`, `releases`, `logs`, `exec`,
`manage`, `maintenance`, `unlock`, `watch`.

Thin on purpose: read the options, pick the hosts, call deploy.api, show its results with deploy.output
and turn errors into exit codes (in `_task`, the one place). Nothing else of the tool is imported here.
Hosts come from `-H` (Fabric runs a task once per host: the first call takes them all, see `_targets`)
or, without `-H`, from the stage (`--stage NAME`, else `deploy.default_stage`), like `cap production deploy`.
"""

from __future__ import annotations

import functools
import gc
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

from deploy import api
from deploy.api import ConfigError, DeployError, FleetError, Result, Settings
from deploy.output import HostLines, HostStreams, Reporter, TaskRun, Terminal, check_text, plan_text, status_text, table

F = TypeVar("F", bound=Callable[..., Any])

JSON_HELP = "print one JSON document on stdout at the end (progress stays on stderr); or set deploy.output: json"
STAGE_HELP = "stage from deploy.stages (default: deploy.default_stage); its settings also apply to hosts given with -H"
PARALLEL_HELP = "how many hosts to work on at once (default 10; 1 = one after another)"


def _wants_json(c: Context, flag: bool) -> bool:
    raw = c.config.get("deploy")
    return flag or (hasattr(raw, "get") and raw.get("output") == "json")


def _task(fn: F) -> F:
    """The one place errors become a one-line message and an exit code (and, with --json, a document).

    The task body gets a TaskRun after its Context; Fabric sees the signature without it.
    """

    @functools.wraps(fn)
    def wrapper(c: Context, *args: Any, **kwargs: Any) -> Any:
        # What the imports made lives until `fab` exits: the collector need not walk it again, in the run
        # or at exit (that last collection was ~30 ms of every command).
        gc.freeze()
        run = TaskRun(fn.__name__.rstrip("_"), _wants_json(c, bool(kwargs.get("json"))), Reporter(), stage=kwargs.get("stage"))
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
        return lambda: None  # signals reach the main thread only
    old = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def restore() -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    return restore


def _failed(run: TaskRun, exc: DeployError) -> None:
    """Each host's part in a failure, for the JSON document (and a table for people, for fleets)."""
    if isinstance(exc, FleetError):
        for h in exc.hosts:
            run.host(h["host"], **{k: v for k, v in h.items() if k != "host"})
        if exc.hosts:
            run.reporter.close()
            run.reporter.note(table(exc.hosts))
        return
    _mark(run, "failed", exc.host)


def _mark(run: TaskRun, result: str, host: str | None = None) -> None:
    """Hosts still pending (all of them, or just `host`) end with `result`."""
    for entry in run.hosts.values():
        if entry["result"] == "pending" and (host is None or entry["host"] == host):
            entry["result"] = result


def _settings(c: Context, stage: str | None, run: TaskRun) -> Settings:
    s = api.settings(c.config.get("deploy"), stage=stage)
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


def _targets(c: Context, s: Settings, task_name: str, run: TaskRun) -> list[Connection]:
    """Every host this task works on, all at once (each gets its JSON entry, pending until it is done).

    Fabric calls a task once per `-H` host, each with its own Connection; a fleet task must see them all
    (prepare everywhere before any switch). So the first call takes the whole -H list and the later
    calls of the same task do nothing.
    """
    if isinstance(c, Connection):
        hosts = cli_hosts()
        if len(hosts) > 1 and task_name in _HANDLED:
            return []
        _HANDLED.add(task_name)
        conns = [c] + (api.connections(hosts[1:], c.config) if len(hosts) > 1 else [])
    else:
        conns = api.connections(s.hosts, c.config)
    for conn in conns:
        run.host(str(conn.original_host))
    return conns


def _record(run: TaskRun, results: list[Result], **more: Any) -> None:
    """The hosts' results into the JSON document."""
    for r in results:
        run.host(
            r.host, result=r.result, release=r.release, previous=r.previous, seconds=r.seconds, reload=r.reload,
            health=r.health, **more,
        )


@task(
    help={
        "ref": "git ref to deploy (default: deploy.ref, HEAD)",
        "stage": STAGE_HELP,
        "no-rollback": "keep a release that fails its health check live, for debugging",
        "parallel": PARALLEL_HELP,
        "batch": "switch N hosts (or N%) at a time, health-checking each batch (default: all at once)",
        "rollback-all-on-failure": "with --batch: a failed batch also rolls back the earlier batches",
        "dry-run": "only show what the deploy would do (same as fab plan); nothing changes on the hosts",
        "keep-maintenance": "deploy to hosts in maintenance (fab maintenance on), which stay in it; else refused",
        "force": "deploy even when every host already runs exactly this release (else: 'unchanged', nothing done)",
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
    keep_maintenance: bool = False,
    force: bool = False,
    json: bool = False,
) -> bool:
    """Ship the app as a new release to every host, prepare it everywhere, then switch, reload, health-check."""
    if dry_run:
        run.task, run.fields["dry_run"] = "plan", True
        return _plan(c, run, ref, stage, parallel)
    s = _settings(c, stage, run)
    conns = _targets(c, s, "deploy", run)
    if not conns:
        return False
    rep = run.reporter
    results = api.deploy(
        conns, s, _project_dir(c), ref, rep, parallel, batch, rollback_all_on_failure, not no_rollback,
        keep_maintenance=keep_maintenance, force=force,
    )
    _record(run, results)
    for r in results:
        run.host(r.host, revision=r.revision)
    first = results[0]
    run.fields.update(release=first.release, revision=first.revision)
    rep.close()
    if all(r.result == "unchanged" for r in results):
        run.fields["unchanged"] = True
        return True  # the fleet layer said so, with the release that stays live
    if len(results) > 1:
        rep.note(table(list(run.hosts.values())))
    rep.note(
        f"deployed {first.release} (revision {str(first.revision)[:12]}) to {len(results)} host{'s' if len(results) > 1 else ''}"
        f" in {time.monotonic() - run.started:.2f}s; reload: {first.reload or s.reload_strategy}; health check: {first.health}"
    )
    return True


@task(
    help={
        "ref": "git ref to plan for (default: deploy.ref, HEAD)", "stage": STAGE_HELP, "parallel": PARALLEL_HELP,
        "json": JSON_HELP,
    }
)
@_task
def plan(
    c: Context, run: TaskRun, ref: str | None = None, stage: str | None = None, parallel: int = 10, json: bool = False
) -> bool:
    """Show what a deploy would do on each host (revision, commits, files, venv, hooks, config diffs, reload); changes nothing."""
    return _plan(c, run, ref, stage, parallel)


def _plan(c: Context, run: TaskRun, ref: str | None, stage: str | None, parallel: int = 10) -> bool:
    s = _settings(c, stage, run)
    conns = _targets(c, s, "plan", run)
    if not conns:
        return False
    for r in api.plan(conns, s, _project_dir(c), ref, parallel):
        p = r.details
        run.fields["revision"] = r.revision
        run.host(r.host, result=r.result, plan=p, release=p["release"], revision=p["revision"])
        run.say(plan_text(r.host, p))
    return True


@task(
    help={
        "to": "release id to go back to (default: the one live before the live one)",
        "stage": STAGE_HELP,
        "parallel": PARALLEL_HELP,
        "batch": "roll back N hosts (or N%) at a time (default: all at once, all-or-none)",
        "json": JSON_HELP,
    }
)
@_task
def rollback(
    c: Context, run: TaskRun, to: str | None = None, stage: str | None = None, parallel: int = 10, batch: str | None = None,
    json: bool = False,
) -> bool:
    """Point `current` back at the release live before it (or --to ID) and reload, on every host at once."""
    s = _settings(c, stage, run)
    conns = _targets(c, s, "rollback", run)
    if not conns:
        return False
    results = api.rollback(conns, s, to, run.reporter, parallel, batch)
    _record(run, results)
    run.fields["release"] = results[0].release
    for r in results:
        run.reporter.line(r.host, f"rolled back {r.previous} -> {r.release} in {r.seconds:.2f}s")
    return True


@task(
    help={
        "stage": STAGE_HELP,
        "strategy": "rolling, touch or graceful (default: by mode, see README)",
        "parallel": PARALLEL_HELP,
        "batch": "reload N hosts (or N%) at a time; a failed batch stops the next ones (default: all at once)",
        "json": JSON_HELP,
    }
)
@_task
def reload(
    c: Context, run: TaskRun, stage: str | None = None, strategy: str | None = None, parallel: int = 10,
    batch: str | None = None, json: bool = False,
) -> bool:
    """Reload the live release: rolling daemon restart, touch of the WSGI script, or apachectl graceful."""
    s = _settings(c, stage, run)
    conns = _targets(c, s, "reload", run)
    if not conns:
        return False
    results = api.reload(conns, s, run.reporter, strategy, parallel, batch)
    _record(run, results)
    for r in results:
        run.reporter.line(r.host, f"reloaded in {r.seconds:.2f}s")
    return True


@task(help={"stage": STAGE_HELP, "json": JSON_HELP})
@_task
def check(c: Context, run: TaskRun, stage: str | None = None, json: bool = False) -> bool:
    """Check each host before the first deploy, changing nothing: sudo rules, Apache, mod_wsgi's Python, disk, users."""
    s = _settings(c, stage, run)
    conns = _targets(c, s, "check", run)
    if not conns:
        return False
    results = api.check(conns, s)
    for r in results:
        run.host(r.host, result=r.result, checks=r.details["checks"], seconds=r.seconds)
        run.say(check_text(r.host, r.details["checks"]))
    error = api.check_error(results)
    if error is not None:
        raise error
    return True


@task(help={"stage": STAGE_HELP, "json": JSON_HELP})
@_task
def setup(c: Context, run: TaskRun, stage: str | None = None, json: bool = False) -> bool:
    """Check each host (as fab check), then create <deploy_to>/releases and shared/, install and enable the vhost."""
    s = _settings(c, stage, run)
    conns = _targets(c, s, "setup", run)
    if not conns:
        return False
    results = api.setup(conns, s, _project_dir(c), run.reporter)
    _record(run, results)
    for r in results:
        run.reporter.line(r.host, f"set up {s.deploy_to} in {r.seconds:.2f}s")
    return True


@task(help={"stage": STAGE_HELP, "parallel": PARALLEL_HELP, "json": JSON_HELP})
@_task
def status(c: Context, run: TaskRun, stage: str | None = None, parallel: int = 10, json: bool = False) -> bool:
    """Show each host's live release, who deployed it and when, the app's real mode, MPM, processes, health, disk."""
    s = _settings(c, stage, run)
    conns = _targets(c, s, "status", run)
    if not conns:
        return False
    found = [r.details for r in api.status(conns, s, parallel)]
    currents = {d["current"] for d in found}
    if len(currents) > 1:
        run.fields["disagree"] = sorted(str(x) for x in currents)
        run.say(f"hosts disagree on the current release: {', '.join(sorted(str(x) for x in currents))}")
    for d in found:
        run.host(d["host"], result="ok", release=d["current"], status=d)
        run.say(status_text(d))
    return True


@task(help={"stage": STAGE_HELP, "json": JSON_HELP})
@_task
def releases(c: Context, run: TaskRun, stage: str | None = None, json: bool = False) -> bool:
    """List each host's releases: id, date, state (finished/failed/unhealthy), revision; '*' marks the live one."""
    s = _settings(c, stage, run)
    conns = _targets(c, s, "releases", run)
    if not conns:
        return False
    for r in api.status(conns, s):
        d = r.details
        run.host(d["host"], result="ok", release=d["current"], releases=d["releases"])
        run.say(f"{d['host']}:")
        for rel in d["releases"]:
            mark = "*" if rel["live"] else " "
            run.say(f" {mark} {rel['id']}  {rel['date'] or '-':<23} {rel['state']:<9} {rel['revision'][:12]}")
    return True


@task(
    help={
        "stage": STAGE_HELP,
        "lines": "how many of the last lines (default 50; 0: all of --since)",
        "since": "only lines of the last 90s, 10m, 2h, 1d",
        "follow": "then print new lines as they come, until Ctrl-C",
        "access": "the app's access log instead of its error log",
        "json": JSON_HELP + " (each host's lines; not with --follow)",
    }
)
@_task
def logs(
    c: Context, run: TaskRun, stage: str | None = None, lines: int = 50, since: str | None = None, follow: bool = False,
    access: bool = False, json: bool = False,
) -> bool:
    """Print the app's own error log (tracebacks) or access log from each host, prefixed by host with several."""
    s = _settings(c, stage, run)
    if follow and run.json:
        raise ConfigError("--follow streams lines until Ctrl-C: it has no JSON document; leave out --json")
    conns = _targets(c, s, "logs", run)
    if not conns:
        return False
    got: dict[str, list[str]] = {}
    on_line = (lambda h, line: got.setdefault(h, []).append(line)) if run.json else HostLines(len(conns) > 1)
    for r in api.logs(conns, s, on_line, access=access, lines=lines, since=since, follow=follow):
        run.host(r.host, result=r.result, lines=got.get(r.host, []) if run.json else r.details["lines"])
    return True


@task(
    help={
        "state": "on (every request answers 503 with Retry-After and the maintenance page) or off",
        "message": "a sentence for the page (conf_templates/maintenance.html.j2)",
        "stage": STAGE_HELP,
        "json": JSON_HELP,
    }
)
@_task
def maintenance(
    c: Context, run: TaskRun, state: str, message: str | None = None, stage: str | None = None, json: bool = False
) -> bool:
    """Maintenance mode on|off: a 503 page with Retry-After for every visitor, without a reload or a deploy."""
    if state not in ("on", "off"):
        raise ConfigError(f"fab maintenance takes on or off, got {state!r}")
    s = _settings(c, stage, run)
    conns = _targets(c, s, "maintenance", run)
    if not conns:
        return False
    for r in api.maintenance(conns, s, state == "on", _project_dir(c), message):
        run.host(r.host, result=r.result, maintenance=r.details["maintenance"])
        run.reporter.line(r.host, f"maintenance {r.details['maintenance']}")
    return True


EXEC_HELP = {
    "stage": STAGE_HELP,
    "all": "on every host of the stage (or -H), output prefixed by host; without it: one host",
    "json": JSON_HELP + " (each host's exit_code, stdout and stderr; no terminal)",
}


# The command is one quoted argument: Fabric 3.2 refuses any task followed by `-- words` ("Was told to run
# a command, but not given any hosts", even with -H) and would run such words itself on every host.
# (A positional argument of invoke's has no default.)
@task(name="exec", help={"command": "the command line, one quoted string: 'python manage.py shell'", **EXEC_HELP})
@_task
def exec_(c: Context, run: TaskRun, command: str, stage: str | None = None, all: bool = False, json: bool = False) -> bool:
    """Run a command in the live release (venv, home, python path, environment): fab -H web1 exec 'python -V'."""
    return _exec(c, run, _settings(c, stage, run), [command], True, all)


@task(help={"args": "manage.py's arguments, one quoted string: 'createsuperuser --username alice'", **EXEC_HELP})
@_task
def manage(c: Context, run: TaskRun, args: str, stage: str | None = None, all: bool = False, json: bool = False) -> bool:
    """Django's manage.py in the live release: fab -H web1 manage createsuperuser (exec 'python manage.py ...')."""
    import shlex

    s = _settings(c, stage, run)
    return _exec(c, run, s, api.manage_argv(s, shlex.split(args)), False, all)


def _exec(c: Context, run: TaskRun, s: Settings, argv: list[str], shell: bool, every: bool) -> bool:
    conns = _targets(c, s, run.task, run)
    if not conns:
        return False
    if len(conns) > 1 and not every:
        raise ConfigError(f"fab {run.task} runs on one host: give one with -H HOST, or every host with --all")
    got: dict[tuple[str, str], bytearray] = {}
    if run.json:
        def keep(which: str) -> Any:
            return lambda h, data: got.setdefault((h, which), bytearray()).extend(data)

        on_stdout, on_stderr, streams = keep("stdout"), keep("stderr"), None
    else:
        streams = HostStreams(prefix=every)
        on_stdout, on_stderr = streams.stdout, streams.stderr
    if Terminal.wanted() and not every and not run.json:
        with Terminal() as term:
            results = api.exec_command(conns, s, argv, on_stdout, on_stderr, shell, term, term.size(),
                                       os.environ.get("TERM", "xterm"))
    else:
        try:
            results = api.exec_command(conns, s, argv, on_stdout, on_stderr, shell)
        finally:
            if streams is not None:
                streams.close()
    for r in results:
        text = {k: bytes(got.get((r.host, k), b"")).decode(errors="replace") for k in ("stdout", "stderr")}
        run.host(r.host, result=r.result, exit_code=r.details["exit_code"], **(text if run.json else {}))
    error = api.exit_error(results)
    if error is not None:
        raise error
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
    conns = _targets(c, s, "unlock", run)
    if not conns:
        return False
    for r in api.unlock(conns, s, force):
        held: Any = r.details.get("lock")
        run.host(r.host, result=r.result, lock=held)
        msg = f"removed lock held by {held.get('owner')}@{held.get('host')} pid {held.get('pid')}" if held else "no lock"
        run.reporter.line(r.host, msg)
    return True


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
    s = _settings(c, stage, run)
    conns = _targets(c, s, "watch", run)
    if not conns:
        return False
    if len(conns) != 1:
        raise ConfigError("fab watch works on one host: pass one -H HOST (or a stage with one host)")
    r = api.watch(conns[0], s, _project_dir(c), run.reporter, interval=interval, seconds=seconds)
    run.host(r.host, result=r.result, batches=r.details["batches"])
    return True


__all__ = [
    "check", "deploy", "exec_", "logs", "maintenance", "manage", "plan", "releases", "reload", "rollback", "setup", "status",
    "unlock", "watch",
]
