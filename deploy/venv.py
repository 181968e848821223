"""The app's virtualenv on the host: its key (every requirements file + Python + pip args), and wheels to ship.

The key covers the requirements file and every file it includes (`-r`/`-c`, recursively): a bump in an
included base.txt is a new venv. A missing or escaping file is a ConfigError before any connection.
The venv itself is built on the host by deploy/remote/venv.sh.

A venv lives in `shared/venvs/<key>`; an unchanged key reuses it untouched, a new key builds a new
one beside the live one. With `wheels: true` the tool builds the wheels here (`pip wheel`) and ships
them in the archive when the host lacks the venv, so the host needs no package index. Build them
with a Python of the host's version (pure-Python requirements do not care).
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Protocol

from deploy.config import Settings
from deploy.errors import ConfigError, DeployError

CACHE = Path.home() / ".cache" / "fabdeploy" / "wheels"


Files = tuple[tuple[str, bytes], ...]  # (path in the release, content): the requirements file first
_INCLUDE = ("-r", "--requirement", "-c", "--constraint")


class _Lookup(Protocol):
    """Anything with .get(path) -> bytes | None: a deploy.source.Source."""

    def get(self, path: str) -> bytes | None: ...


def requirement_files(requirements: str | None, src: _Lookup) -> Files:
    """The requirements file and every file it includes, read from the release's source.

    `requirements` None: the app has no dependencies (setting `requirements: null`): no files.
    """
    if requirements is None:
        return ()
    out: list[tuple[str, bytes]] = []
    todo = [(requirements, "setting requirements")]
    while todo:
        path, named_by = todo.pop(0)
        if any(p == path for p, _ in out):
            continue
        data = src.get(path)
        if data is None:
            raise ConfigError(
                f"{path} not found in the release ({named_by}); add it, point deploy.requirements at the file,"
                " or set requirements: null for an app without dependencies"
            )
        out.append((path, data))
        for n, line in enumerate(data.decode(errors="replace").splitlines(), 1):
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue
            for i, w in enumerate(words):
                target = None
                if w in _INCLUDE and i + 1 < len(words):
                    target = words[i + 1]
                elif "=" in w and w.split("=", 1)[0] in _INCLUDE[1::2]:
                    target = w.split("=", 1)[1]
                if target is None:
                    continue
                joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
                if target.startswith("/") or joined.startswith("../") or joined == "..":
                    raise ConfigError(f"{path} line {n} includes {target}, outside the release: include files inside it")
                todo.append((joined, f"included by {path} line {n}"))
    return tuple(out)


def key(files: Files, python_version: str, pip_args: tuple[str, ...]) -> str:
    """Must equal what a host would compute for the same inputs: it names the venv directory."""
    data = files[0][1] if files else b""
    for path, content in files[1:]:  # the included files (one file alone keys as it always did)
        data += b"\0" + path.encode() + b"\0" + content
    data += "".join(f"{line}\n" for line in (python_version, *pip_args)).encode()
    return hashlib.sha256(data).hexdigest()[:16]


class WheelsFailed(DeployError):
    """`pip wheel` failed on this machine (setting wheels); the caller names the host it was for."""


_building = threading.Lock()  # the hosts of a fleet ask at once; build once


def wheels(s: Settings, files: Files) -> dict[str, bytes]:
    """{file name: bytes} of the wheels for the requirements `files`, built once and cached by their hash."""
    digest = key(files, "wheels", s.pip_args)
    out = CACHE / digest
    with _building:
        if not out.is_dir():
            CACHE.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
                tree = Path(tmp) / "src"
                for path, content in files:  # laid out as in the release, so that includes resolve
                    (tree / path).parent.mkdir(parents=True, exist_ok=True)
                    (tree / path).write_bytes(content)
                build = Path(tmp) / "wheels"
                cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check"]
                cmd += ["-w", str(build), "-r", str(tree / files[0][0])]
                p = subprocess.run([*cmd, *s.pip_args], capture_output=True, text=True)
                if p.returncode != 0:
                    last = (p.stderr.strip().splitlines() or ["?"])[-1]
                    raise WheelsFailed(f"pip wheel -r {s.requirements} failed on this machine (setting wheels): {last}")
                build.rename(out)  # complete or absent, never half-built
        return {f.name: f.read_bytes() for f in sorted(out.glob("*.whl"))}
