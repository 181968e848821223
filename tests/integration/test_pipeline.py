"""For people and pipelines, on a real host: plan/--dry-run, --json against its schema, exit codes,
status and releases, plain output without a terminal and rich output with one."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from deploy.output import schema
from tests.integration.conftest import ROOT, App, make_app
from tests.integration.test_slots import spare_waits
from tests.sandbox import Sandbox


@pytest.fixture(scope="module")
def app(daemon_host: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    a = make_app(daemon_host, tmp_path_factory.mktemp("pipeline"), "daemon")
    a.write_config(health={"path": "/movie", "contains": "Godfather"})
    a.commit("config")
    a.ok("setup")
    a.ok("deploy")
    yield a
    shutil.rmtree(a.deploy_to, ignore_errors=True)


def document(p: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """stdout must be exactly one JSON document, valid against the published schema."""
    doc: dict[str, Any] = json.loads(p.stdout)
    jsonschema.validate(doc, schema())
    assert doc["exit_code"] == p.returncode
    return doc


def host_state(a: App) -> dict[str, str]:
    """Everything a deploy could change on the host: every file (content, mode, link target), the vhost."""
    out: dict[str, str] = {}
    roots = [a.deploy_to, a.sb.sites_dir]
    for root in roots:
        for dirpath, dirnames, filenames in sorted(os.walk(root)):
            dirnames.sort()
            for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
                p = Path(dirpath, name)
                parts = p.relative_to(root).parts
                if "run" in parts[:2] or parts[0] == "logs":
                    continue  # shared/run, logs/: markers and log lines Apache's processes write (a spare restarting)
                st = p.lstat()
                body = os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
                out[str(p)] = f"{st.st_mode} {hashlib.sha256(body).hexdigest()}"
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def test_plan_shows_changes_and_changes_nothing(app: App) -> None:
    app.set_version("plan")  # a changed file, committed
    req = app.path / "requirements.txt"
    req.write_text(req.read_text() + "# pinned for the plan test\n")
    app.write_config(health={"path": "/movie", "contains": "Godfather"}, server_aliases=["www.imdb.test"])
    app.commit("requirements and vhost")
    before, execs = host_state(app), app.sb.exec_requests()
    p = app.ok("plan")
    assert not changed(before, host_state(app)), "plan changed something on the host"
    assert app.sb.exec_requests() - execs <= 2
    out = p.stdout
    assert "~ movies/views.py" in out
    assert "+ " in out and "version-plan" in out  # the commits going out
    assert "requirements changed: build" in out
    assert "vhost.conf:" in out and "+    ServerAlias www.imdb.test" in out
    assert "reload     graceful (Apache re-reads its config: new vhost, every slot restarts)" in out
    assert "hook       migrate: skip" in out or "hook       migrate: run (requirements.txt changed)" in out

    dry = document(app.fab("deploy", "--dry-run", "--json"))
    assert dry["ok"] and dry["task"] == "plan" and dry["dry_run"] is True
    plan = dry["hosts"][0]["plan"]
    assert "movies/views.py" in plan["files"]["changed"]
    assert plan["requirements_changed"] is True and plan["venv"].startswith("build ")
    assert "vhost.conf" in plan["diffs"] and "ServerAlias www.imdb.test" in plan["diffs"]["vhost.conf"]
    assert plan["live_release"] == app.current()
    assert not changed(before, host_state(app))


def test_deploy_json_document(app: App) -> None:
    p = app.fab("deploy", "--json")
    doc = document(p)
    assert p.returncode == 0 and doc["ok"] and doc["error"] is None
    assert doc["release"] == app.current() and len(doc["revision"]) == 40
    h = doc["hosts"][0]
    assert h["result"] == "live" and h["release"] == app.current() and h["health"] == "ok"
    steps = [s["step"] for s in h["steps"]]
    assert {"unpack", "venv", "configtest", "health"} <= set(steps)
    assert "[" in p.stderr  # progress went to stderr
    app.wait_version(app.version())
    # After the deploy the plan has nothing left to do.
    plan = document(app.fab("plan", "--json"))["hosts"][0]["plan"]
    assert plan["files"]["changed"] == [] and plan["files"]["added"] == [] and plan["diffs"] == {}
    assert plan["requirements_changed"] is False


def test_exit_codes_and_error_documents(app: App) -> None:
    live = app.current()
    p = app.fab("deploy", "--json", "--stage", "nope")
    doc = document(p)
    assert p.returncode == 2 and doc["error"]["type"] == "ConfigError" and "unknown stage 'nope'" in doc["error"]["message"]
    assert p.stderr.strip().splitlines()[-1].startswith("error: unknown stage")

    (app.deploy_to / ".lock").mkdir()
    (app.deploy_to / ".lock" / "info").write_text("owner=alice host=elsewhere pid=1 time=1 cmd=deploy\n")
    try:
        p = app.fab("deploy", "--json")
        doc = document(p)
        assert p.returncode == 4 and doc["error"]["type"] == "LockHeld" and "alice@elsewhere" in doc["error"]["message"]
        assert doc["hosts"][0]["result"] == "failed"
    finally:
        shutil.rmtree(app.deploy_to / ".lock")

    app.write_config(health={"path": "/movie", "contains": "no such text", "timeout": 10})
    app.set_version("unhealthy")
    p = app.fab("deploy", "--json")
    doc = document(p)
    assert p.returncode == 7 and doc["error"]["type"] == "HealthCheckFailed" and "nothing was switched" in doc["error"]["message"]
    assert app.current() == live

    p = app.fab("rollback", "--to", "../../etc", "--json")
    assert p.returncode == 6 and document(p)["error"]["type"] == "NothingToRollBack"

    env = dict(os.environ, HOME=str(app.home), PYTHONPATH=str(ROOT))
    p = subprocess.run(
        [sys.executable, "-m", "fabric", "-H", "deploy@127.0.0.1:1", "status", "--json"],
        cwd=app.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    doc = document(p)
    assert p.returncode == 3 and doc["error"]["type"] == "ConnectError"
    app.write_config(health={"path": "/movie", "contains": "Godfather"})
    app.commit("healthy again")


def test_status_and_releases(app: App) -> None:
    spare_waits(app)  # the last deploy's flip restarts the slot that becomes the spare
    out = app.ok("status").stdout
    assert f"live {app.current()}" in out
    assert "deployed   " in out and " by " in out
    assert "daemon mode (group imdb-" in out and "mpm event" in out and "slot a" in out and "slot c" in out
    assert "processes  " in out and "health     ok GET /movie answered 200" in out and "disk       releases" in out
    doc = document(app.fab("status", "--json"))
    st = doc["hosts"][0]["status"]
    assert st["mode"] == "daemon" and len(st["processes"]) == 4 and st["disk_kib"]["venvs"] > 0  # 2 per loaded slot
    assert [len(s["pids"]) for s in st["slots"]] == [2, 2, 2]
    assert st["deployed"]["release"] == app.current()

    out = app.ok("releases").stdout
    assert f"* {app.current()}" in out and "finished" in out
    rels = document(app.fab("releases", "--json"))["hosts"][0]["releases"]
    assert [r["id"] for r in rels if r["live"]] == [app.current()]


def test_output_without_and_with_a_terminal(app: App) -> None:
    p = app.ok("reload")
    assert "\x1b[" not in p.stderr and p.stdout == ""
    assert all(line.startswith("[") for line in p.stderr.splitlines()), p.stderr
    # Under a pseudo-terminal (script(1)): colour from rich; NO_COLOR turns it off.
    env = dict(os.environ, HOME=str(app.home), PYTHONPATH=str(ROOT), TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    cmd = " ".join(["fab", "-S", str(app.sb.ssh_config), "-H", app.sb.host_alias, "reload"])
    tty = subprocess.run(["script", "-qec", cmd, "/dev/null"], cwd=app.path, env=env, capture_output=True, text=True, timeout=120)
    assert tty.returncode == 0, tty.stdout
    assert "\x1b[" in tty.stdout and "reloaded in" in tty.stdout
    env["NO_COLOR"] = "1"
    plain = subprocess.run(
        ["script", "-qec", cmd, "/dev/null"], cwd=app.path, env=env, capture_output=True, text=True, timeout=120
    )
    assert plain.returncode == 0 and "reloaded in" in plain.stdout
    assert "\x1b[3" not in plain.stdout  # no colours (a spinner may still move the cursor)
