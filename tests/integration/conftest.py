"""Real-server fixtures: a deploy user, sshd + Apache sandboxes, and a git copy of the example app."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sandbox import DeployUser, Sandbox, app_config, example_repo, fab_argv, random_user, set_version

ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    # A `kill` or `timeout` (SIGTERM) ends the run as Ctrl-C does: pytest then tears the fixtures down, which
    # stop the sandboxes' sshd and Apache and remove their deploy user; a plain SIGTERM left them running.
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def deploy_user() -> Iterator[DeployUser]:
    if os.geteuid() != 0 or not Path("/usr/sbin/sshd").exists() or not Path("/usr/sbin/apache2").exists():
        pytest.skip("integration tests need root, openssh-server, apache2 and libapache2-mod-wsgi-py3 (.ci/run)")
    user = DeployUser.ensure(random_user())
    yield user
    user.remove()


@pytest.fixture(scope="module")
def daemon_host(deploy_user: DeployUser) -> Iterator[Sandbox]:
    with Sandbox(deploy_user, mpm="event") as sb:
        yield sb


@pytest.fixture(scope="module")
def embedded_host(deploy_user: DeployUser) -> Iterator[Sandbox]:
    with Sandbox(deploy_user, mpm="prefork") as sb:
        yield sb


@dataclass
class App:
    """A git repository holding a copy of example/, a fabfile and its deploy config."""

    path: Path
    sb: Sandbox
    home: Path
    name: str = "imdb"  # the app's name: its deploy_to, vhost, daemon group and server name (NAME.test)

    def write_config(self, **over: object) -> dict[str, object]:
        cfg = app_config(self.sb, **{"app": self.name, **over})  # type: ignore[arg-type]
        (self.path / "fabric.json").write_text(json.dumps({"deploy": cfg}, indent=2))
        return cfg

    def commit(self, message: str = "change") -> None:
        subprocess.run(
            "git add -A && git -c user.email=t@example.com -c user.name=t commit --allow-empty -qm " + shlex.quote(message),
            shell=True,
            cwd=self.path,
            check=True,
        )

    def set_version(self, version: str) -> None:
        set_version(self.path, version)
        self.commit(f"version-{version}")

    def version(self) -> str:
        """The VERSION of the committed view: what the last good deploy serves."""
        text = (self.path / "movies" / "views.py").read_text()
        return text.split('VERSION = "', 1)[1].split('"', 1)[0]

    def fab(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        # -S: only this ssh_config (never the user's ~/.ssh/config); HOME: no ~/.fabric.yaml either.
        env = dict(os.environ, HOME=str(self.home), PYTHONPATH=str(ROOT))
        return subprocess.run(
            fab_argv(self.sb, *args),
            cwd=self.path,
            env=env,
            stdin=subprocess.DEVNULL,  # a pipeline: nothing may wait for a terminal
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        p = self.fab(*args)
        assert p.returncode == 0, f"fab {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p

    @property
    def deploy_to(self) -> Path:
        return self.sb.deploy_to / self.name

    def current(self) -> str | None:
        link = self.deploy_to / "current"
        return os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else None

    def get(self, path: str = "/movie") -> tuple[int, dict[str, str], str]:
        return self.sb.get(path, host=f"{self.name}.test")

    def wait_version(self, version: str, timeout: float = 20.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            status, headers, body = self.get("/movie")
            if status == 200:
                data = json.loads(body)
                if data["version"] == version:
                    data["release"] = headers.get("x-deploy-release")
                    return data  # type: ignore[no-any-return]
                last = data["version"]
            else:
                last = status
            time.sleep(0.2)
        raise AssertionError(f"version {version} not served within {timeout}s (last: {last})")


def make_app(sb: Sandbox, base: Path, mode: str, name: str = "imdb") -> App:
    home = base / "home"
    home.mkdir()
    return App(example_repo(sb, base / "app", mode, app=name), sb, home, name)
