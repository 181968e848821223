"""What the app's venv installs, found in the release as the ecosystem has it (requirements, uv, poetry, pyproject).

Like Heroku's buildpack, `dependencies: auto` takes exactly one of `requirements.txt` (setting
`requirements`), `uv.lock`, `poetry.lock`; with none of them a `pyproject.toml` with a static
`[project] dependencies` list; anything else is a ConfigError naming the fix, before any command runs on a host.

Every kind comes down to one requirements file the host installs: the app's own (its `-r`/`-c`
includes resolved in the release), or one the tool writes into `.release/requirements.txt` (the locked
set exported without dev groups, or pyproject's dependency list). The app itself is never installed
into the venv: venvs outlive releases (reused while the dependencies are unchanged), so the code is
imported from the release through `python_path`.
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import tomllib

from deploy.errors import ConfigError

KINDS = ("auto", "requirements", "uv", "poetry", "pyproject", "none")
GENERATED = ".release/requirements.txt"  # where the tool's own requirements file goes in the release

Files = tuple[tuple[str, bytes], ...]  # (path in the release, content)
_INCLUDE = ("-r", "--requirement", "-c", "--constraint")
_SELF = {".", "./", "-e.", "-e ."}


class Lookup(Protocol):
    """Anything with .get(path) -> bytes | None: a deploy.source.Source."""

    def get(self, path: str) -> bytes | None: ...


@dataclass(frozen=True)
class Dependencies:
    """What the host installs: `install` (a path in the release) read by the installer; `inputs` the app's
    files it comes from (the plan compares them with the live release's)."""

    kind: str  # requirements | uv | poetry | pyproject | none
    inputs: Files
    install: str | None = None
    generated: bytes | None = None  # the content of GENERATED, when the tool wrote it

    @property
    def keyed(self) -> Files:
        """What the venv key hashes: exactly what is installed (a pyproject edit that leaves the dependency
        list alone keeps the venv); the app's requirements files with their includes."""
        if self.generated is None:
            return self.inputs
        return ((GENERATED, self.generated),)

    @property
    def describe(self) -> str:
        if self.kind == "none":
            return "no dependencies"
        return f"{self.kind} ({', '.join(p for p, _ in self.inputs)})"


def find(kind: str, requirements: str | None, src: Lookup) -> Dependencies:
    """The release's dependencies by setting `dependencies` (`kind`) and `requirements`."""
    if kind == "none" or (kind == "auto" and requirements is None):
        return Dependencies("none", ())
    if kind == "auto":
        kind = _detect(requirements or "requirements.txt", src)
    if kind == "requirements":
        files = requirement_files(requirements or "requirements.txt", src)
        return Dependencies("requirements", files, files[0][0])
    if kind == "uv":
        inputs = _need(src, "uv.lock", "pyproject.toml", why="dependencies: uv")
        return Dependencies("uv", inputs, GENERATED, _export(inputs, UV_EXPORT, "uv"))
    if kind == "poetry":
        inputs = _need(src, "poetry.lock", "pyproject.toml", why="dependencies: poetry")
        return Dependencies("poetry", inputs, GENERATED, _export(inputs, POETRY_EXPORT, "poetry"))
    inputs = _need(src, "pyproject.toml", why="dependencies: pyproject")
    return Dependencies("pyproject", inputs, GENERATED, _project_dependencies(inputs[0][1]))


def _detect(requirements: str, src: Lookup) -> str:
    candidates = (("requirements", requirements), ("uv", "uv.lock"), ("poetry", "poetry.lock"))
    found = [(k, p) for k, p in candidates if src.get(p) is not None]
    if src.get("Pipfile.lock") is not None and not found:
        raise ConfigError(
            "Pipfile.lock is not supported: export it (pipenv requirements > requirements.txt) and commit that,"
            " or set deploy.dependencies"
        )
    if len(found) > 1:
        names = " and ".join(p for _, p in found)
        raise ConfigError(
            f"the release has {names}: set deploy.dependencies to the one to install"
            f" ({', '.join(k for k, _ in found)})"
        )
    if found:
        return found[0][0]
    if src.get("pyproject.toml") is not None:
        return "pyproject"
    extra = ""
    if src.get("setup.py") is not None:
        extra = " (setup.py alone cannot be read without running it: list the dependencies there)"
    raise ConfigError(
        f"no {requirements}, uv.lock, poetry.lock or pyproject.toml in the release{extra}: add one, point"
        " deploy.requirements at your requirements file, or set dependencies: none for an app without any"
    )


def _need(src: Lookup, *paths: str, why: str) -> Files:
    out = []
    for p in paths:
        data = src.get(p)
        if data is None:
            raise ConfigError(f"{p} not found in the release ({why}); add it or set deploy.dependencies")
        out.append((p, data))
    return tuple(out)


def requirement_files(requirements: str, src: Lookup) -> Files:
    """The requirements file and every file it includes (`-r`/`-c`, recursively), read from the release."""
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
                " or set dependencies: none for an app without dependencies"
            )
        out.append((path, data))
        for n, line in enumerate(data.decode(errors="replace").splitlines(), 1):
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue
            if " ".join(words) in _SELF or words[:2] == ["-e", "."]:
                raise ConfigError(
                    f"{path} line {n} installs the app itself ({line.strip()}): venvs outlive releases, so the"
                    " code is imported from the release; remove the line and set deploy.python_path if needed"
                )
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


# The locked set without dev groups and without the project itself (it is imported from the release).
UV_EXPORT = (
    "export", "--locked", "--no-default-groups", "--no-emit-project", "--no-header", "--no-annotate",
    "--format", "requirements-txt", "-q",
)
POETRY_EXPORT = ("export", "--only", "main", "--format", "requirements.txt")
_exports: dict[str, bytes] = {}  # by hash of the inputs: the hosts of a fleet ask once each


_finding = threading.Lock()
_uv: list[str | None] = []  # found once


def uv_binary() -> str | None:
    """This machine's uv (the `uv` package is a dependency of the tool). Once, under a lock: the hosts of a
    fleet ask at once, and uv.find_uv_bin's first call into sysconfig is not thread-safe on Python 3.11."""
    with _finding:
        if not _uv:
            try:
                import uv  # noqa: PLC0415 - only where a uv project or the uv installer needs it

                _uv.append(str(uv.find_uv_bin()))
            except (ImportError, FileNotFoundError):
                _uv.append(shutil.which("uv"))
        return _uv[0]


def _export(inputs: Files, args: tuple[str, ...], tool: str) -> bytes:
    digest = hashlib.sha256(b"\0".join([tool.encode(), *(c for _, c in inputs)])).hexdigest()
    if digest in _exports:
        return _exports[digest]
    exe = uv_binary() if tool == "uv" else shutil.which("poetry")
    if exe is None:
        fix = "pip install uv" if tool == "uv" else "pipx install poetry && poetry self add poetry-plugin-export"
        raise ConfigError(f"{inputs[0][0]} needs {tool} on this machine to export the locked set: {fix}")
    with tempfile.TemporaryDirectory(prefix="fabdeploy-export-") as tmp:
        for path, content in inputs:
            (Path(tmp) / path).write_bytes(content)
        p = subprocess.run([exe, *args], cwd=tmp, capture_output=True, text=True)
    if p.returncode != 0:
        lines = [line.strip() for line in p.stderr.strip().splitlines() if line.strip()] or ["?"]
        hint = next((ln.removeprefix("hint: ") for ln in lines if ln.startswith("hint: ")), None)
        why = lines[0].removeprefix("error: ") + (f" ({hint}, and commit {inputs[0][0]})" if hint else "")
        raise ConfigError(f"{tool} {args[0]} of {inputs[0][0]} failed: {why}")
    _exports[digest] = p.stdout.encode()
    return _exports[digest]


def _project_dependencies(pyproject: bytes) -> bytes:
    try:
        project = tomllib.loads(pyproject.decode()).get("project", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"pyproject.toml cannot be read: {exc}") from exc
    if "dependencies" in project.get("dynamic", []):
        raise ConfigError(
            "pyproject.toml declares its dependencies dynamic (read from setup.py or a file at build time):"
            " list them in [project] dependencies, or lock them (uv lock) or export them to requirements.txt"
        )
    if "name" not in project:
        raise ConfigError("pyproject.toml has no [project] table: add [project] dependencies or a requirements.txt")
    deps = project.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise ConfigError("pyproject.toml [project] dependencies must be a list of requirement strings")
    return "".join(f"{d}\n" for d in deps).encode()
