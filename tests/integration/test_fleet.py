"""Several real hosts, each a network namespace with its own sshd + Apache/mod_wsgi: all-or-none, batches."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.sandbox import REPO_ROOT, DeployUser, Sandbox, app_config, example_repo

HOSTS = 3


@pytest.fixture(scope="module")
def fleet(deploy_user: DeployUser) -> Iterator[list[Sandbox]]:
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        pytest.skip("needs iproute2 and network namespaces")
    hosts: list[Sandbox] = []
    try:
        for i in range(HOSTS):
            # web3's pip can reach no index: a requirements change fails there only.
            extra = "SetEnv PIP_INDEX_URL=http://127.0.0.1:9/ PIP_RETRIES=0 PIP_TIMEOUT=2" if i == 2 else ""
            hosts.append(Sandbox(deploy_user, netns=True, host_alias=f"web{i + 1}", sshd_extra=extra).start())
        yield hosts
    finally:
        for sb in hosts:
            sb.stop()


class Fleet:
    def __init__(self, hosts: list[Sandbox], base: Path) -> None:
        self.hosts = hosts
        self.ssh_config = base / "ssh_config"
        self.ssh_config.write_text("".join(sb.ssh_config.read_text() for sb in hosts))
        # One config for all: the same deploy_to on every host (each host has its own filesystem
        # root in a real fleet; here each sandbox's deploy_to differs, so use a per-host path
        # through a symlink made below).
        self.deploy_to = Path(f"/tmp/fabdeploy-fleet-{os.getpid()}")
        self.repo = example_repo(hosts[0], base / "app", "daemon")
        cfg = app_config(hosts[0], listen="*:80", deploy_to=str(self.deploy_to))
        cfg["health"] = {"path": "/movie", "contains": "Godfather", "timeout": 30}
        cfg["hooks"][0]["once"] = True  # type: ignore[index]
        (self.repo / "fabric.json").write_text(json.dumps({"deploy": cfg}, indent=2))
        self.commit("fleet")
        self.home = base / "home"
        self.home.mkdir()

    def commit(self, msg: str) -> None:
        git = "git -c user.email=t@e -c user.name=t"
        subprocess.run(f"git add -A && {git} commit --allow-empty -qm {msg}", shell=True, cwd=self.repo, check=True)

    def fab(self, *args: str, hosts: str = "web1,web2,web3") -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, HOME=str(self.home), PYTHONPATH=str(REPO_ROOT))
        argv = ["python3", "-m", "fabric", "-S", str(self.ssh_config), "-H", hosts, *args]
        return subprocess.run(argv, cwd=self.repo, env=env, capture_output=True, text=True, timeout=600)

    def current(self, sb: Sandbox) -> str | None:
        link = sb.deploy_to / "app" / "current"
        return os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else None

    def served(self, sb: Sandbox) -> str | None:
        status, headers, _ = sb.get("/movie", host="imdb.test")
        return headers.get("x-deploy-release") if status == 200 else f"HTTP {status}"


@pytest.fixture(scope="module")
def f(fleet: list[Sandbox], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fl = Fleet(fleet, tmp_path_factory.mktemp("fleet"))
    yield fl


def test_placeholder(f: Fleet) -> None:
    assert len(f.hosts) == HOSTS
    time.sleep(0)
