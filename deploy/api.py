"""The Python API behind the tasks: `deploy`, `rollback`, `reload`, ... on one host's Connection."""

from __future__ import annotations

import dataclasses
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from fabric import Config, Connection

from deploy import hooks, host, lock, reloading, remote, render, source, venv
from deploy.config import Settings, load
from deploy.connect import connection, open_connection
from deploy.errors import ConfigError, RemoteError
from deploy.output import Reporter


@dataclass
class Result:
    host: str
    action: str
    release: str | None = None
    previous: str | None = None
    revision: str | None = None
    seconds: float = 0.0
    details: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Project:
    """An app's deploy config read as `fab` reads it, for scripts: `deploy.project("path/to/app")`."""

    path: Path
    settings: Settings
    config: Config

    def connections(self, hosts: list[str] | tuple[str, ...] | None = None) -> list[Connection]:
        """Connections to `hosts` (default: the stage's hosts), each with its own copy of the config."""
        names = list(hosts or self.settings.hosts)
        if not names:
            raise ConfigError("no host to work on: pass hosts, or set deploy.hosts or a stage's hosts")
        return [connection(h, self.config) for h in names]


def project(path: Path | str = ".", stage: str | None = None, ssh_config: Path | str | None = None) -> Project:
    """Read the app's config like `fab` does (fabric.yaml/json/py in `path`, ~/.fabric.yaml, /etc/fabric.yaml,
    FABRIC_* environment variables) and validate its `deploy:` section for `stage`."""
    where = Path(path).resolve()
    config = Config(project_location=str(where), runtime_ssh_path=str(ssh_config) if ssh_config else None)
    config.load_project()
    config.load_shell_env()
    config.load_ssh_config()
    return Project(where, load(config.get("deploy"), stage=stage), config)


def load_source(s: Settings, project_dir: Path, ref: str | None = None) -> source.Source:
    path = (project_dir / s.path).resolve()
    if s.source == "git":
        return source.from_git(path, ref or s.ref)
    if ref:
        raise ConfigError("--ref needs deploy.source: git")
    return source.from_tree(path, s.exclude)


def build_archive(
    s: Settings,
    src: source.Source,
    release_id: str,
    project_dir: Path,
    delta: source.Delta | None = None,
    wheels: dict[str, bytes] | None = None,
    rendered: dict[str, str] | None = None,
) -> bytes:
    """The release's files (only the changed ones with a delta) plus what the tool generates for it.

    `rendered`: the templates already rendered for this release id (a fleet renders them once).
    """
    rendered = rendered or render.render(s, release_id, src.revision, project_dir)
    # A WSGI script holding secrets must not be world-readable.
    script_mode = 0o640 if s.environment and s.mode == "daemon" else 0o644
    extra = {
        ".release/app.wsgi": (rendered["app.wsgi"].encode(), script_mode),
        ".release/vhost.conf": (rendered["vhost.conf"].encode(), 0o644),
        ".release/manifest": (src.manifest().encode(), 0o644),
    }
    if s.environment:
        env = "".join(f"{k}={shlex.quote(v)}\n" for k, v in s.environment.items())
        extra[".release/env.sh"] = (env.encode(), 0o600)
    for name, data in (wheels or {}).items():
        extra[f".release/wheels/{name}"] = (data, 0o644)
    files = src.files
    if delta is not None and not delta.full:
        files = delta.send
        extra[".release/linked"] = ("\0".join(delta.link).encode(), 0o644)
    return source.archive(files, extra, src.mtime)


def plan_release(
    s: Settings, src: source.Source, release_id: str, facts: host.Facts, rep: Reporter, host_name: str
) -> tuple[host.Plan, source.Delta]:
    current = facts.listing.current
    base = source.parse_manifest(facts.manifest) if current else None
    delta = source.delta(src, base or None)
    decisions = hooks.decide(s.hooks, delta.changed if base else None, s.requirements)
    for d in decisions:
        if not d.run:
            rep.line(host_name, f"{'hook:' + d.hook.name:<16} skipped ({d.reason})")
    run = tuple((d.hook.name, d.hook.run) for d in decisions if d.run)
    carry = tuple(p for d in decisions if not d.run for p in d.hook.outputs)
    private = tuple(p for d in decisions if d.run for p in d.hook.outputs)
    note = "full" if delta.full else f"{len(delta.send)} sent, {len(delta.link)} linked"
    key = venv.key(src.get(s.requirements), facts.python, s.pip_args)
    plan = host.Plan(release_id, src.revision, run, None if delta.full else current, carry, note, key, private)
    return plan, delta


def prepare_release(
    c: Connection,
    s: Settings,
    src: source.Source,
    release_id: str,
    facts: host.Facts,
    lock_info: str,
    rep: Reporter,
    project_dir: Path,
    rendered: dict[str, str] | None = None,
) -> host.Plan:
    """Plan (delta, hooks, venv) and run the prepare phase on one host that holds its lock."""
    name = str(c.original_host)
    plan, delta = plan_release(s, src, release_id, facts, rep, name)
    requirements = src.get(s.requirements)
    try:
        wheels = venv.wheels(s, requirements) if s.wheels and requirements and plan.venv_key not in facts.venvs else None
    except venv.WheelsFailed as exc:
        raise RemoteError(name, "building wheels for this host", str(exc)) from exc
    archive = build_archive(s, src, release_id, project_dir, delta, wheels, rendered)
    shipped = f", {len(wheels)} wheels" if wheels else ""
    rep.line(name, f"release {release_id} ({len(archive) / 1024:.0f} KiB archive, {plan.note}{shipped})")
    try:
        host.prepare(c, s, plan, archive, lock_info, rep)
    except RemoteError as exc:
        if exc.code != remote.EXIT_LINK_FAILED:
            raise
        # The live release's files were not all there to link: send everything instead.
        rep.line(name, "linking from the live release failed; sending the full archive")
        plan = dataclasses.replace(plan, base=None, note="full")
        full = build_archive(s, src, release_id, project_dir, None, wheels, rendered)
        host.prepare(c, s, plan, full, lock_info, rep)
    return plan


def deploy(
    c: Connection,
    s: Settings,
    project_dir: Path,
    ref: str | None = None,
    reporter: Reporter | None = None,
    src: source.Source | None = None,
    rollback_on_failure: bool = True,
) -> Result:
    """Ship, prepare, switch and reload one host; on any failure the live release stays (or is again) live.

    A failed health check after the switch rolls back to the previous release in the same SSH
    command, unless `rollback_on_failure` is false (`fab deploy --no-rollback`). Three SSH
    commands in all (begin, prepare, switch). Several hosts: `deploy.fleet.deploy`.
    """
    from deploy import fleet  # fleet builds on this module

    src = src or load_source(s, project_dir, ref)
    run = fleet.deploy([c], s, project_dir, ref, reporter, src=src, rollback_on_failure=rollback_on_failure)[0]
    release = run.plan.release_id if run.plan else None
    return Result(run.name, "deploy", release, run.previous, src.revision, run.seconds)


def plan(c: Connection, s: Settings, project_dir: Path, ref: str | None = None) -> Result:
    """What a deploy would do on this host (see deploy.planning); one SSH command, nothing changed."""
    from deploy import planning

    t0 = time.monotonic()
    src = load_source(s, project_dir, ref)
    p = planning.plan(c, s, src, project_dir)
    live = p["live_release"]
    return Result(c.original_host, "plan", p["release"], live, src.revision, time.monotonic() - t0, details=p)


def rollback(c: Connection, s: Settings, to: str | None = None, reporter: Reporter | None = None) -> Result:
    t0 = time.monotonic()
    open_connection(c)
    previous, target = host.rollback(c, s, to, lock.info("rollback"), reporter)
    return Result(c.original_host, "rollback", target, previous, None, time.monotonic() - t0)


def reload(c: Connection, s: Settings, reporter: Reporter | None = None, strategy: str | None = None) -> Result:
    t0 = time.monotonic()
    s = reloading.with_strategy(s, strategy)
    open_connection(c)
    host.reload(c, s, lock.info("reload"), reporter)
    return Result(c.original_host, "reload", seconds=time.monotonic() - t0)


def status(c: Connection, s: Settings) -> Result:
    t0 = time.monotonic()
    open_connection(c)
    st = host.status(c, s)
    return Result(c.original_host, "status", str(st["current"]), seconds=time.monotonic() - t0, details=st)


def unlock(c: Connection, s: Settings, force: bool = False) -> Result:
    open_connection(c)
    held = host.unlock(c, s, force)
    return Result(c.original_host, "unlock", details={"lock": held})


def setup(c: Connection, s: Settings, project_dir: Path, reporter: Reporter | None = None) -> Result:
    t0 = time.monotonic()
    # The vhost does not depend on the release; render it with a placeholder id.
    vhost = render.render(s, "setup", "-", project_dir)["vhost.conf"]
    open_connection(c)
    host.setup(c, s, vhost, lock.info("setup"), reporter)
    return Result(c.original_host, "setup", seconds=time.monotonic() - t0)
