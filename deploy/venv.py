"""The app's virtualenv on the host: its key, the wheels and the installer (uv) the tool ships to it.

The key covers what is installed (deploy/dependencies.py: the requirements file and every file it
includes, or the exported lock), the host's Python and the installer's arguments: a bump in an included
base.txt is a new venv. The venv itself is built on the host by deploy/remote/venv.sh.

A venv lives in `shared/venvs/<key>`; an unchanged key reuses it untouched, a new key builds a new
one beside the live one. With `wheels: true` the tool builds the wheels here (`pip wheel`) and ships
them in the archive when the host lacks the venv, so the host needs no package index. Build them
with a Python of the host's version (pure-Python requirements do not care).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import subprocess
import sys
import tempfile
import threading
from importlib import metadata
from pathlib import Path

from deploy.config import Settings
from deploy.dependencies import Files, uv_binary
from deploy.errors import DeployError

CACHE = Path.home() / ".cache" / "fabdeploy" / "wheels"
UV_CACHE = Path.home() / ".cache" / "fabdeploy" / "uv"


class WheelsFailed(DeployError):
    """`pip wheel` failed on this machine (setting wheels); the caller names the host it was for."""


def key(files: Files, python_version: str, pip_args: tuple[str, ...]) -> str:
    """Must equal what a host would compute for the same inputs: it names the venv directory."""
    data = files[0][1] if files else b""
    for path, content in files[1:]:  # the included files (one file alone keys as it always did)
        data += b"\0" + path.encode() + b"\0" + content
    data += "".join(f"{line}\n" for line in (python_version, *pip_args)).encode()
    return hashlib.sha256(data).hexdigest()[:16]


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
                    raise WheelsFailed(f"pip wheel -r {files[0][0]} failed on this machine (setting wheels): {last}")
                build.rename(out)  # complete or absent, never half-built
        return {f.name: f.read_bytes() for f in sorted(out.glob("*.whl"))}


@functools.cache  # every phase's variables name it; the package metadata does not change during a run
def uv_version() -> str | None:
    """The version of this machine's uv, the one shipped to hosts (None: no uv here)."""
    try:
        return metadata.version("uv")
    except metadata.PackageNotFoundError:
        return None


def uv_gzip() -> bytes:
    """This machine's uv binary, gzipped once per version (about 15 MiB): sent to a host that lacks it."""
    version, exe = uv_version(), uv_binary()
    if version is None or exe is None:
        raise DeployError("installer uv: uv is not installed on this machine (pip install uv), or set installer: pip")
    out = UV_CACHE / f"uv-{version}.gz"
    with _building:
        if not out.is_file():
            UV_CACHE.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".tmp")
            tmp.write_bytes(gzip.compress(Path(exe).read_bytes(), compresslevel=3))
            tmp.rename(out)
    return out.read_bytes()
