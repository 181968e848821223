"""Several real hosts, each a network namespace with its own sshd + Apache/mod_wsgi: all-or-none, batches."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from deploy.output import schema
from tests.sandbox import REPO_ROOT, DeployUser, Sandbox, app_config, example_repo

NAMES = ["web1", "web2", "web3"]


class Fleet:
    def __init__(self, hosts: list[Sandbox], base: Path) -> None:
        self.hosts = hosts
        self.ssh_config = base / "ssh_config"
        self.ssh_config.write_text(
            "".join(sb.ssh_config.read_text() for sb in hosts) + "Host nohost\n    HostName 127.0.0.1\n    Port 9\n"
        )
        self.repo = example_repo(hosts[0], base / "app", "daemon")
        cfg = app_config(hosts[0], listen="*:80")
        cfg["health"] = {"path": "/movie", "contains": "Godfather", "timeout": 30}
        cfg["wheels"] = True  # the hosts cannot reach a package index
        cfg["hooks"] = [  # each host has its own SQLite file: migrate everywhere; the marker once
            {"name": "migrate", "run": "python manage.py migrate --noinput"},
            {"name": "collectstatic", "run": "python manage.py collectstatic --noinput -v0"},
            {"name": "once", "run": "date +%s%N >> ../../shared/once.log", "once": True},
        ]
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

    def app_dir(self, sb: Sandbox) -> Path:
        return sb.deploy_to / "imdb"

    def currents(self) -> list[str | None]:
        out = []
        for sb in self.hosts:
            link = self.app_dir(sb) / "current"
            out.append(os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else None)
        return out

    def served(self) -> list[str | None]:
        out = []
        for sb in self.hosts:
            status, headers, _ = sb.get("/movie", host="imdb.test")
            out.append(headers.get("x-deploy-release") if status == 200 else f"HTTP {status}")
        return out

    def locks(self) -> list[bool]:
        return [(self.app_dir(sb) / ".lock").exists() for sb in self.hosts]

    @contextlib.contextmanager
    def config(self, **over: object) -> Iterator[None]:
        """The fleet's deploy config with `over` for the duration (committed, then put back)."""
        cfg_file = self.repo / "fabric.json"
        saved = cfg_file.read_text()
        data = json.loads(saved)
        data["deploy"].update(over)
        cfg_file.write_text(json.dumps(data))
        self.commit("config")
        try:
            yield
        finally:
            cfg_file.write_text(saved)
            self.commit("config-back")

    def one_slot(self) -> dict[str, object]:
        """The daemon settings with one slot: a rolling reload in the switch, after every prepare."""
        return {**json.loads((self.repo / "fabric.json").read_text())["deploy"]["daemon"], "slots": 1}


@pytest.fixture(scope="module")
def fleet(deploy_user: DeployUser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        pytest.skip("needs iproute2 and network namespaces")
    common = f"/srv/fabdeploy-fleet-{os.getpid()}"
    hosts: list[Sandbox] = []
    try:
        for name in NAMES:
            sb = Sandbox(deploy_user, netns=True, host_alias=name, common_root=common)
            # The test breaks pip on one host by writing this file.
            sb.sshd_extra = f"SetEnv PIP_CONFIG_FILE={common}/pip.conf"
            hosts.append(sb.start())
        fl = Fleet(hosts, tmp_path_factory.mktemp("fleet"))
        p = fl.fab("setup")
        assert p.returncode == 0, p.stderr
        p = fl.fab("deploy")  # every test starts from a live release, alone or in any order
        assert p.returncode == 0, p.stderr
        yield fl
    finally:
        for sb in hosts:
            sb.stop()


def test_three_hosts_all_succeed(fleet: Fleet) -> None:
    p = fleet.fab("deploy")
    assert p.returncode == 0, p.stderr
    currents = fleet.currents()
    assert currents[0] is not None and len(set(currents)) == 1
    assert fleet.served() == currents
    # The once-hook ran on the first host only.
    assert [(fleet.app_dir(sb) / "shared" / "once.log").exists() for sb in fleet.hosts] == [True, False, False]
    for name in NAMES:
        assert name in p.stderr
    assert "switched 3 hosts within" in p.stderr  # the skew between the first and the last flip
    out = fleet.fab("status")
    assert out.returncode == 0 and "disagree" not in out.stdout
    # One JSON document for the whole fleet, for deploy and plan alike.
    doc = json.loads(fleet.fab("plan", "--json").stdout)
    jsonschema.validate(doc, schema())
    assert [h["host"] for h in doc["hosts"]] == NAMES
    assert all(h["plan"]["live_release"] == currents[0] and h["plan"]["files"]["changed"] == [] for h in doc["hosts"])


def test_one_host_failing_prepare_switches_no_host(fleet: Fleet) -> None:
    before = fleet.currents()
    kept = [sorted(d.name for d in (fleet.app_dir(sb) / "releases").iterdir()) for sb in fleet.hosts[:2]]
    # web3's installer fails (the tool's uv on that host, replaced by one that refuses).
    uv = next((fleet.app_dir(fleet.hosts[2]) / "tools").glob("uv-*/uv"))
    saved = uv.read_bytes()
    uv.write_text("#!/bin/sh\necho 'error: no index reachable' >&2\nexit 2\n")
    req = fleet.repo / "requirements.txt"
    good = req.read_text()
    req.write_text(good + "sqlparse>=0.4\n")
    fleet.commit("new-requirement")
    try:
        p = fleet.fab("deploy")
    finally:
        uv.write_bytes(saved)
        req.write_text(good)
        fleet.commit("revert-requirement")
    assert p.returncode == 5, p.stderr
    assert "no host was switched" in p.stderr and "web3: virtualenv failed" in p.stderr
    assert fleet.currents() == before
    assert fleet.locks() == [False, False, False]
    # The healthy hosts' prepared releases are gone; web3 keeps its failed one for a look.
    for sb, releases in zip(fleet.hosts[:2], kept, strict=True):
        assert sorted(d.name for d in (fleet.app_dir(sb) / "releases").iterdir()) == releases


def test_an_unhealthy_idle_slot_on_one_host_flips_no_host(fleet: Fleet) -> None:
    """Slots: every host loads and checks its idle slot in the prepare; one failure and no host flips."""
    before = fleet.currents()
    web3 = fleet.hosts[2]
    breaker = web3.sites_dir / "zz-break.conf"
    breaker.write_text("<Location /movie>\n    Require all denied\n</Location>\n")
    web3.graceful()
    fleet.commit("unhealthy-web3")
    try:
        p = fleet.fab("deploy", "--batch=2", "--json")
    finally:
        breaker.unlink()
        web3.graceful()
    assert p.returncode == 7, p.stderr
    assert "no host was switched" in p.stderr and "web3: health check failed in slot" in p.stderr, p.stderr
    assert fleet.currents() == before and fleet.served() == before
    assert fleet.locks() == [False, False, False]


def test_failed_health_in_batch_two_rolls_back_that_batch(fleet: Fleet) -> None:
    before = fleet.currents()
    web3 = fleet.hosts[2]
    breaker = web3.sites_dir / "zz-break.conf"
    breaker.write_text("<Location /movie>\n    Require all denied\n</Location>\n")
    web3.graceful()
    fleet.commit("batch")
    try:
        with fleet.config(daemon=fleet.one_slot()):  # one slot: the check runs after each batch's switch
            p = fleet.fab("deploy", "--batch=2", "--json")
    finally:
        breaker.unlink()
        web3.graceful()
    assert p.returncode == 7, p.stderr
    assert "batch 2 of 2 failed" in p.stderr and "stay on" in p.stderr
    doc = json.loads(p.stdout)
    jsonschema.validate(doc, schema())
    assert doc["exit_code"] == 7 and "batch 2 of 2 failed" in doc["error"]["message"]
    results = {h["host"]: h["result"] for h in doc["hosts"]}
    assert results["web1"] == results["web2"] == "live" and results["web3"].startswith("failed")
    after = fleet.currents()
    assert after[0] == after[1] != before[0]
    assert after[2] == before[2]
    assert fleet.locks() == [False, False, False]
    out = fleet.fab("status")
    assert "disagree" in out.stdout
    # Bring the fleet back to one version for the next test.
    back = fleet.fab("deploy")
    assert back.returncode == 0, back.stderr


def test_unreachable_host_named_and_nothing_switched(fleet: Fleet) -> None:
    before = fleet.currents()
    fleet.commit("unreachable")
    p = fleet.fab("deploy", hosts="web1,web2,nohost")
    assert p.returncode == 3, p.stderr
    assert "nohost" in p.stderr and "no host was switched" in p.stderr
    assert fleet.currents() == before
    assert fleet.locks() == [False, False, False]


def test_compensating_rollback_with_keep_releases_1(fleet: Fleet) -> None:
    """Issue "Nothing lost" #6: with keep_releases 1 the hosts already switched still have their previous
    release to go back to, and the error says where each host really is."""
    assert fleet.fab("deploy").returncode == 0
    before = fleet.currents()
    cfg_file = fleet.repo / "fabric.json"
    cfg = cfg_file.read_text()
    data = json.loads(cfg)
    data["deploy"]["keep_releases"] = 1
    data["deploy"]["daemon"] = fleet.one_slot()  # the check after the switch, so that a rollback compensates
    cfg_file.write_text(json.dumps(data))
    fleet.commit("keep-1")
    web3 = fleet.hosts[2]
    breaker = web3.sites_dir / "zz-break.conf"
    breaker.write_text("<Location /movie>\n    Require all denied\n</Location>\n")
    web3.graceful()
    try:
        p = fleet.fab("deploy", "--json")
    finally:
        breaker.unlink()
        web3.graceful()
        cfg_file.write_text(cfg)
        fleet.commit("keep-default")
    assert p.returncode == 7, p.stderr
    assert fleet.currents() == before, p.stderr
    assert fleet.served() == before
    results = {h["host"]: h["result"] for h in json.loads(p.stdout)["hosts"]}
    assert results["web1"].startswith("rolled back") and results["web2"].startswith("rolled back"), results
    assert fleet.locks() == [False, False, False]


def test_rollback_and_reload_across_the_fleet_in_parallel_all_or_none(fleet: Fleet) -> None:
    """Issue "A straight stack": rollback and reload go through fleet like deploy: every host at once, and a
    rollback that fails on one host puts the others back where they were."""
    assert fleet.fab("deploy").returncode == 0
    before = fleet.currents()
    fleet.commit("next")
    assert fleet.fab("deploy").returncode == 0
    new = fleet.currents()
    assert new[0] != before[0] and len(set(new)) == 1
    # One host's rollback is refused (its lock is held): the two that rolled back are put back.
    lock = fleet.app_dir(fleet.hosts[2]) / ".lock"
    lock.mkdir()
    (lock / "info").write_text("owner=someone host=elsewhere pid=1 time=1 cmd=deploy token=x\n")
    try:
        p = fleet.fab("rollback", "--json")
    finally:
        shutil.rmtree(lock)
    assert p.returncode == 4, p.stderr
    assert "every host is on the release it had" in p.stderr, p.stderr
    assert fleet.currents() == new and fleet.served() == new
    results = {h["host"]: h["result"] for h in json.loads(p.stdout)["hosts"]}
    assert results["web1"] == results["web2"] == f"put back on {new[0]}" and results["web3"] == "failed", results
    # Without the lock: all three roll back, at once.
    p = fleet.fab("rollback", "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    jsonschema.validate(doc, schema())
    assert fleet.currents() == before and fleet.served() == before
    assert doc["seconds"] < 0.8 * sum(h["seconds"] for h in doc["hosts"]), doc  # in parallel, not one after another
    # A rolled-back-from release is no target: the next rollback does not go "forward" again.
    p = fleet.fab("reload", "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    jsonschema.validate(doc, schema())
    assert [h["health"] for h in doc["hosts"]] == ["ok", "ok", "ok"], doc  # was "not run" after a passing check
    assert all(h["reload"].startswith("slots") for h in doc["hosts"]), doc
    assert fleet.locks() == [False, False, False]
