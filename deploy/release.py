"""One release on one host: its source, archive and prepare args, and the host operations fleet drives.

`fleet` (many hosts, batches, all-or-none) calls only this module; this module calls `host`, where each
operation is one phase script = one SSH command. `Ops` is the seam: fleet takes an `Ops`, the tests pass
fake ones to check fleet's decisions without a server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabric import Connection

from deploy import dependencies, guesses, hooks, host, releases, remote, render, secrets, source, venv
from deploy.config import Settings
from deploy.connect import open_connection
from deploy.errors import ConfigError, DeployError, RemoteError
from deploy.output import Reporter


def load_source(s: Settings, project_dir: Path, ref: str | None = None) -> source.Source:
    """The files of the release: git-tracked files at `ref` (source: git) or the working tree."""
    path = (project_dir / s.path).resolve()
    if s.source == "git":
        src = source.from_git(path, ref or s.ref, s.exclude)
    elif ref:
        raise ConfigError("--ref needs deploy.source: git")
    else:
        src = source.from_tree(path, s.exclude)
    dependencies_of(s, src)  # a missing or escaping requirements file, a stale lock: before any command runs on a host
    return src


def dependencies_of(s: Settings, src: source.Source) -> dependencies.Dependencies:
    """What the release's venv installs (settings dependencies and requirements)."""
    return dependencies.find(s.dependencies, s.requirements, src)


def fingerprint(
    s: Settings, src: source.Source, release_id: str, rendered: dict[str, str], deps: dependencies.Dependencies
) -> str:
    """What a release is made of, as one hash: its revision and files, the dependencies installed, what the
    tool generates for it (the rendered templates, the environment) and the settings. A deploy whose
    fingerprint is the live release's would make the same release again: it is a no-op (unless --force)."""
    h = hashlib.sha256()
    # Settings that say how to run the tool, not what the release is, are left out.
    kept = dataclasses.replace(s, hosts=(), output="text")
    env = sorted(secrets.plain(s.environment).items())
    parts = [remote.SCRIPTS_HASH, src.revision, src.manifest(), repr(kept), repr(deps.keyed), repr(env)]
    parts += [f"{name}\0{text.replace(release_id, '<release>')}" for name, text in sorted(rendered.items())]
    for part in parts:
        h.update(part.encode() + b"\0\1")
    return h.hexdigest()


def build_archive(
    s: Settings,
    src: source.Source,
    release_id: str,
    project_dir: Path,
    delta: source.Delta | None = None,
    wheels: dict[str, bytes] | None = None,
    rendered: dict[str, str] | None = None,
    deps: dependencies.Dependencies | None = None,
    made_of: str | None = None,
) -> bytes:
    """The release's files (only the changed ones with a delta) plus what the tool generates for it.

    `rendered`: the templates already rendered for this release id (a fleet renders them once); `deps`: the
    release's dependencies, and `made_of` its fingerprint, when the caller has them already.
    """
    rendered = rendered or render.render(s, release_id, src.revision, project_dir)
    # A WSGI script holding secrets must not be world-readable (the prepare phase gives it the app's group).
    script_mode = 0o640 if s.environment else 0o644
    extra = {
        ".release/app.wsgi": (rendered["app.wsgi"].encode(), script_mode),
        ".release/vhost.conf": (rendered["vhost.conf"].encode(), 0o644),
        ".release/slot.wsgi": (rendered["slot.wsgi"].encode(), 0o644),
        ".release/manifest": (src.manifest().encode(), 0o644),
    }
    deps = deps or dependencies_of(s, src)
    extra[".release/fingerprint"] = ((made_of or fingerprint(s, src, release_id, rendered, deps)).encode(), 0o644)
    if s.environment:
        env = "".join(f"{k}={shlex.quote(v)}\n" for k, v in secrets.plain(s.environment).items())
        extra[".release/env.sh"] = (env.encode(), 0o600)
    if deps.generated is not None:
        extra[dependencies.GENERATED] = (deps.generated, 0o644)
    for name, data in (wheels or {}).items():
        extra[f".release/wheels/{name}"] = (data, 0o644)
    files = src.files
    if delta is not None and not delta.full:
        files = delta.send
        extra[".release/linked"] = ("\0".join(delta.link).encode(), 0o644)
    return source.archive(files, extra, src.mtime)


def prepare_args(
    s: Settings, src: source.Source, release_id: str, facts: host.Facts, rep: Reporter, host_name: str,
    deps: dependencies.Dependencies | None = None,
) -> tuple[host.PrepareArgs, source.Delta]:
    """What the prepare phase gets for this host: the delta against its live release, hooks, venv key."""
    current = facts.listing.current
    base = source.parse_manifest(facts.manifest) if current else None
    delta = source.delta(src, base or None)
    decisions = hooks.decide(s.hooks, delta.changed if base else None)
    for d in decisions:
        if not d.run:
            rep.line(host_name, f"{'hook:' + d.hook.name:<16} skipped ({d.reason})")
    run = tuple((d.hook.name, d.hook.run) for d in decisions if d.run)
    carry = tuple(p for d in decisions if not d.run for p in d.hook.outputs)
    private = tuple(p for d in decisions if d.run for p in d.hook.outputs)
    note = "full" if delta.full else f"{len(delta.send)} sent, {len(delta.link)} linked"
    deps = deps or dependencies_of(s, src)
    key = venv.key(deps.keyed, facts.python, s.pip_args)
    args = host.PrepareArgs(
        release_id, src.revision, run, None if delta.full else current, carry, note, key, private, deps.install,
        session=facts.session,
    )
    return args, delta


@dataclass(frozen=True)
class Ahead:
    """What a deploy to one host needs to send its prepare with the begin, before the facts come back
    (`begin`, deploy/guesses.py); the same inputs `prepare` gets."""

    src: source.Source
    release_id: str
    project_dir: Path
    rendered: dict[str, str]
    stage: bool
    then_switch: bool
    force: bool


def begin(
    c: Connection, s: Settings, lock_info: str, rep: Reporter, keep_maintenance: bool = False, ahead: Ahead | None = None
) -> host.Facts:
    """host.begin; with `ahead` and a guess of what the host has, the prepare goes out with it (`_send_ahead`)."""
    guess = guesses.load(c, s) if ahead is not None else None
    if ahead is None or guess is None:
        return host.begin(c, s, lock_info, rep, keep_maintenance)
    a = ahead

    def send(session: remote.Session) -> host.SentAhead | None:
        return _send_ahead(c, s, a, guess, lock_info, session)

    return host.begin(c, s, lock_info, rep, keep_maintenance, ahead=send)


# A guess the host drops costs the upload of what was sent ahead; past this size that costs more than the
# round trip that sending ahead saves (1 MiB: ~0.1 s at 10 MB/s).
AHEAD_MAX_BYTES = 1 << 20


def _send_ahead(
    c: Connection, s: Settings, a: Ahead, guess: host.Facts, lock_info: str, session: remote.Session
) -> host.SentAhead | None:
    """The prepare made from `guess`, sent; None where the facts are likely to decide otherwise (nothing to
    deploy, a venv to build, a release id the host would not take): the deploy then waits for them."""
    deps = dependencies_of(s, a.src)
    made_of = fingerprint(s, a.src, a.release_id, a.rendered, deps)
    if not a.force and made_of == guess.fingerprint:
        return None
    # The id fleet gives the release once it has the facts (a deploy within the second of the last one takes
    # the next second), and the templates, which name it.
    taken = tuple(r.id for r in guess.listing.releases)
    release_id = releases.new_id(a.src.short_revision, now=releases.id_time(a.release_id), taken=taken)
    rendered = a.rendered if release_id == a.release_id else render.render(s, release_id, a.src.revision, a.project_dir)
    quiet = Reporter(quiet=True)  # its lines (hooks skipped) are said by `prepare`, once the host took it
    args, delta = _args(s, a.src, release_id, guess, quiet, str(c.original_host), deps, made_of, a.stage, a.then_switch)
    if args.venv_key not in guess.venvs:
        return None
    args = dataclasses.replace(args, session=session)
    archive = build_archive(s, a.src, release_id, a.project_dir, delta, None, rendered, deps, made_of)
    if len(archive) > AHEAD_MAX_BYTES:
        return None
    return host.send_ahead(c, s, args, archive, lock_info, guess, session)


def _args(
    s: Settings, src: source.Source, release_id: str, facts: host.Facts, rep: Reporter, name: str,
    deps: dependencies.Dependencies, made_of: str, stage: bool, then_switch: bool,
) -> tuple[host.PrepareArgs, source.Delta]:
    """prepare_args, with how this deploy runs them and the facts the host will say once the release is live."""
    args, delta = prepare_args(s, src, release_id, facts, rep, name, deps)
    made = dataclasses.replace(
        facts,
        listing=releases.Listing((releases.Release(release_id, releases.FINISHED, src.revision),), release_id),
        manifest=src.manifest(),
        venvs=facts.venvs | {args.venv_key},
        fingerprint=made_of,
        session=None,
        sent_ahead=None,
    )
    args = dataclasses.replace(
        args, stage=stage and s.slotted, then_switch=then_switch, rollback_on_failure=stage, made=made
    )
    return args, delta


def prepare(
    c: Connection,
    s: Settings,
    src: source.Source,
    release_id: str,
    facts: host.Facts,
    lock_info: str,
    rep: Reporter,
    project_dir: Path,
    rendered: dict[str, str] | None = None,
    stage: bool = True,
    then_switch: bool = False,
) -> host.PrepareArgs:
    """Work out the prepare args (delta, hooks, venv) and run the prepare phase on a host holding its lock.

    `stage` (daemon slots): load the release in the idle slot and check it there before the prepare ends,
    so that the switch is the flip alone; off for --no-rollback, whose switch may flip to a failing release
    (`stage` is the switch's rollback_on_failure). `then_switch`: the switch starts on the host as soon as
    the prepare ends (a deploy to one host), host.switch then only waits for it.

    A prepare sent ahead with the begin (Facts.sent_ahead) that the host took is only waited for, once the
    args made from the facts are seen to be the same.
    """
    name = str(c.original_host)
    deps = dependencies_of(s, src)  # once for this host: the key, the wheels and the archive all need it
    rendered = rendered or render.render(s, release_id, src.revision, project_dir)
    made_of = fingerprint(s, src, release_id, rendered, deps)
    sent = facts.sent_ahead
    args, delta = _args(s, src, release_id, facts, rep, name, deps, made_of, stage, then_switch)
    if sent is not None and host.ahead_taken(c, s, sent, rep):
        if args != sent.args:
            # The host judged the guess as fab does with the facts: a difference is a bug. Its switch was not
            # sent: the abort that follows the error stops the prepare the host began, and nothing is switched.
            raise RemoteError(name, "prepare", "the release sent ahead differs from the one the facts make (a bug in"
                              " fab: please report it); nothing was switched: deploy again")
        host.send_switch(c, s, sent, lock_info)
        rep.line(name, f"release {release_id} ({sent.archive_bytes / 1024:.0f} KiB archive, {args.note}, sent ahead)")
        wheels = None
        ahead = sent

        def send() -> object:
            return host.prepare_sent(c, s, ahead, rep)
    else:
        try:
            wheels = venv.wheels(s, deps.keyed) if s.wheels and deps.keyed and args.venv_key not in facts.venvs else None
        except venv.WheelsFailed as exc:
            raise RemoteError(name, "building wheels for this host", str(exc)) from exc
        if s.installer == "uv" and not facts.uv and args.venv_key not in facts.venvs:
            _ship_uv(c, s, facts, rep)
            args = dataclasses.replace(args, made=dataclasses.replace(args.made, uv=True) if args.made else None)
        archive = build_archive(s, src, release_id, project_dir, delta, wheels, rendered, deps, made_of)
        shipped = f", {len(wheels)} wheels" if wheels else ""
        rep.line(name, f"release {release_id} ({len(archive) / 1024:.0f} KiB archive, {args.note}{shipped})")
        plan = args

        def send() -> object:
            return host.prepare(c, s, plan, archive, lock_info, rep)
    try:
        send()
    except RemoteError as exc:
        if exc.code != remote.EXIT_LINK_FAILED:
            raise
        # The live release's files were not all there to link: send everything instead.
        rep.line(name, "linking from the live release failed; sending the full archive")
        args = dataclasses.replace(args, base=None, note="full", session=None)  # that command ended
        full = build_archive(s, src, release_id, project_dir, None, wheels, rendered, deps, made_of)
        host.prepare(c, s, args, full, lock_info, rep)
    return args


def switch(
    c: Connection, s: Settings, args: host.PrepareArgs, lock_info: str, rep: Reporter, rollback_on_failure: bool
) -> host.Reloaded:
    """host.switch; once the release is live, what the host will say is kept for the next deploy's guess."""
    reloaded = host.switch(c, s, args, lock_info, rep, rollback_on_failure)
    if args.made is not None:
        guesses.save(c, s, args.made)
    return reloaded


def _ship_uv(c: Connection, s: Settings, facts: host.Facts, rep: Reporter) -> None:
    """The host builds venvs with this machine's uv: send it the binary once (tools/uv-<version>)."""
    import platform  # here: only a host without uv needs it (~1.5 ms of every start otherwise)

    name = str(c.original_host)
    here = platform.machine()
    if sys.platform != "linux" or (facts.arch and facts.arch != here):
        raise RemoteError(
            name, "installer", f"this machine's uv ({sys.platform} {here}) cannot run on the host ({facts.arch}):"
            " set installer: pip"
        )
    try:
        gz = venv.uv_gzip()
    except DeployError as exc:
        raise RemoteError(name, "installer", str(exc)) from exc
    rep.line(name, f"installing uv {venv.uv_version()} on the host ({len(gz) / 2**20:.0f} MiB, once)")
    host.install_uv(c, s, gz, rep)


@dataclass(frozen=True)
class Ops:
    """The host operations fleet drives, each one phase on one host (fakes in tests/test_fleet.py).

    Every method takes the host's Connection first; errors are DeployErrors naming the host.
    """

    def connect(self, c: Connection, wanted: Callable[[], bool] | None = None) -> None:
        open_connection(c, wanted)

    def begin(
        self, c: Connection, s: Settings, lock_info: str, rep: Reporter, keep_maintenance: bool = False,
        ahead: Ahead | None = None,
    ) -> host.Facts:
        return begin(c, s, lock_info, rep, keep_maintenance, ahead)

    def prepare(
        self,
        c: Connection,
        s: Settings,
        src: source.Source,
        release_id: str,
        facts: host.Facts,
        lock_info: str,
        rep: Reporter,
        project_dir: Path,
        rendered: dict[str, str],
        stage: bool = True,
        then_switch: bool = False,
    ) -> host.PrepareArgs:
        return prepare(c, s, src, release_id, facts, lock_info, rep, project_dir, rendered, stage, then_switch)

    def switch(
        self, c: Connection, s: Settings, args: host.PrepareArgs, lock_info: str, rep: Reporter, rollback_on_failure: bool
    ) -> host.Reloaded:
        return switch(c, s, args, lock_info, rep, rollback_on_failure)

    def leave(self, c: Connection, s: Settings, facts: host.Facts, lock_info: str) -> None:
        host.leave(c, s, facts, lock_info)

    def abort(self, c: Connection, s: Settings, lock_info: str, release_id: str | None, remove: bool) -> None:
        host.abort(c, s, lock_info, release_id, remove)

    def rollback(
        self, c: Connection, s: Settings, to: str | None, lock_info: str, rep: Reporter, undo: bool = False
    ) -> host.RolledBack:
        return host.rollback(c, s, to, lock_info, rep, undo)

    def reload(self, c: Connection, s: Settings, lock_info: str, rep: Reporter) -> host.Reloaded:
        return host.reload(c, s, lock_info, rep)

    def setup(self, c: Connection, s: Settings, vhost: str, lock_info: str, rep: Reporter) -> None:
        host.setup(c, s, vhost, lock_info, rep)

    def unlock(self, c: Connection, s: Settings, force: bool) -> dict[str, str] | None:
        return host.unlock(c, s, force)

    def status(self, c: Connection, s: Settings) -> dict[str, object]:
        return host.status(c, s)

    def check(self, c: Connection, s: Settings) -> list[dict[str, object]]:
        return host.check(c, s)

    def logs(
        self, c: Connection, s: Settings, on_line: Callable[[str, str], None], access: bool, lines: int, since: int,
        follow: bool,
    ) -> int:
        return host.logs(c, s, on_line, access, lines, since, follow)

    def maintenance(self, c: Connection, s: Settings, on: bool, page: str) -> str:
        return host.maintenance(c, s, on, page)

    def exec_command(
        self,
        c: Connection,
        s: Settings,
        argv: Sequence[str],
        on_stdout: Callable[[bytes], None],
        on_stderr: Callable[[bytes], None],
        shell: bool,
        terminal: Callable[[Any], None] | None,
        size: tuple[int, int],
        term: str,
    ) -> int:
        return host.exec_command(c, s, argv, on_stdout, on_stderr, shell, terminal, size, term)


OPS = Ops()

__all__ = ["OPS", "Ahead", "Ops", "begin", "build_archive", "fingerprint", "load_source", "prepare", "prepare_args", "switch"]
