"""Operations on one host, each a function of a Connection running ONE phase script (one SSH command)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fabric import Connection

from deploy import apache, lock, releases, reloading, remote, venv
from deploy.config import Settings
from deploy.connect import open_connection
from deploy.errors import (
    DeployError,
    HealthCheckFailed,
    InMaintenance,
    LockHeld,
    NotDeployed,
    NothingToRollBack,
    RemoteError,
)
from deploy.output import Reporter
from deploy.remote import Outcome, Value

# What the spinner says while a phase runs (on a terminal only).
PHASE_WORDS = {
    "begin": "taking the lock, reading the host",
    "ahead": "checking the release sent ahead",
    "prepare": "preparing the release",
    "switch": "switching and reloading",
    "rollback": "rolling back",
    "reload": "reloading",
    "setup": "setting up",
    "ship": "shipping saved files",
    "tools": "installing uv",
    "check": "checking the host",
}

# Where a failure that the app's own code may have caused sends the user (the vhost's ErrorLog).
LOGS_HINT = "; the app's error log: fab logs"
# The steps whose failure is often the app's: a hook (migrate), a daemon process that could not load it, an
# import that raised.
APP_STEPS = {14, 16, 18}


def variables(s: Settings, lock_info: str = "") -> dict[str, Value]:
    owner = lock.parse("lock " + lock_info).get("owner", "-") if lock_info else "-"
    return {
        "DEPLOY_TO": s.deploy_to,
        "APP": s.app,
        "PYTHON": s.python,
        "LOCK_INFO": lock_info,
        "DEPLOYER": owner,
        "RELOAD": s.reload_strategy,
        "KEEP": s.keep_releases,
        "INSTALLER": s.installer,
        "UV_VERSION": venv.uv_version() or "",
        # The next deploy's import check kept warm after a switch (lib.sh warm_start); slots have their spare.
        "IMPORT_WARM": s.import_check and s.import_warm and s.reload_strategy != "slots",
        **apache.variables(s),
        **reloading.variables(s),
    }


def _run(
    c: Connection,
    s: Settings,
    phase: str,
    extra: Mapping[str, Value],
    reporter: Reporter | None,
    lock_info: str = "",
    stdin: bytes | None = None,
    on_event: Callable[[str], None] | None = None,
    passing: tuple[str, ...] = (),
    session: remote.Session | None = None,
    last: bool = False,
    queued: bool = False,
) -> Outcome:
    """Run `phase` on the host; its events go to `on_event` (else the reporter); a failure raises its DeployError.

    `session`: in that open command (a deploy's), not as a command of its own; `last`: the session's last phase;
    `queued`: its script is on its way already (sent with the phase before it, or by the Session itself for
    begin): only wait for it.
    """
    host = c.original_host
    if reporter is not None:
        reporter.phase(host, PHASE_WORDS.get(phase, phase))
    if on_event is None and reporter is not None:
        on_event = lambda e: reporter.event(host, e)  # noqa: E731
    on_sent = (lambda n: reporter.upload(host, n, len(stdin or b""))) if reporter and reporter.live else None
    if session is not None:
        text = None if queued else remote.follow_up(phase, {**variables(s, lock_info), **extra}, last)
        out = session.step(text, stdin or b"", on_event, on_sent, last)
    else:
        given = {**variables(s, lock_info), **extra}
        text = remote.script(phase, given)
        out = remote.run(
            c, text, stdin=stdin, on_event=on_event, on_sent=on_sent, passing=passing, in_line=remote.public(given)
        )
    if reporter is not None:
        reporter.phase(host, "")
    _raise_for(str(host), phase, out)
    return out


def _raise_for(host: str, phase: str, out: Outcome) -> None:
    """The DeployError of a phase that exited non-zero (the exit codes of deploy/remote/__init__.py)."""
    if out.code == remote.EXIT_LOCKED:
        raise lock.held_error(host, remote.whole(out.events, "lock") or "lock")
    if out.code == remote.EXIT_LOCK_LOST:
        raise LockHeld(f"{host}: {out.error_line()}", host)
    if out.code == remote.EXIT_NO_TARGET:
        raise NothingToRollBack(f"{host}: {out.error_line()}", host)
    if out.code == remote.EXIT_NOT_DEPLOYED:
        raise NotDeployed(f"{host}: {out.error_line()}", host)
    if out.code == remote.EXIT_IN_MAINTENANCE:
        raise InMaintenance(f"{host}: {out.error_line()}", host)
    if out.code == remote.EXIT_UNHEALTHY:
        # With the lines the host quoted (a slot's traceback, or what ran when a slot never loaded).
        raise HealthCheckFailed(f"{host}: {out.error_line()}{LOGS_HINT}{_indent(out.tail(40))}", host)
    if out.code != 0:
        step = remote.STEP_OF_CODE.get(out.code, phase)
        hint = LOGS_HINT if out.code in APP_STEPS else ""
        raise RemoteError(host, step, out.error_line() + hint + _indent(out.tail()), out.tail(), out.code)


def _indent(tail: str) -> str:
    lines = [ln for ln in tail.splitlines() if ln.startswith("  | ")]
    return ("\n" + "\n".join(lines)) if lines else ""


@dataclass(frozen=True)
class Facts:
    """What `begin` learnt about the host in its one command."""

    listing: releases.Listing
    manifest: str  # the live release's, '' without one
    python: str  # sys.version of the host's Python
    venvs: frozenset[str]  # keys of the complete venvs
    uv: bool = True  # the host has this machine's uv (tools/uv-<version>/uv)
    arch: str = ""  # uname -m of the host
    fingerprint: str = ""  # of the live release (deploy.release.fingerprint), '' when it has none or is unhealthy
    # The deploy's command, still open: prepare and switch run in it (remote.Session); None: commands of their own.
    session: remote.Session | None = dataclasses.field(default=None, compare=False, repr=False)
    # The prepare sent into that command right after the begin, made from a guess (`send_ahead`).
    sent_ahead: SentAhead | None = dataclasses.field(default=None, compare=False, repr=False)


def begin(
    c: Connection, s: Settings, lock_info: str, reporter: Reporter | None = None, keep_maintenance: bool = False,
    serve: bool = True, ahead: Callable[[remote.Session], SentAhead | None] | None = None,
) -> Facts:
    """Take the deploy lock; list releases and venvs, the live release's manifest, the Python version.
    A host in maintenance refuses (InMaintenance) unless `keep_maintenance`.

    `serve`: the command stays open (Facts.session) for the prepare and switch that follow, or for `leave`.
    `ahead`: called once the begin is on its way, before its facts come back; it may send a prepare ahead
    (`send_ahead`) and says what it sent (Facts.sent_ahead).
    """
    extra: dict[str, Value] = {
        "KEEP_MAINTENANCE": keep_maintenance,
        "SERVE": serve,
        # The import check of the prepare, started now in the live venv (lib.sh import_ahead; only in a
        # serving command, which the prepare follows). With slots the idle slot's own load is the check.
        "IMPORT_AHEAD": s.import_check and s.reload_strategy != "slots",
    }
    if not serve:
        return _facts(_run(c, s, "begin", extra, reporter, lock_info).events)
    # The session sends begin's script with its first step: _run only waits for it.
    # Its script in the command line (a round trip less); it needs no private variable (the health check's
    # headers): the phases that follow in the session bring their own.
    given = remote.without_private({**variables(s, lock_info), **extra})
    session = remote.Session(c, remote.script("begin", given), in_line=True)
    sent = ahead(session) if ahead is not None else None
    out = _run(c, s, "begin", extra, reporter, lock_info, session=session, queued=True)
    return dataclasses.replace(_facts(out.events), session=session, sent_ahead=sent)


def leave(c: Connection, s: Settings, facts: Facts, lock_info: str) -> None:
    """End a deploy that took the lock and had nothing to do: the host frees the lock (in the deploy's own
    command when it is still open)."""
    if facts.session is not None and facts.sent_ahead is not None and ahead_taken(c, s, facts.sent_ahead):
        # Never so: what the host has already is not sent ahead (deploy.release._send_ahead).
        raise RemoteError(str(c.original_host), "prepare", "the host took a release sent ahead of a deploy that had"
                          " nothing to do (a bug in fab: please report it)")
    if facts.session is not None and facts.session.open:
        _raise_for(str(c.original_host), "begin", facts.session.end())
    else:
        abort(c, s, lock_info, None)


def _facts(events: tuple[str, ...]) -> Facts:
    """Facts from the events of lib.sh's say_facts."""
    return Facts(
        releases.parse(["@@" + e for e in events if e.partition(" ")[0] in ("release", "current")]),
        remote.text(events, "m") or "",
        remote.value(events, "python") or "",
        frozenset(remote.values(events, "venv")),
        remote.value(events, "uv") == "yes",
        remote.value(events, "arch") or "",
        remote.value(events, "fingerprint") or "",
    )


@dataclass(frozen=True)
class PrepareArgs:
    """What the prepare phase does with a release on this host (worked out by deploy.release)."""

    release_id: str
    revision: str
    hooks: tuple[tuple[str, str], ...]  # (name, command) of the hooks to run
    base: str | None = None  # live release to hard-link unchanged files from
    carry: tuple[str, ...] = ()  # outputs of skipped hooks, linked from base
    note: str = ""
    venv_key: str = ""
    private: tuple[str, ...] = ()  # outputs of the hooks that run: copies of their own, never shared with base
    requirements: str | None = None  # the file the installer reads, in the release (None: nothing to install)
    stage: bool = False  # daemon slots: load and check the release in the idle slot (deploy/remote/slots.sh)
    # A deploy to one host (nothing to wait for): the switch's script goes right after the archive, in the
    # same command, and starts as soon as the prepare ends (one round trip less).
    then_switch: bool = False
    rollback_on_failure: bool = True  # the switch's: a failed health check rolls back (not with --no-rollback)
    # The deploy's open command (Facts.session) when prepare and switch run in it.
    session: remote.Session | None = dataclasses.field(default=None, compare=False, repr=False)
    # What the host will say once this release is live (kept for the next deploy's guess: deploy/guesses.py).
    made: Facts | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Survey:
    """What `plan` learnt about the host in one read-only command."""

    set_up: bool
    facts: Facts
    live_venv: str | None  # venv key of the live release
    wsgi: str | None  # the live release's WSGI script
    vhost: str | None  # the installed vhost
    lock: dict[str, str] | None
    live_slot: str | None = None  # daemon slots: the one that serves (a, b or c)
    next_slot: str | None = None  # the one a deploy loads: 'c spare' (no restart), or the idle one


def survey(c: Connection, s: Settings) -> Survey:
    """Look at the host without changing it (no lock): the inputs of a deploy's plan."""
    events = _run(c, s, "plan", {}, None).events
    held = remote.whole(events, "lock")
    return Survey(
        set_up=remote.value(events, "setup") == "yes",
        facts=_facts(events),
        live_venv=remote.value(events, "livevenv"),
        wsgi=remote.text(events, "wsgi"),
        vhost=(remote.text(events, "vhost") or "") if "hasvhost" in events else None,
        lock=lock.parse(held) if held else None,
        live_slot=remote.value(events, "liveslot"),
        next_slot=remote.value(events, "nextslot"),
    )


@dataclass(frozen=True)
class SentAhead:
    """A prepare (and, for a deploy to one host, its switch) sent right after the begin in its command, made
    from a guess of the facts (deploy/guesses.py): the host runs it only if the guess holds (remote/ahead.sh)."""

    args: PrepareArgs
    archive_bytes: int


def send_ahead(
    c: Connection, s: Settings, plan: PrepareArgs, archive: bytes, lock_info: str, guess: Facts, session: remote.Session
) -> SentAhead:
    """Send the prepare of `plan` (made from `guess`) into the begin's open command before its facts come back.

    The host first checks that it is as guessed (ahead.sh): the live release and its fingerprint, the Python,
    the venv, a release id later than any there; if not, it reads past all that was sent ahead and waits for
    the prepare made from the facts. Either way `ahead_taken` then says which.

    The switch is not sent ahead: fab sends it (`send_switch`) once it has seen that the args the facts make
    are these, so that a difference stops the deploy before anything is switched."""
    rest = remote.frame(remote.follow_up("prepare", {**variables(s, lock_info), **_prepare_variables(s, plan, archive)}))
    rest += archive
    check: dict[str, Value] = {
        "GUESS_CURRENT": guess.listing.current,
        "GUESS_FINGERPRINT": guess.fingerprint,
        "GUESS_PYTHON": guess.python,
        "GUESS_VENV": plan.venv_key,
        "GUESS_ID": plan.release_id,
        "GUESS_BYTES": len(rest),
    }
    session.send(remote.frame(remote.follow_up("ahead", check)) + rest)
    return SentAhead(plan, len(archive))


def ahead_taken(c: Connection, s: Settings, sent: SentAhead, reporter: Reporter | None = None) -> bool:
    """Whether the host runs the prepare sent ahead (the guess held: wait for it with `prepare_sent`); if not,
    it dropped it and waits for the prepare made from the facts (`prepare`)."""
    checked = _run(c, s, "ahead", {}, reporter, session=sent.args.session, queued=True)
    return (remote.value(checked.events, "ahead", last=True) or "").startswith("used")


def prepare_sent(c: Connection, s: Settings, sent: SentAhead, reporter: Reporter | None = None) -> Outcome:
    """Wait for the prepare sent ahead that the host took (`ahead_taken`); a failure raises, as `prepare`'s."""
    return _run(c, s, "prepare", {}, reporter, session=sent.args.session, queued=True)


def prepare(
    c: Connection, s: Settings, plan: PrepareArgs, archive: bytes, lock_info: str, reporter: Reporter | None = None
) -> Outcome:
    session = _in_session(plan.session)
    extra = _prepare_variables(s, plan, archive if session is not None else None)
    stdin = _prepare_stdin(s, plan, archive, lock_info) if session is not None else archive
    return _run(c, s, "prepare", extra, reporter, lock_info, stdin=stdin, session=session)


def _prepare_variables(s: Settings, plan: PrepareArgs, archive: bytes | None) -> dict[str, Value]:
    """The prepare phase's variables; `archive`: the one that follows its script in a Session (its length)."""
    module, attr, factory = s.wsgi_target
    return {
        "ID": plan.release_id,
        "REVISION": plan.revision,
        "REQUIREMENTS": plan.requirements,
        "HOME_DIR": s.home,
        "PY_PATH": list(s.python_path),
        "IMPORT_CHECK": s.import_check,
        # Embedded mode has no idle slot to try the release in: the import check also calls it once.
        "CALL_PATH": (s.health.path or "") if s.mode == "embedded" and s.health.enabled else "",
        "WSGI_MODULE": module,
        "WSGI_CALLABLE": attr,
        "WSGI_FACTORY": factory,
        **pip_variables(s.pip_args),
        "SHARED_DIRS": list(s.shared_dirs),
        "SHARED_FILES": list(s.shared_files),
        "HOOK_NAMES": [h[0] for h in plan.hooks],
        "HOOK_CMDS": [h[1] for h in plan.hooks],
        "DJANGO_SETTINGS": s.django_settings,
        "BASE": plan.base,
        "CARRY": list(plan.carry),
        "PRIVATE": list(plan.private),
        "UNPACK_NOTE": plan.note,
        "VENV_KEY": plan.venv_key,
        "SECRETS": bool(s.environment),
        "STAGE": plan.stage,
        "ARCHIVE_BYTES": len(archive) if archive is not None else "",
    }


def _prepare_stdin(s: Settings, plan: PrepareArgs, archive: bytes, lock_info: str) -> bytes:
    """What follows the prepare's script in a Session: the archive, then (a deploy to one host) the switch's
    script, which starts as soon as the prepare ends."""
    return archive + _switch_frame(s, plan, lock_info) if plan.then_switch else archive


def send_switch(c: Connection, s: Settings, sent: SentAhead, lock_info: str) -> None:
    """Queue the switch behind the prepare sent ahead that the host took (a deploy to one host): it starts as
    soon as that prepare ends, and `switch` waits for it."""
    if sent.args.then_switch and sent.args.session is not None:
        sent.args.session.send(_switch_frame(s, sent.args, lock_info))


def _switch_frame(s: Settings, plan: PrepareArgs, lock_info: str) -> bytes:
    return remote.frame(remote.follow_up("switch", {**variables(s, lock_info), **_switch_variables(plan)}, last=True))


def _in_session(session: remote.Session | None) -> remote.Session | None:
    """The deploy's command when it is still open for a next phase, else None (a command of its own)."""
    return session if session is not None and session.open else None


# pip's index options may carry a token: they go to pip as environment variables (not visible in `ps`).
PIP_ENV_OPTIONS = {"--index-url": "PIP_INDEX_URL", "-i": "PIP_INDEX_URL", "--extra-index-url": "PIP_EXTRA_INDEX_URL"}


def pip_variables(pip_args: tuple[str, ...]) -> dict[str, Value]:
    """PIP_ARGS for pip's command line and PIP_ENV ('NAME=value' lines) for its index options."""
    args: list[str] = []
    env: dict[str, list[str]] = {}
    items = list(pip_args)
    i = 0
    while i < len(items):
        a = items[i]
        name, eq, value = a.partition("=")
        if eq and name in PIP_ENV_OPTIONS:
            env.setdefault(PIP_ENV_OPTIONS[name], []).append(value)
        elif a in PIP_ENV_OPTIONS and i + 1 < len(items):
            env.setdefault(PIP_ENV_OPTIONS[a], []).append(items[i + 1])
            i += 1
        else:
            args.append(a)
        i += 1
    return {"PIP_ARGS": args, "PIP_ENV": [f"{k}={' '.join(v)}" for k, v in env.items()]}


@dataclass(frozen=True)
class Reloaded:
    """How a phase reloaded the app, and its health check: results as data, from the phase's events."""

    reload: str | None  # 'rolling 2 processes', 'graceful', 'touch', ...
    health: str  # 'ok', 'off' (no check configured)


def _reloaded(s: Settings, out: Outcome) -> Reloaded:
    """A phase that reloads ends with the health check when one is configured: it got here, so it passed."""
    how = remote.value(out.events, "reload", last=True)
    return Reloaded(how, "ok" if s.health.enabled else "off")


def switch(
    c: Connection,
    s: Settings,
    plan: PrepareArgs,
    lock_info: str,
    reporter: Reporter | None = None,
    rollback_on_failure: bool = True,
) -> Reloaded:
    """Switch `current`, reload and health-check; a failure rolls back in the same command (unless told not to)."""
    plan = dataclasses.replace(plan, rollback_on_failure=rollback_on_failure)
    session = _in_session(plan.session)
    queued = session is not None and plan.then_switch
    out = _run(c, s, "switch", _switch_variables(plan), reporter, lock_info, session=session, last=True, queued=queued)
    return _reloaded(s, out)


def _switch_variables(plan: PrepareArgs) -> dict[str, Value]:
    return {"ID": plan.release_id, "REVISION": plan.revision, "NO_ROLLBACK": not plan.rollback_on_failure}


def abort(c: Connection, s: Settings, lock_info: str, release_id: str | None, remove: bool = False) -> None:
    """Best effort after a failure: the original error is what the user must see.

    The release is marked failed (kept for a look, removed by the next deploy), or removed at
    once with `remove` (a healthy host of a fleet whose deploy was called off).
    """
    try:
        if c.transport is None or not c.transport.is_active():
            # The connection dropped mid-phase: a new one frees the lock and stops the orphaned step.
            c.close()
            open_connection(c)
        _run(c, s, "abort", {"ID": release_id or "", "REMOVE": remove}, None, lock_info)
    except DeployError:
        pass


@dataclass(frozen=True)
class RolledBack:
    previous: str  # what was live before
    target: str  # what is live now
    reloaded: Reloaded


def rollback(
    c: Connection, s: Settings, to: str | None, lock_info: str, reporter: Reporter | None = None, undo: bool = False
) -> RolledBack:
    """Point `current` at `to` (default: the one before the live one, along the history) and reload.

    `undo`: put back what a rollback of this same run changed (a fleet's all-or-none): the release left is
    not marked rolled back from, and the history loses the entry that rollback added.
    """
    if to is not None and not releases.valid_id(to):
        raise NothingToRollBack(
            f"{c.original_host}: --to {to!r} is not a release id (like 20261123T101500Z-abc1234); see: fab releases",
            str(c.original_host),
        )
    out = _run(c, s, "rollback", {"TO": to or "", "UNDO": undo}, reporter, lock_info)
    previous, target = _switched(out)
    return RolledBack(previous, target, _reloaded(s, out))


def _switched(out: Outcome) -> tuple[str, str]:
    for e in out.events:
        parts = e.split()
        if parts[0] == "switched":
            return (parts[1] if len(parts) > 2 else "", parts[-1])
    return ("", "")


def reload(c: Connection, s: Settings, lock_info: str, reporter: Reporter | None = None) -> Reloaded:
    """Reload with `s.reload_strategy` (use dataclasses.replace(s, reload=...) for another), then health-check."""
    return _reloaded(s, _run(c, s, "reload", {}, reporter, lock_info))


def status(c: Connection, s: Settings) -> dict[str, object]:
    """What the host runs (one command): releases, lock, MPM, the app's own word, processes, health, disk."""
    out = _run(c, s, "status", {}, None)
    listing = releases.parse(["@@" + e for e in out.events])
    log: list[str] = []
    procs: list[dict[str, object]] = []
    slots: list[dict[str, object]] = []
    result: dict[str, object] = {
        "host": c.original_host,
        "current": listing.current,
        "releases": [
            {**r.__dict__, "live": r.id == listing.current, "date": _date(r.id)} for r in listing.releases
        ],
        "mpm": None,
        "mode": None,
        "app": None,
        "lock": None,
        "health": None,
        "deployed": None,
        "watched": None,
        "maintenance": None,
        "processes": procs,
        "slots": slots,
        "warm": None,
        "disk_kib": {},
        "log": log,
    }
    for e in out.events:
        kind, _, rest = e.partition(" ")
        if kind == "mpm":
            result["mpm"] = rest.strip() or None
        elif kind == "app":
            try:
                app = json.loads(rest)
                result["app"] = app
                if "process_group" in app:
                    result["mode"] = apache.mode_of(app.get("process_group", ""))
            except ValueError:
                result["app"] = {"error": rest.strip()}
        elif kind == "health":
            result["health"] = rest.strip()
        elif kind == "watched":
            result["watched"] = rest.strip()
        elif kind == "maintenance":
            result["maintenance"] = rest.strip()
        elif kind == "proc":
            pid, _, more = rest.strip().partition(" ")
            age, _, started = more.strip().partition(" ")
            procs.append({"pid": int(pid), "seconds": int(age or 0), "started": started.strip()})
        elif kind == "slot":
            # 'SLOT RELEASE live|idle|spare PID,PID|- RSS_KIB' (status.sh)
            f = (rest.split() + ["", "", "", "-", "0"])[:5]
            pids = [int(p) for p in f[3].split(",") if p.isdigit()]
            slots.append({
                "slot": f[0], "release": f[1] or None, "live": f[2] == "live", "role": f[2],
                "pids": pids, "rss_kib": int(f[4] or 0),
            })
        elif kind == "warm":
            # 'PID RSS_KIB VENV' (status.sh): the import check kept warm for the next deploy
            f = (rest.split() + ["0", "0", ""])[:3]
            if f[0].isdigit():
                result["warm"] = {"pid": int(f[0]), "rss_kib": int(f[1]) if f[1].isdigit() else 0, "venv": f[2]}
        elif kind == "disk":
            sizes = (rest.split() + ["0", "0"])[:2]
            result["disk_kib"] = {"releases": int(sizes[0] or 0), "venvs": int(sizes[1] or 0)}
        elif kind == "deployed":
            # 'TIME DEPLOYER ACTION ID REVISION RESULT' (log_revision in lib.sh)
            f = rest.split()
            if len(f) >= 6:
                result["deployed"] = {"at": f[0], "by": f[1], "action": f[2], "release": f[3], "revision": f[4]}
        elif kind == "lock":
            result["lock"] = lock.parse(e)
        elif kind == "log":
            log.append(rest)
    return result


def _date(release_id: str) -> str | None:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(releases.id_time(release_id)))
    except ValueError:
        return None


def unlock(c: Connection, s: Settings, force: bool = False) -> dict[str, str] | None:
    """Remove the lock; refused (LockHeld) while the holder's step still runs on the host, unless `force`."""
    out = _run(c, s, "unlock", {"FORCE": force}, None)
    held = remote.whole(out.events, "lock")
    return lock.parse(held) if held else None


def ship(c: Connection, s: Settings, archive: bytes, lock_info: str, reporter: Reporter | None = None) -> Outcome:
    """`fab watch`: rename saved files into the live release and reload (deploy/watch.py)."""
    # The monitor restarts a process within a second or two of a changed module; past that, reload.
    extra: dict[str, Value] = {"MONITOR": s.dev, "ROLL_TIMEOUT": 5 + s.daemon.shutdown_timeout}
    return _run(c, s, "ship", extra, reporter, lock_info, stdin=archive)


def install_uv(c: Connection, s: Settings, gz: bytes, reporter: Reporter | None = None) -> None:
    """Put this machine's uv into `<deploy_to>/tools/uv-<version>/` (gzipped binary on stdin)."""
    _run(c, s, "tools", {}, reporter, stdin=gz)
def check(c: Connection, s: Settings) -> list[dict[str, object]]:
    """`fab check` (one read-only command): each prerequisite as {name, status (ok/warn/fail), detail, fix}."""
    return checks(_run(c, s, "check", {}, None).events)


def checks(events: tuple[str, ...] | list[str]) -> list[dict[str, object]]:
    """The checks from check.sh's 'check NAME STATUS WHAT' events; 'fix NAME LINE' events go to the one before."""
    found: list[dict[str, object]] = []
    for e in events:
        kind, _, rest = e.partition(" ")
        if kind == "check":
            name, status, detail = (rest.split(" ", 2) + ["", ""])[:3]
            found.append({"name": name, "status": status, "detail": detail, "fix": []})
        elif kind == "fix" and found:
            fixes = found[-1]["fix"]
            assert isinstance(fixes, list)
            fixes.append(rest.partition(" ")[2])
    return found


def logs(
    c: Connection, s: Settings, on_line: Callable[[str, str], None], access: bool = False, lines: int = 50,
    since: int = 0, follow: bool = False,
) -> int:
    """`fab logs`: each line of the app's error (or access) log goes to on_line(host, line) as it comes: the
    last `lines` of them, only those of the last `since` seconds (0: any), then new ones while `follow`.
    Returns how many lines came."""
    name = str(c.original_host)
    count = 0

    def event(e: str) -> None:
        nonlocal count
        kind, _, rest = e.partition(" ")
        if kind == "out":
            count += 1
            on_line(name, rest)

    extra: dict[str, Value] = {"WHICH": "access" if access else "error", "LINES": lines, "SINCE": since, "FOLLOW": follow}
    _run(c, s, "logs", extra, None, on_event=event, passing=("out", "tick"))
    return count


def exec_command(
    c: Connection,
    s: Settings,
    argv: Sequence[str],
    on_stdout: Callable[[bytes], None],
    on_stderr: Callable[[bytes], None],
    shell: bool = False,
    terminal: Callable[[Any], None] | None = None,
    size: tuple[int, int] = (80, 24),
    term: str = "xterm",
) -> int:
    """`fab exec`: run `argv` (`shell`: argv[0] is a shell command line) in the live release, with the app's venv,
    home, python path and environment; its output goes to on_stdout/on_stderr as it comes (with `terminal`: on
    a pty, see remote.run_command). Returns the command's exit code; the script's own failures raise."""
    extra: dict[str, Value] = {
        "HOME_DIR": s.home,
        "PY_PATH": list(s.python_path),
        "DJANGO_SETTINGS": s.django_settings,
        "CMD": list(argv),
        "CMD_SHELL": shell,  # argv[0] is a shell command line (fab exec 'a | b'), else the words as given
        "TTY": terminal is not None,
    }
    text = remote.script("exec", {**variables(s), **extra})
    ran = remote.run_command(c, text, on_stdout, on_stderr, terminal, size, term)
    if not ran.ran:
        _raise_for(str(c.original_host), "exec", Outcome(ran.code or 1, (), ran.stderr))
    return ran.code


def maintenance(c: Connection, s: Settings, on: bool, page: str = "") -> str:
    """`fab maintenance on` (the 503 `page` in place, checked as a visitor sees it) or off; what it did."""
    out = _run(c, s, "maintenance", {"ACTION": "on" if on else "off"}, None, stdin=page.encode() if on else None)
    return remote.value(out.events, "maintenance", last=True) or ("on" if on else "off")


def setup(c: Connection, s: Settings, vhost: str, lock_info: str, reporter: Reporter | None = None) -> Outcome:
    extra: dict[str, Value] = {"SHARED_DIRS": list(s.shared_dirs), "SHARED_FILES": list(s.shared_files)}
    return _run(c, s, "setup", extra, reporter, lock_info, stdin=vhost.encode())


__all__ = [
    "LockHeld",
    "PrepareArgs",
    "Reloaded",
    "RolledBack",
    "abort",
    "begin",
    "check",
    "checks",
    "exec_command",
    "leave",
    "logs",
    "maintenance",
    "prepare",
    "reload",
    "rollback",
    "setup",
    "ship",
    "status",
    "survey",
    "switch",
    "unlock",
]
