"""The app's virtualenv on the host: its key (requirements + Python + pip args), and wheels to ship.

A venv lives in `shared/venvs/<key>`; an unchanged key reuses it untouched, a new key builds a new
one beside the live one. With `wheels: true` the tool builds the wheels here (`pip wheel`) and ships
them in the archive when the host lacks the venv, so the host needs no package index. Build them
with a Python of the host's version (pure-Python requirements do not care).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from deploy.config import Settings
from deploy.errors import DeployError

CACHE = Path.home() / ".cache" / "fabdeploy" / "wheels"


def key(requirements: bytes | None, python_version: str, pip_args: tuple[str, ...]) -> str:
    """Must equal what a host would compute for the same inputs: it names the venv directory."""
    data = (requirements or b"") + "".join(f"{line}\n" for line in (python_version, *pip_args)).encode()
    return hashlib.sha256(data).hexdigest()[:16]


class WheelsFailed(DeployError):
    """`pip wheel` failed on this machine (setting wheels); the caller names the host it was for."""


_building = threading.Lock()  # the hosts of a fleet ask at once; build once


def wheels(s: Settings, requirements: bytes) -> dict[str, bytes]:
    """{file name: bytes} of the wheels for `requirements`, built once and cached by their hash."""
    digest = hashlib.sha256(requirements + " ".join(s.pip_args).encode()).hexdigest()[:16]
    out = CACHE / digest
    with _building:
        if not out.is_dir():
            CACHE.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
                req = Path(tmp) / "requirements.txt"
                req.write_bytes(requirements)
                build = Path(tmp) / "wheels"
                cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check"]
                cmd += ["-w", str(build), "-r", str(req)]
                p = subprocess.run([*cmd, *s.pip_args], capture_output=True, text=True)
                if p.returncode != 0:
                    last = (p.stderr.strip().splitlines() or ["?"])[-1]
                    raise WheelsFailed(f"pip wheel -r {s.requirements} failed on this machine (setting wheels): {last}")
                build.rename(out)  # complete or absent, never half-built
        return {f.name: f.read_bytes() for f in sorted(out.glob("*.whl"))}
