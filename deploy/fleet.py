"""Many hosts at once, for every task that changes hosts: deploy, rollback, reload, setup, unlock.

Built on Fabric's ThreadingGroup/GroupResult: the hosts are a group, each phase runs on every host
of a batch in threads (at most `parallel` at a time), and a GroupResult says which hosts failed.

- All-or-none (default): every host prepares (upload, venv, hooks, configtest) under its lock; only
  when all succeed does any host switch. A failed prepare anywhere: no host switches, the prepared
  releases are removed, the locks freed. A failed switch/reload/health check on one host: the hosts
  already switched are rolled back, so the fleet ends on one version.
- Batches (`batch=2` or `"25%"`): switch, reload and health-check one batch, then the next. A failed
  batch stops the rollout and is rolled back; earlier batches stay on the new release (said in the
  error) unless `rollback_all_on_failure`.
- Hooks with `once: true` (e.g. migrate on a shared database) run on the first host only, before any switch.
- Rollback: every host (or batch) rolls back in parallel, one command each; when one fails, the hosts
  that did roll back are put back on the release they had (all-or-none), and the error says where each is.
- Reload: in parallel (or batches); a failed batch stops the next ones. Setup, unlock, status, check: in parallel.
- Setup checks every host first (`fab check`): when one lacks a prerequisite, no host is changed.

Every host operation goes through a `release.Ops` passed in (`ops=`): tests/test_fleet.py checks these
decisions with fake operations, without a server. One host: its own error, not a FleetError.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabric import Connection, GroupResult, ThreadingGroup

from deploy import host, lock, releases, render, source
from deploy.config import Settings
from deploy.errors import CheckFailed, ConfigError, DeployError, FleetError, LockHeld, short
from deploy.output import Reporter
from deploy.release import OPS, Ahead, Ops, dependencies_of, fingerprint, load_source


@dataclass
class HostRun:
    """One host's part in a task: what it did, and what it is left on."""

    conn: Connection
    lock_info: str = ""
    release_id: str = ""
    prepared: host.PrepareArgs | None = None
    previous: str | None = None
    locked: bool = False
    result: str = "pending"
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    reload: str | None = None
    health: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.conn.original_host)

    def done(self, result: str) -> None:
        self.result = result
        self.seconds = time.monotonic() - self.started

    def as_dict(self) -> dict[str, Any]:
        """The host's entry in the JSON document."""
        return {
            "host": self.name,
            "result": self.result,
            "release": self.release_id or None,
            "previous": self.previous,
            "seconds": round(self.seconds or time.monotonic() - self.started, 3),
            "reload": self.reload,
            "health": self.health,
        }


def batches(hosts: Sequence[Any], batch: str | int | None) -> list[list[Any]]:
    """Split hosts into switch batches: None = one batch (all-or-none), N hosts, or 'P%' of them."""
    if batch in (None, "", 0, "0"):
        return [list(hosts)]
    text = str(batch)
    try:
        size = math.ceil(len(hosts) * float(text[:-1]) / 100) if text.endswith("%") else int(text)
    except ValueError as exc:
        raise ConfigError(f"--batch must be a number of hosts or a percentage like 25%, got {batch!r}") from exc
    if size < 1:
        raise ConfigError(f"--batch must select at least one host, got {batch!r}")
    return [list(hosts[i : i + size]) for i in range(0, len(hosts), size)]


def each(conns: Sequence[Any], fn: Callable[[Any], Any], parallel: int) -> GroupResult:
    """Run fn on every connection in threads, at most `parallel` at once; a thread that is done takes the next
    host at once (fixed chunks waited for their slowest host before the next chunk began)."""
    members = list(ThreadingGroup.from_connections(conns))
    results = GroupResult()
    todo = iter(members)
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                c = next(todo, None)
            if c is None:
                return
            try:
                results[c] = fn(c)
            except BaseException as exc:  # noqa: BLE001 - every host's failure is a result (GroupResult.failed)
                results[c] = exc

    threads = [threading.Thread(target=work, daemon=True) for _ in range(min(len(members), max(1, parallel)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


class Connecting:
    """The first hosts' connections (as many as `parallel`, the ones a deploy's begin takes first), opened in
    threads while the client reads the source, resolves secrets and renders the templates: the SSH handshake
    is the longest wait before a deploy's command (several round trips on a slow link). Opening changes
    nothing on a host (the begin takes the lock). `connect(c)` is the connect the begin would do, its error
    included; `close()`, once the deploy is over (a bad input stops it before any begin), ends what no begin
    took: it waits for the handshakes under way, calls off the connects still waiting for TCP, and closes.

    No handshake may be under way when the interpreter exits: cut inside the crypto library's native code,
    it aborted the process (SIGABRT, "FATAL: exception not rethrown") after its one-line error. A thread still
    waiting for TCP may be left to the exit (a host that does not answer must not hold the error up)."""

    def __init__(self, conns: Sequence[Connection], parallel: int = 10, ops: Ops = OPS) -> None:
        self.ops = ops
        self.errors: dict[Connection, BaseException] = {}
        self.threads: dict[Connection, threading.Thread] = {}
        self.untaken: set[Connection] = set()  # close() came first: never handshaken, or closed once open
        self.handshaking: set[Connection] = set()
        self.closed: set[Connection] = set()
        self.lock = threading.Lock()
        for c in list(conns)[: max(1, parallel)]:
            t = threading.Thread(target=self._open, args=(c,), name=f"connect-{c.original_host}", daemon=True)
            self.threads[c] = t
            t.start()

    def _open(self, c: Connection) -> None:
        try:
            self.ops.connect(c, lambda: self._wanted(c))
        except BaseException as exc:  # noqa: BLE001 - the begin raises it, on its host
            self.errors[c] = exc
            return
        with self.lock:
            if c in self.untaken:
                self.closed.add(c)
                c.close()

    def _wanted(self, c: Connection) -> bool:
        with self.lock:
            if c in self.untaken:
                return False
            self.handshaking.add(c)
            return True

    def connect(self, c: Connection) -> None:
        with self.lock:
            t = self.threads.pop(c, None)
        if t is None:
            self.ops.connect(c)
            return
        t.join()
        exc = self.errors.pop(c, None)
        if exc is not None:
            raise exc

    def close(self) -> None:
        with self.lock:
            self.untaken.update(self.threads)
            left, self.threads = self.threads, {}
            under_way = [t for c, t in left.items() if c in self.handshaking]
        for t in under_way:
            t.join()  # bounded by the handshake's own timeouts
        with self.lock:
            for c, t in left.items():
                if not t.is_alive() and c not in self.errors and c not in self.closed:
                    self.closed.add(c)
                    c.close()


def _fail(message: str, errors: dict[str, BaseException], runs: Sequence[HostRun]) -> FleetError | BaseException:
    """The error a task ends with: one host's own error, or a FleetError naming every host's."""
    if len(runs) == 1 and len(errors) == 1:
        return next(iter(errors.values()))
    return FleetError(message, errors, [r.as_dict() for r in runs])


def _where(i: int, plan_batches: list[list[Any]], result: GroupResult, conns: Sequence[Any]) -> str:
    return f"batch {i + 1} of {len(plan_batches)}" if len(plan_batches) > 1 else f"{len(result.failed)} of {len(conns)} hosts"


def _errors(result: GroupResult, runs: dict[Any, HostRun]) -> dict[str, BaseException]:
    return {runs[c].name: exc for c, exc in result.failed.items()}


# ---- deploy


def deploy(
    conns: Sequence[Connection],
    s: Settings,
    project_dir: Path,
    ref: str | None = None,
    reporter: Reporter | None = None,
    parallel: int = 10,
    batch: str | int | None = None,
    rollback_all_on_failure: bool = False,
    rollback_on_failure: bool = True,
    src: source.Source | None = None,
    ops: Ops = OPS,
    keep_maintenance: bool = False,
    force: bool = False,
    connecting: Connecting | None = None,
) -> list[HostRun]:
    """Deploy one release to every host; see the module's docstring for what happens on failure. A host in
    maintenance refuses in `begin` (InMaintenance), before anything changes, unless `keep_maintenance`.
    `connecting`: the connections already being opened (Connecting, started before the source was read).

    When every host's live release is the one this deploy would make (same fingerprint: revision, files,
    dependencies, settings), nothing is deployed and every host's result is 'unchanged'; `force` deploys anyway.
    """
    rep = reporter or Reporter(quiet=True)
    if s.reload_note:
        rep.line("all", s.reload_note)
    src = src or load_source(s, project_dir, ref)
    release_id = releases.new_id(src.short_revision)
    rendered = render.render(s, release_id, src.revision, project_dir)  # template errors before any lock
    plan_batches = batches(conns, batch)
    runs = {c: HostRun(c, lock.info("deploy"), release_id) for c in conns}
    try:
        failure = _deploy(
            conns, s, project_dir, rep, parallel, plan_batches, batch, rollback_all_on_failure, rollback_on_failure, src, runs,
            rendered, ops, keep_maintenance, force, connecting or Connecting((), parallel, ops),
        )
    except BaseException as exc:
        # Ctrl-C (or a bug) half-way: free every lock we hold; the half-made releases are marked failed.
        # A host already switching is left alone: its switch is one remote command that finishes by itself.
        switching = [runs[c].name for c in conns if runs[c].result == "switching"]
        for c in conns:
            if runs[c].result == "switching":
                runs[c].locked = False
                runs[c].result = "interrupted while switching (finishes on the host; see fab status)"
        _abort(conns, runs, s, parallel, ops, remove=False)
        if switching and isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt(
                f"during the switch; {', '.join(switching)} finish switching on their own (one remote command each):"
                " check with fab status"
            ) from exc
        raise
    if failure is not None:
        raise failure
    flips = [r.details["switched_at"] for r in runs.values() if "switched_at" in r.details]
    if len(flips) > 1 and len(plan_batches) == 1:
        # With slots every host was loaded and checked before any switch: the switches are the flips alone.
        skew = (max(flips) - min(flips)) * 1000
        rep.line("all", f"switched {len(flips)} hosts within {skew:.0f} ms (first to last switch returned)")
        for r in runs.values():
            r.details["switch_skew_ms"] = round(skew, 1)
    return list(runs.values())


def _deploy(
    conns: Sequence[Connection],
    s: Settings,
    project_dir: Path,
    rep: Reporter,
    parallel: int,
    plan_batches: list[list[Connection]],
    batch: str | int | None,
    rollback_all_on_failure: bool,
    rollback_on_failure: bool,
    src: source.Source,
    runs: dict[Connection, HostRun],
    rendered: dict[str, str],
    ops: Ops,
    keep_maintenance: bool,
    force: bool,
    connecting: Connecting,
) -> BaseException | None:
    """The deploy itself; the error it ends with is returned (every host already dealt with), not raised."""
    first = conns[0]
    facts: dict[Connection, host.Facts] = {}
    # One host: no other host's prepare to wait for, its switch starts on the host as soon as it is prepared.
    alone = len(conns) == 1

    def begin(c: Connection) -> None:
        run = runs[c]
        connecting.connect(c)  # the connection opened ahead, or one opened now
        # Locked from the start: Ctrl-C while begin runs may leave the lock taken. Freeing it is safe
        # either way, as abort removes only a lock holding this run's token.
        run.locked = True
        # One host: its prepare may go with the begin, made from what this machine last left there.
        ahead = Ahead(src, run.release_id, project_dir, rendered, rollback_on_failure, True, force) if alone else None
        try:
            facts[c] = ops.begin(c, s, run.lock_info, rep, keep_maintenance, ahead)
        except LockHeld:
            run.locked = False
            raise
        run.previous = facts[c].listing.current

    def prepare(c: Connection) -> None:
        run = runs[c]
        # once-hooks (a migration on a shared database) run on the first host only.
        hs = s if c is first else _without_once_hooks(s)
        run.prepared = ops.prepare(
            c, hs, src, run.release_id, facts[c], run.lock_info, rep, project_dir, rendered, rollback_on_failure,
            alone,
        )
        run.result = "prepared"

    prepared = each(conns, begin, parallel)
    if not prepared.failed and not force and all(facts[c].fingerprint for c in conns):
        made_of = fingerprint(s, src, runs[first].release_id, rendered, dependencies_of(s, src))
        if all(facts[c].fingerprint == made_of for c in conns):
            return _unchanged(conns, runs, facts, s, rep, parallel, ops)
    if not prepared.failed:
        # One id on every host; a deploy within the same second as the last one takes the next second.
        taken = tuple(r.id for f in facts.values() for r in f.listing.releases)
        first_id = runs[first].release_id
        release_id = releases.new_id(src.short_revision, now=releases.id_time(first_id), taken=taken)
        if release_id != first_id:  # the templates name the release: render them again for the id it got
            rendered = render.render(s, release_id, src.revision, project_dir)
        for run in runs.values():
            run.release_id = release_id
        prepared = each(conns, prepare, parallel)
    if prepared.failed:
        for c in prepared.failed:
            runs[c].result = "failed"
        _abort(conns, runs, s, parallel, ops)
        return _fail(
            f"prepare failed on {len(prepared.failed)} of {len(conns)} hosts; no host was switched",
            _errors(prepared, runs),
            list(runs.values()),
        )

    done: list[Connection] = []
    for i, group in enumerate(plan_batches):

        def switch(c: Connection) -> None:
            run = runs[c]
            assert run.prepared is not None
            run.result = "switching"
            reloaded = ops.switch(c, s, run.prepared, run.lock_info, rep, rollback_on_failure)
            run.locked = False
            run.reload, run.health = reloaded.reload, reloaded.health
            run.details["switched_at"] = time.time()  # when its switch (with slots: the flip) came back
            run.done("live")

        switched = each(group, switch, parallel)
        for c in switched.failed:
            runs[c].locked = False  # the switch phase unlocks (and rolls itself back) on failure
            runs[c].result = "failed, rolled back"
        if not switched.failed:
            done.extend(group)
            continue
        later = [c for g in plan_batches[i + 1 :] for c in g]
        _abort(later, runs, s, parallel, ops)
        back = [c for c in group if c in switched.succeeded]
        if batch is None or rollback_all_on_failure:
            back += done
        stuck = _compensate(back, runs, s, parallel, rep, ops)
        kept = [runs[c].name for c in done if c not in back]
        where = f"batch {i + 1} of {len(plan_batches)}" if len(plan_batches) > 1 else "the switch"
        new_release = runs[first].release_id
        tail = ""
        if kept:
            tail += f"; {', '.join(kept)} stay on {new_release} (earlier batches)"
        if stuck:
            tail += f"; rolling back failed on {', '.join(runs[c].name for c in stuck)}: still on {new_release}"
        if not kept and not stuck:
            tail = "; the fleet is on its previous release"
        errors = _errors(switched, runs)
        errors.update({runs[c].name: exc for c, exc in stuck.items()})
        return _fail(f"{where} failed{tail}", errors, list(runs.values()))
    return None


def _unchanged(
    conns: Sequence[Connection],
    runs: dict[Connection, HostRun],
    facts: dict[Connection, host.Facts],
    s: Settings,
    rep: Reporter,
    parallel: int,
    ops: Ops,
) -> BaseException | None:
    """Every host already runs what this deploy would make: free the locks, deploy nothing."""

    def leave(c: Connection) -> None:
        run = runs[c]
        ops.leave(c, s, facts[c], run.lock_info)
        run.locked = False
        run.release_id = facts[c].listing.current or ""
        run.done("unchanged")

    left = each(conns, leave, parallel)
    if left.failed:
        return _fail("freeing the lock failed", _errors(left, runs), list(runs.values()))
    live = sorted({runs[c].release_id for c in conns})
    rep.line("all", f"unchanged: {', '.join(live)} is live with this revision, files and settings; nothing deployed"
             " (fab deploy --force deploys anyway)")
    return None


def _without_once_hooks(s: Settings) -> Settings:
    return dataclasses.replace(s, hooks=tuple(h for h in s.hooks if not h.once))


def _abort(
    conns: Sequence[Connection],
    runs: dict[Connection, HostRun],
    s: Settings,
    parallel: int,
    ops: Ops,
    remove: bool = True,
) -> None:
    """Unlock hosts that prepared (or were preparing) and remove their unused release."""

    def abort(c: Connection) -> None:
        run = runs[c]
        if run.locked:
            ops.abort(c, s, run.lock_info, run.release_id, remove and run.result != "failed")
            run.locked = False
            if run.result != "failed":
                run.result = "not switched"

    each([c for c in conns if runs[c].locked], abort, parallel)


def _compensate(
    conns: Sequence[Connection], runs: dict[Connection, HostRun], s: Settings, parallel: int, rep: Reporter, ops: Ops
) -> dict[Connection, BaseException]:
    """Put switched hosts back on their previous release; the hosts where that failed, with why."""

    def back(c: Connection) -> None:
        run = runs[c]
        if run.previous:
            ops.rollback(c, s, run.previous, lock.info("rollback"), rep)
            run.done(f"rolled back to {run.previous}")
        else:
            run.done("live (nothing to roll back to)")

    result = each(conns, back, parallel)
    for c, exc in result.failed.items():
        runs[c].result = f"rolling back failed, still on {runs[c].release_id}: {short(runs[c].name, exc)}"
    return dict(result.failed)


# ---- rollback, reload, setup, unlock, status


def rollback(
    conns: Sequence[Connection],
    s: Settings,
    to: str | None = None,
    reporter: Reporter | None = None,
    parallel: int = 10,
    batch: str | int | None = None,
    ops: Ops = OPS,
) -> list[HostRun]:
    """Roll every host back (one command each, in parallel or in batches), all-or-none: when a host fails,
    the hosts that rolled back (in its batch; in every batch without --batch) are put back where they were."""
    rep = reporter or Reporter(quiet=True)
    runs = {c: HostRun(c, lock.info("rollback")) for c in conns}
    done: list[Connection] = []
    plan_batches = batches(conns, batch)
    for i, group in enumerate(plan_batches):

        def back(c: Connection) -> None:
            run = runs[c]
            ops.connect(c)
            rb = ops.rollback(c, s, to, run.lock_info, rep)
            run.previous, run.release_id = rb.previous, rb.target
            run.reload, run.health = rb.reloaded.reload, rb.reloaded.health
            run.done("live")

        result = each(group, back, parallel)
        for c in result.failed:
            runs[c].done("failed")
        if not result.failed:
            done.extend(group)
            continue
        undo = [c for c in group if c in result.succeeded] + (done if batch is None else [])
        stuck = _undo(undo, runs, s, parallel, rep, ops)
        for c in (c for g in plan_batches[i + 1 :] for c in g):
            runs[c].result = "not rolled back"
        kept = [runs[c].name for c in done if c not in undo]
        tail = f"; {', '.join(kept)} stay rolled back (earlier batches)" if kept else ""
        if stuck:
            tail += f"; putting back failed on {', '.join(runs[c].name for c in stuck)}: they stay rolled back"
        if not kept and not stuck:
            tail = "; every host is on the release it had"
        errors = _errors(result, runs)
        errors.update({runs[c].name: exc for c, exc in stuck.items()})
        raise _fail(f"rollback failed on {_where(i, plan_batches, result, conns)}{tail}", errors, list(runs.values()))
    return list(runs.values())


def _undo(
    conns: Sequence[Connection], runs: dict[Connection, HostRun], s: Settings, parallel: int, rep: Reporter, ops: Ops
) -> dict[Connection, BaseException]:
    """Put hosts that rolled back in this run back on the release they had; the ones where that failed."""

    def forward(c: Connection) -> None:
        run = runs[c]
        ops.rollback(c, s, run.previous, lock.info("rollback"), rep, undo=True)
        run.release_id, run.previous = run.previous or "", run.release_id
        run.done(f"put back on {run.release_id}")

    result = each(conns, forward, parallel)
    for c, exc in result.failed.items():
        runs[c].result = f"putting back failed, rolled back to {runs[c].release_id}: {short(runs[c].name, exc)}"
    return dict(result.failed)


def reload(
    conns: Sequence[Connection],
    s: Settings,
    reporter: Reporter | None = None,
    parallel: int = 10,
    batch: str | int | None = None,
    ops: Ops = OPS,
) -> list[HostRun]:
    """Reload every host (in parallel, or batch after batch); a failed batch stops the ones after it."""
    rep = reporter or Reporter(quiet=True)
    runs = {c: HostRun(c, lock.info("reload")) for c in conns}
    plan_batches = batches(conns, batch)
    for i, group in enumerate(plan_batches):

        def one(c: Connection) -> None:
            run = runs[c]
            ops.connect(c)
            reloaded = ops.reload(c, s, run.lock_info, rep)
            run.reload, run.health = reloaded.reload, reloaded.health
            run.done("ok")

        result = each(group, one, parallel)
        for c in result.failed:
            runs[c].done("failed")
        if result.failed:
            for c in (c for g in plan_batches[i + 1 :] for c in g):
                runs[c].result = "not reloaded"
            where = _where(i, plan_batches, result, conns)
            raise _fail(f"reload failed on {where}", _errors(result, runs), list(runs.values()))
    return list(runs.values())


def _on_each(
    conns: Sequence[Connection], fn: Callable[[HostRun], None], parallel: int, what: str, ops: Ops
) -> list[HostRun]:
    runs = {c: HostRun(c) for c in conns}

    def one(c: Connection) -> None:
        ops.connect(c)
        fn(runs[c])

    result = each(conns, one, parallel)
    for c in result.failed:
        runs[c].done("failed")
    if result.failed:
        raise _fail(f"{what} failed on {len(result.failed)} of {len(conns)} hosts", _errors(result, runs), list(runs.values()))
    return list(runs.values())


def setup(
    conns: Sequence[Connection],
    s: Settings,
    project_dir: Path,
    reporter: Reporter | None = None,
    parallel: int = 10,
    ops: Ops = OPS,
) -> list[HostRun]:
    """Create the layout and install the vhost on every host (a live app's vhost is left to its next deploy)."""
    rep = reporter or Reporter(quiet=True)
    checked = check(conns, s, parallel, ops)
    for run in checked:
        for item in run.details["checks"]:
            if item["status"] == "warn":
                rep.line(run.name, f"check {item['name']}: {item['detail']}")
    failure = check_error([(r.name, r.details["checks"]) for r in checked])
    if failure is not None:
        raise failure
    # The vhost depends neither on the release nor on the environment: setup resolves no secret.
    vhost = render.render(dataclasses.replace(s, environment={}), "setup", "-", project_dir)["vhost.conf"]

    def one(run: HostRun) -> None:
        ops.setup(run.conn, s, vhost, lock.info("setup"), rep)
        run.done("ok")

    return _on_each(conns, one, parallel, "setup", ops)


def unlock(conns: Sequence[Connection], s: Settings, force: bool = False, parallel: int = 10, ops: Ops = OPS) -> list[HostRun]:
    """Remove every host's lock (details['lock']: the lock removed, or None)."""

    def one(run: HostRun) -> None:
        run.details["lock"] = ops.unlock(run.conn, s, force)
        run.done("unlocked" if run.details["lock"] else "not locked")

    return _on_each(conns, one, parallel, "unlock", ops)


def status(conns: Sequence[Connection], s: Settings, parallel: int = 10, ops: Ops = OPS) -> list[HostRun]:
    """Every host's status (one read-only command each, in parallel): details = host.status's dict."""

    def one(run: HostRun) -> None:
        run.details = ops.status(run.conn, s)
        run.release_id = str(run.details.get("current") or "")
        run.done("ok")

    return _on_each(conns, one, parallel, "status", ops)


def logs(
    conns: Sequence[Connection],
    s: Settings,
    on_line: Callable[[str, str], None],
    access: bool = False,
    lines: int = 50,
    since: int = 0,
    follow: bool = False,
    ops: Ops = OPS,
) -> list[HostRun]:
    """Every host's app log at once (one read-only command each, all in parallel: following, each host streams
    until Ctrl-C, which closes every connection so that each host's command ends too). details['lines']: count."""

    def one(run: HostRun) -> None:
        run.details["lines"] = ops.logs(run.conn, s, on_line, access, lines, since, follow)
        run.done("ok")

    try:
        return _on_each(conns, one, len(conns), "logs", ops)
    except KeyboardInterrupt:
        for c in conns:
            c.close()
        raise KeyboardInterrupt("stopped reading the logs") from None


def maintenance(conns: Sequence[Connection], s: Settings, on: bool, page: str = "", ops: Ops = OPS) -> list[HostRun]:
    """Maintenance mode on (every host shows `page`, 503) or off, in parallel; details['maintenance']: what each did.

    A host that fails is left off (the page is removed again when the vhost would not show it); the others
    keep what they did, said per host in the error.
    """

    def one(run: HostRun) -> None:
        run.details["maintenance"] = ops.maintenance(run.conn, s, on, page)
        run.done("ok")

    return _on_each(conns, one, len(conns), "maintenance", ops)


def exec_command(
    conns: Sequence[Connection],
    s: Settings,
    argv: Sequence[str],
    on_stdout: Callable[[str, bytes], None],
    on_stderr: Callable[[str, bytes], None],
    shell: bool = False,
    terminal: Callable[[Any], None] | None = None,
    size: tuple[int, int] = (80, 24),
    term: str = "xterm",
    ops: Ops = OPS,
) -> list[HostRun]:
    """Run a command in the live release of every host at once (a terminal: one host only); each host's output
    to on_stdout/on_stderr(host, data) as it comes; details['exit_code']: the command's exit code."""
    if terminal is not None and len(conns) != 1:
        raise ConfigError("a command with a terminal runs on one host")

    def one(run: HostRun) -> None:
        name = run.name
        run.details["exit_code"] = ops.exec_command(
            run.conn, s, argv, lambda d: on_stdout(name, d), lambda d: on_stderr(name, d), shell, terminal, size, term
        )
        run.done("ok" if run.details["exit_code"] == 0 else f"exited {run.details['exit_code']}")

    try:
        return _on_each(conns, one, len(conns), "exec", ops)
    except KeyboardInterrupt:
        for c in conns:
            c.close()  # each host's command sees its channel close, and is stopped (exec.sh)
        raise KeyboardInterrupt("the command was stopped on the host") from None


def check(conns: Sequence[Connection], s: Settings, parallel: int = 10, ops: Ops = OPS) -> list[HostRun]:
    """Every host's prerequisites (one read-only command each): details['checks'], result 'ok' or 'failed'.

    A failed check is a result, not an error (see check_error); only an unreachable host raises.
    """

    def one(run: HostRun) -> None:
        run.details["checks"] = ops.check(run.conn, s)
        run.done("failed" if _failed_checks(run) else "ok")

    return _on_each(conns, one, parallel, "check", ops)


def _failed_checks(run: HostRun) -> list[dict[str, Any]]:
    return [x for x in run.details.get("checks", []) if x["status"] == "fail"]


def check_error(found: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]) -> DeployError | None:
    """The error of the hosts (name, checks) whose checks failed: one host's CheckFailed, or a FleetError
    naming each (exit 9 either way); None when none failed."""
    errors = {}
    for name, items in found:
        failed = [x for x in items if x["status"] == "fail"]
        if failed:
            errors[name] = CheckFailed(name, failed)
    if not errors:
        return None
    if len(found) == 1:
        return next(iter(errors.values()))
    hosts = [{"host": name, "result": "failed" if name in errors else "ok", "release": None} for name, _ in found]
    return FleetError(f"{len(errors)} of {len(found)} hosts lack prerequisites", errors, hosts)


__all__ = [
    "HostRun", "batches", "check", "check_error", "deploy", "each", "exec_command", "logs", "maintenance", "reload", "rollback",
    "setup",
    "status", "unlock",
]
