"""The dev loop: `fab -H dev watch` ships saved files into the live release of a dev host and reloads it.

Never on a production stage. The local files are the working tree of `path` (with `source: git`, the
files git would see: tracked plus untracked-but-not-ignored), minus `exclude` and the shared paths
(those belong to the host). At start the live release is brought in line with the tree; after that
the tree is polled every `interval` seconds and each batch of saved changes goes up as one archive in
ONE SSH command, which renames the files into place (earlier releases, hard-linked, stay intact),
updates the release's manifest and reloads: with `dev: true` the code-change monitor in the WSGI
script restarts the daemon processes (the command waits until it has), otherwise the configured reload
(touch in a dev stage). The command returns once the new code serves the next request.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from fabric import Connection

from deploy import host, lock, source
from deploy.config import Settings
from deploy.connect import open_connection
from deploy.errors import ConfigError, DeployError, LockHeld, RemoteError
from deploy.output import Reporter

Stamp = tuple[int, int]  # (mtime_ns, size)


@dataclass
class Batch:
    shipped: list[str]
    removed: list[str]
    seconds: float


def refuse_production(s: Settings) -> None:
    if s.production:
        where = f"stage {s.stage!r}" if s.stage else "this config"
        raise ConfigError(f"refusing to watch {where}: it is production (production: true); watch a dev stage, e.g. --stage dev")


def _shared(path: str, s: Settings) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in (*s.shared_dirs, *s.shared_files))


def local_paths(root: Path, s: Settings) -> list[str]:
    """The files of the working tree that belong to the release, relative to `root`."""
    if not root.is_dir():
        raise ConfigError(f"setting path: {root} is not a directory")
    if s.source == "git":
        try:
            out = subprocess.run(
                ["git", "-C", str(root), "ls-files", "-z", "-co", "--exclude-standard"], capture_output=True, check=True
            ).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            raise ConfigError(f"git ls-files failed in {root}; is it a git repository? (setting path, source)") from exc
        paths = [p for p in out.decode().split("\0") if p and not any(source.excluded(x, s.exclude) for x in p.split("/"))]
    else:
        paths = source.tree_paths(root, s.exclude)
    # ls-files also lists tracked files deleted from the tree: those are gone.
    return sorted(p for p in paths if not _shared(p, s) and ((root / p).is_file() or (root / p).is_symlink()))


def stamps(root: Path, paths: list[str]) -> dict[str, Stamp]:
    out = {}
    for p in paths:
        try:
            st = os.lstat(root / p)
        except OSError:
            continue
        out[p] = (st.st_mtime_ns, st.st_size)
    return out


def archive(files: list[source.File], removed: list[str], manifest: dict[str, str]) -> bytes:
    """files/<path> for each saved file, ctl/removed (NUL-separated), ctl/manifest of the whole release."""
    now = int(time.time())  # a new mtime: Python must not trust a cached .pyc of the old file
    moved = [source.File("files/" + f.path, f.data, f.mode, f.link) for f in files]
    text = source.format_manifest(manifest)
    extra = {"ctl/removed": ("\0".join(removed).encode(), 0o644), "ctl/manifest": (text.encode(), 0o644)}
    return source.archive(moved, extra, now)


def ship(
    c: Connection, s: Settings, files: list[source.File], removed: list[str], manifest: dict[str, str], rep: Reporter
) -> float:
    """One batch up, in one SSH command; returns its seconds."""
    t0 = time.monotonic()
    host.ship(c, s, archive(files, removed, manifest), lock.info("watch"), rep)
    return time.monotonic() - t0


def watch(
    c: Connection,
    s: Settings,
    project_dir: Path,
    rep: Reporter,
    interval: float = 0.5,
    seconds: float = 0.0,
) -> list[Batch]:
    """Ship saved changes until Ctrl-C (or `seconds` have passed); the batches shipped."""
    refuse_production(s)
    if interval <= 0:
        raise ConfigError(f"--interval must be a positive number of seconds, got {interval}")
    root = (project_dir / s.path).resolve()
    name = str(c.original_host)
    open_connection(c)
    survey = host.survey(c, s)
    if not survey.set_up or not survey.facts.listing.current:
        raise DeployError(f"{name}: nothing is live on this host yet; run fab deploy first")
    live = source.parse_manifest(survey.facts.manifest)
    paths = local_paths(root, s)
    seen = stamps(root, paths)
    batches: list[Batch] = []

    retry: set[str] = set()  # paths of a batch the host refused (locked by a deploy, a failed reload)

    def send(changed: list[str], gone: list[str]) -> None:
        changed = sorted(set(changed) | {p for p in retry if p not in gone})
        files = []
        for p in changed:
            try:
                f = source.read_file(root, p)
            except OSError:
                continue  # saved and deleted again before we got to it
            if live.get(p) != f.digest:
                files.append(f)
        gone = [p for p in gone if p in live and not _shared(p, s)]  # a shared path's file lives in shared/
        if not files and not gone:
            retry.clear()
            return
        manifest = dict(live)
        manifest.update((f.path, f.digest) for f in files)
        for p in gone:
            manifest.pop(p, None)
        try:
            took = ship(c, s, files, gone, manifest, rep)
        except (LockHeld, RemoteError) as exc:
            # A dev loop outlives a busy or failing host: say so, and send these again with the next save.
            retry.update(f.path for f in files)
            rep.line(name, f"not shipped: {str(exc).splitlines()[0]}; trying again at the next save", "red")
            return
        retry.clear()
        live.clear()
        live.update(manifest)
        batch = Batch([f.path for f in files], gone, took)
        batches.append(batch)
        what = ", ".join(batch.shipped[:5] + [f"-{p}" for p in gone[:5]])
        more = len(batch.shipped) + len(gone) - min(5, len(batch.shipped)) - min(5, len(gone))
        rep.line(name, f"shipped {what}{f' and {more} more' if more > 0 else ''} ({took:.2f}s)")

    # Bring the live release in line with the tree first.
    send(paths, sorted(set(live) - set(paths)))
    rep.line(name, f"watching {root} ({len(paths)} files, every {interval}s); Ctrl-C to stop")
    deadline = time.monotonic() + seconds if seconds > 0 else None
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(interval)
            paths = local_paths(root, s)
            now = stamps(root, paths)
            if now == seen:
                continue
            # Editors save in several writes (temp file, rename): wait until the tree is still.
            for _ in range(10):
                time.sleep(0.1)
                again = stamps(root, local_paths(root, s))
                if again == now:
                    break
                now = again
            changed = sorted(p for p in now if seen.get(p) != now[p])
            gone = sorted(set(seen) - set(now))
            seen = now
            send(changed, gone)
    except KeyboardInterrupt:
        rep.line(name, "stopped watching")
    return batches


__all__ = ["Batch", "local_paths", "refuse_production", "ship", "watch"]
