"""Many hosts at once: prepare everywhere, then switch all-or-none (or in batches); never half-switched.

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
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabric import Connection, GroupResult, ThreadingGroup
from invoke.util import ExceptionHandlingThread

from deploy import api, host, lock, releases, render, source
from deploy.config import Settings
from deploy.connect import open_connection
from deploy.errors import ConfigError, DeployError, LockHeld
from deploy.output import Reporter


class FleetError(DeployError):
    """Some hosts failed; carries each host's error and what the fleet was left on."""

    def __init__(self, message: str, errors: dict[str, BaseException], runs: Sequence[HostRun] = ()) -> None:
        self.errors = errors
        self.runs = list(runs)
        codes = {getattr(e, "exit_code", 1) for e in errors.values()}
        self.exit_code = codes.pop() if len(codes) == 1 else 5
        details = "; ".join(f"{h}: {_short(h, e)}" for h, e in errors.items())
        super().__init__(f"{message} ({details})")


def _short(name: str, exc: BaseException) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return msg[len(name) + 2 :] if msg.startswith(f"{name}: ") else msg


@dataclass
class HostRun:
    conn: Connection
    lock_info: str
    release_id: str = ""
    plan: host.Plan | None = None
    previous: str | None = None
    locked: bool = False
    result: str = "pending"
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return str(self.conn.original_host)


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


def each(conns: Sequence[Connection], fn: Callable[[Connection], Any], parallel: int) -> GroupResult:
    """Run fn on every connection in threads, `parallel` at a time (as ThreadingGroup does for run())."""
    group = ThreadingGroup.from_connections(conns)
    results = GroupResult()
    members = list(group)
    for start in range(0, len(members), max(1, parallel)):
        chunk = members[start : start + max(1, parallel)]
        threads = []
        for c in chunk:
            t = ExceptionHandlingThread(target=lambda c=c: results.__setitem__(c, fn(c)))
            threads.append((c, t))
            t.start()
        for c, t in threads:
            t.join()
            wrapper = t.exception()
            if wrapper is not None:
                results[c] = wrapper.value
    return results


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
) -> list[HostRun]:
    """Deploy one release to every host; see the module's docstring for what happens on failure."""
    rep = reporter or Reporter(quiet=True)
    if s.reload_note:
        rep.line("all", s.reload_note)
    src = src or api.load_source(s, project_dir, ref)
    release_id = releases.new_id(src.short_revision)
    rendered = render.render(s, release_id, src.revision, project_dir)  # template errors before any lock
    plan_batches = batches(conns, batch)
    runs = {c: HostRun(c, lock.info("deploy"), release_id) for c in conns}
    try:
        return _deploy(
            conns,
            s,
            project_dir,
            rep,
            parallel,
            plan_batches,
            batch,
            rollback_all_on_failure,
            rollback_on_failure,
            src,
            runs,
            rendered,
        )
    except FleetError as exc:
        if len(conns) == 1:
            raise next(iter(exc.errors.values())) from None  # one host: its own error, unwrapped
        raise
    except BaseException as exc:
        # Ctrl-C (or a bug) half-way: free every lock we hold; the half-made releases are marked failed.
        # A host already switching is left alone: its switch is one remote command that finishes by itself.
        switching = [runs[c].name for c in conns if runs[c].result == "switching"]
        for c in conns:
            if runs[c].result == "switching":
                runs[c].locked = False
                runs[c].result = "interrupted while switching (finishes on the host; see fab status)"
        _abort(conns, runs, s, parallel, remove=False)
        if switching and isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt(
                f"during the switch; {', '.join(switching)} finish switching on their own (one remote command each):"
                " check with fab status"
            ) from exc
        raise


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
) -> list[HostRun]:
    first = conns[0]

    facts: dict[Connection, host.Facts] = {}

    def begin(c: Connection) -> None:
        run = runs[c]
        open_connection(c)
        # Locked from the start: Ctrl-C while begin runs may leave the lock taken. Freeing it is safe
        # either way, as abort removes only a lock holding this run's token.
        run.locked = True
        try:
            facts[c] = host.begin(c, s, run.lock_info, rep)
        except LockHeld:
            run.locked = False
            raise
        run.previous = facts[c].listing.current

    def prepare(c: Connection) -> None:
        run = runs[c]
        # once-hooks (a migration on a shared database) run on the first host only.
        hs = s if c is first else _without_once_hooks(s)
        run.plan = api.prepare_release(c, hs, src, run.release_id, facts[c], run.lock_info, rep, project_dir, rendered)
        run.result = "prepared"

    prepared = each(conns, begin, parallel)
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
        _abort(conns, runs, s, parallel)
        raise FleetError(
            f"prepare failed on {len(prepared.failed)} of {len(conns)} hosts; no host was switched",
            _errors(prepared, runs),
            list(runs.values()),
        )

    done: list[Connection] = []
    for i, group in enumerate(plan_batches):

        def switch(c: Connection) -> None:
            run = runs[c]
            assert run.plan is not None
            run.result = "switching"
            host.switch(c, s, run.plan, run.lock_info, rep, rollback_on_failure)
            run.locked, run.result = False, "live"
            run.seconds = time.monotonic() - run.started

        switched = each(group, switch, parallel)
        for c in switched.failed:
            runs[c].locked = False  # the switch phase unlocks (and rolls itself back) on failure
            runs[c].result = "failed, rolled back"
        if not switched.failed:
            done.extend(group)
            continue
        later = [c for g in plan_batches[i + 1 :] for c in g]
        _abort(later, runs, s, parallel)
        back = [c for c in group if c in switched.succeeded]
        if batch is None or rollback_all_on_failure:
            back += done
        stuck = _rollback(back, runs, s, parallel, rep)
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
        raise FleetError(f"{where} failed{tail}", errors, list(runs.values()))
    return list(runs.values())


def _without_once_hooks(s: Settings) -> Settings:
    return dataclasses.replace(s, hooks=tuple(h for h in s.hooks if not h.once))


def _errors(result: GroupResult, runs: dict[Connection, HostRun]) -> dict[str, BaseException]:
    return {runs[c].name: exc for c, exc in result.failed.items()}


def _abort(
    conns: Sequence[Connection],
    runs: dict[Connection, HostRun],
    s: Settings,
    parallel: int,
    remove: bool = True,
) -> None:
    """Unlock hosts that prepared (or were preparing) and remove their unused release."""

    def abort(c: Connection) -> None:
        run = runs[c]
        if run.locked:
            host.abort(c, s, run.lock_info, run.release_id, remove=remove and run.result != "failed")
            run.locked = False
            if run.result != "failed":
                run.result = "not switched"

    each([c for c in conns if runs[c].locked], abort, parallel)


def _rollback(
    conns: Sequence[Connection], runs: dict[Connection, HostRun], s: Settings, parallel: int, rep: Reporter
) -> dict[Connection, BaseException]:
    """Put switched hosts back on their previous release; the hosts where that failed, with why."""

    def back(c: Connection) -> None:
        run = runs[c]
        if run.previous:
            host.rollback(c, s, run.previous, lock.info("rollback"), rep)
            run.result = f"rolled back to {run.previous}"
        else:
            run.result = "live (nothing to roll back to)"

    result = each(conns, back, parallel)
    for c, exc in result.failed.items():
        runs[c].result = f"rolling back failed, still on {runs[c].release_id}: {_short(runs[c].name, exc)}"
    return dict(result.failed)


def table(runs: Sequence[HostRun]) -> str:
    width = max((len(r.name) for r in runs), default=4)
    lines = [f"{'host':<{width}}  {'release':<26} {'time':>7}  result"]
    for r in runs:
        rel = r.plan.release_id if r.plan else "-"
        seconds = r.seconds or time.monotonic() - r.started
        lines.append(f"{r.name:<{width}}  {rel:<26} {seconds:6.2f}s  {r.result}")
    return "\n".join(lines)


__all__ = ["FleetError", "HostRun", "batches", "deploy", "each", "table"]
