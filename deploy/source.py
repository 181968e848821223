"""What is shipped: the app's files at a git ref (or the working tree), their hashes and the archive."""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.errors import ConfigError


@dataclass(frozen=True)
class File:
    path: str
    data: bytes
    mode: int
    link: str | None = None  # target, for a symlink

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.link.encode() if self.link is not None else self.data).hexdigest()


@dataclass(frozen=True)
class Source:
    """The files of one release and where they came from."""

    files: tuple[File, ...]
    revision: str  # full git sha, or "tree-<hash>" for a working tree
    mtime: int

    @property
    def short_revision(self) -> str:
        return self.revision[5:12] if self.revision.startswith("tree-") else self.revision[:7]

    def get(self, path: str) -> bytes | None:
        for f in self.files:
            if f.path == path:
                return f.data
        return None

    def manifest(self) -> str:
        """One 'sha256  path' line per file, sorted: what the host keeps to compare releases."""
        return format_manifest({f.path: f.digest for f in self.files})


def _git(path: Path, *args: str) -> bytes:
    try:
        return subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True).stdout
    except FileNotFoundError as exc:
        raise ConfigError("git is not installed; install it or set deploy.source: tree") from exc
    except subprocess.CalledProcessError as exc:
        msg = exc.stderr.decode(errors="replace").strip().splitlines()
        raise ConfigError(f"git {' '.join(args)} failed in {path}: {msg[-1] if msg else exc}") from exc


def from_git(path: Path, ref: str = "HEAD", exclude: tuple[str, ...] = ()) -> Source:
    """The tracked files of `path` (a repository or a folder inside one) at `ref`, but the excluded names
    (matched against each path component, as for a working tree)."""
    if not path.is_dir():
        raise ConfigError(f"setting path: {path} is not a directory")
    try:
        # One fork for three answers, in the order asked: the top, the prefix (an empty line at the top) and the commit.
        top_line, prefix, sha = _git(
            path, "rev-parse", "--show-toplevel", "--show-prefix", "--verify", "--quiet", f"{ref}^{{commit}}"
        ).decode().split("\n")[:3]
    except (ConfigError, ValueError) as exc:
        raise ConfigError(f"ref {ref!r} is not a commit in {path} (--ref or setting ref)") from exc
    commit_time = int(_git(path, "show", "-s", "--format=%ct", sha).decode().strip())
    # From the top: inside a subdirectory git would also limit the subtree's paths to that prefix.
    top = Path(top_line)
    raw = _git(top, "archive", "--format=tar", f"{sha}:{prefix}" if prefix else sha)
    files = []
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for m in tar.getmembers():
            if any(excluded(part, exclude) for part in m.name.split("/")):
                continue
            if m.isfile():
                data = tar.extractfile(m).read()  # type: ignore[union-attr]
                files.append(File(m.name, data, 0o755 if m.mode & 0o111 else 0o644))
            elif m.issym():
                files.append(File(m.name, b"", 0o777, link=m.linkname))
    return Source(tuple(files), sha, commit_time)


def tree_paths(path: Path, exclude: tuple[str, ...]) -> list[str]:
    """Every file below `path` (relative, in walk order) but the excluded names, matched against each component."""
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not excluded(d, exclude))
        out += [(Path(dirpath) / name).relative_to(path).as_posix() for name in sorted(filenames) if not excluded(name, exclude)]
    return out


def read_file(root: Path, rel: str) -> File:
    """One file of a working tree, as it would be shipped (a symlink stays a symlink)."""
    full = root / rel
    if full.is_symlink():
        return File(rel, b"", 0o777, link=os.readlink(full))
    return File(rel, full.read_bytes(), 0o755 if full.stat().st_mode & 0o111 else 0o644)


def from_tree(path: Path, exclude: tuple[str, ...]) -> Source:
    """Every file below `path` but the excluded names (matched against each path component)."""
    if not path.is_dir():
        raise ConfigError(f"setting path: {path} is not a directory")
    files = [read_file(path, rel) for rel in tree_paths(path, exclude)]
    digest = hashlib.sha256("".join(f"{f.digest} {f.path}\n" for f in files).encode()).hexdigest()
    return Source(tuple(files), f"tree-{digest[:12]}", int(time.time()))


def excluded(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def archive(files: list[File] | tuple[File, ...], extra: dict[str, tuple[bytes, int]], mtime: int) -> bytes:
    """A gzip'd tar of `files` plus generated `extra` files (path -> (data, mode))."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as tar:
        for f in files:
            info = tarfile.TarInfo(f.path)
            info.mtime = mtime
            if f.link is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = f.link
                tar.addfile(info)
            else:
                info.size = len(f.data)
                info.mode = f.mode
                tar.addfile(info, io.BytesIO(f.data))
        for path, (data, mode) in extra.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def format_manifest(digests: dict[str, str]) -> str:
    """{path: sha256} -> 'sha256  path' lines sorted by path (parse_manifest reads them back)."""
    return "".join(f"{d}  {p}\n" for p, d in sorted(digests.items()))


def parse_manifest(text: str) -> dict[str, str]:
    """'sha256  path' lines -> {path: sha256}."""
    out = {}
    for line in text.splitlines():
        digest, sep, path = line.partition("  ")
        if sep and len(digest) == 64:
            out[path] = digest
    return out


@dataclass(frozen=True)
class Delta:
    """What differs between a release about to be made and the live one's manifest."""

    send: tuple[File, ...]  # new or changed: shipped
    link: tuple[str, ...]  # identical: hard-linked on the host from the live release
    changed: tuple[str, ...]  # added, changed or removed paths

    @property
    def full(self) -> bool:
        return not self.link


def delta(src: Source, base: dict[str, str] | None) -> Delta:
    if not base:
        return Delta(src.files, (), tuple(f.path for f in src.files))
    send = tuple(f for f in src.files if base.get(f.path) != f.digest)
    paths = {f.path for f in src.files}
    link = tuple(sorted(paths - {f.path for f in send}))
    removed = sorted(set(base) - paths)
    return Delta(send, link, tuple(sorted(f.path for f in send)) + tuple(removed))
