"""Real app layouts, written by the tests themselves and deployed without changing the app's own files
(issue "Real apps, as they are"), against real sshd + Apache/mod_wsgi.

(a) seed 000's layout: requirements.txt at the repository root, the Django project (manage.py) in imdb/,
    a shipped SQLite db that must survive as a shared file.
(c) requirements/production.txt including base.txt: a bump in base.txt reaches the live venv.
(f) a plain WSGI app built by a factory, `module:create_app()`.
Plus the silent cases made loud: a missing or escaping requirements file, `..` in a shared path.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import App
from tests.sandbox import REPO_ROOT, Sandbox, app_config

EXAMPLE_ONLY = shutil.ignore_patterns("__pycache__", "db.sqlite3", "staticfiles")


def git_repo(path: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    commit(path, "initial")


def commit(path: Path, message: str) -> None:
    git = "git -c user.email=t@example.com -c user.name=t"
    subprocess.run(f"git add -A && {git} commit --allow-empty -qm {message}", shell=True, cwd=path, check=True)


def make(sb: Sandbox, base: Path, name: str, build: object, **cfg: object) -> App:
    """An app repository laid out by `build(path)`, its fabfile and deploy config."""
    repo = base / "app"
    repo.mkdir()
    build(repo)  # type: ignore[operator]
    (repo / "fabfile.py").write_text("from deploy.tasks import *  # noqa: F403\n")
    home = base / "home"
    home.mkdir()
    app = App(repo, sb, home, name)
    config = app_config(sb, app=name, **cfg)
    (repo / "fabric.json").write_text(json.dumps({"deploy": config}, indent=2))
    git_repo(repo)
    return app


@pytest.fixture
def cleanup(daemon_host: Sandbox) -> Iterator[list[App]]:
    apps: list[App] = []
    yield apps
    for a in apps:
        shutil.rmtree(a.deploy_to, ignore_errors=True)
        (daemon_host.sites_dir / f"{a.name}.conf").unlink(missing_ok=True)
    subprocess.run([str(daemon_host.apachectl), "graceful"], capture_output=True)


def seed_layout(repo: Path) -> None:
    """Seed 000: requirements.txt at the root, the Django project in imdb/ with its own db.sqlite3."""
    shutil.copytree(REPO_ROOT / "example", repo / "imdb", ignore=EXAMPLE_ONLY)
    (repo / "imdb" / "requirements.txt").rename(repo / "requirements.txt")
    (repo / "imdb" / ".gitignore").unlink()  # the seed's repository ships its db
    db = sqlite3.connect(repo / "imdb" / "db.sqlite3")
    db.execute("CREATE TABLE seed (note TEXT)")
    db.execute("INSERT INTO seed VALUES ('shipped with the repository')")
    db.commit()
    db.close()


def seed_notes(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return [r[0] for r in con.execute("SELECT note FROM seed")]
    finally:
        con.close()


def test_seed_layout_with_a_shipped_sqlite_db(daemon_host: Sandbox, tmp_path: Path, cleanup: list[App]) -> None:
    hooks = [{"name": "migrate", "run": "python manage.py migrate --noinput", "when_changed": ["*/migrations/*"]}]
    a = make(
        daemon_host, tmp_path, "seedapp", seed_layout,
        python_path=["imdb"], home="imdb", shared_files=["imdb/db.sqlite3"], shared_dirs=[], hooks=hooks, static={},
    )
    cleanup.append(a)
    a.ok("setup")
    a.ok("deploy")
    shared_db = a.deploy_to / "shared" / "imdb" / "db.sqlite3"
    # The shipped db became the shared one (seeded from the release), and migrate ran in imdb/ on it.
    assert seed_notes(shared_db) == ["shipped with the repository"]
    assert (a.deploy_to / "current" / "imdb" / "db.sqlite3").is_symlink()
    status, _, body = a.get("/movie")
    assert status == 200 and json.loads(body)["count"] == 24
    # A redeploy with a changed view keeps the shared db (never seeded again over live data).
    con = sqlite3.connect(shared_db)
    con.execute("INSERT INTO seed VALUES ('written by the live app')")
    con.commit()
    con.close()
    views = a.path / "imdb" / "movies" / "views.py"
    views.write_text(views.read_text().replace('VERSION = "1"', 'VERSION = "2"'))
    commit(a.path, "v2")
    a.ok("deploy")
    assert seed_notes(shared_db) == ["shipped with the repository", "written by the live app"]
    assert json.loads(a.get("/movie")[2])["version"] == "2"
    a.ok("rollback")
    assert json.loads(a.get("/movie")[2])["version"] == "1"


def split_requirements(repo: Path) -> None:
    shutil.copytree(REPO_ROOT / "example", repo, dirs_exist_ok=True, ignore=EXAMPLE_ONLY)
    (repo / "requirements.txt").unlink()
    (repo / "requirements").mkdir()
    (repo / "requirements" / "base.txt").write_text("Django>=4.2,<5.3\n")
    (repo / "requirements" / "production.txt").write_text("-r base.txt\n")


def test_included_requirements_are_part_of_the_venv(daemon_host: Sandbox, tmp_path: Path, cleanup: list[App]) -> None:
    a = make(daemon_host, tmp_path, "splitreq", split_requirements, requirements="requirements/production.txt")
    cleanup.append(a)
    a.ok("setup")
    a.ok("deploy")
    first_venv = (a.deploy_to / "current" / ".venv").resolve()
    # A security bump in the included file: the plan says so, and the live venv gets it.
    (a.path / "requirements" / "base.txt").write_text("Django>=4.2,<5.3\nsix==1.16.0\n")
    commit(a.path, "bump")
    plan = json.loads(a.ok("plan", "--json").stdout)["hosts"][0]["plan"]
    assert plan["requirements_changed"] and plan["venv"].startswith("build"), plan
    a.ok("deploy")
    venv = (a.deploy_to / "current" / ".venv").resolve()
    assert venv != first_venv
    assert list(venv.glob("lib/python3*/site-packages/six.py")), "the bump in base.txt never reached the live venv"
    a.ok("rollback")
    assert (a.deploy_to / "current" / ".venv").resolve() == first_venv  # the rollback restores the environment


def factory_app(repo: Path) -> None:
    (repo / "hello.py").write_text(
        "def create_app(greeting='hello'):\n"
        "    def app(environ, start_response):\n"
        "        start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "        return [greeting.encode()]\n"
        "    return app\n"
    )
    (repo / "requirements.txt").write_text("")


def test_factory_callable(daemon_host: Sandbox, tmp_path: Path, cleanup: list[App]) -> None:
    a = make(
        daemon_host, tmp_path, "factory", factory_app, wsgi="hello:create_app()", django_settings=None, hooks=[],
        static={}, shared_files=[], shared_dirs=[], health={"path": "/", "contains": "hello"},
    )
    cleanup.append(a)
    a.ok("setup")
    a.ok("deploy")
    status, _, body = a.get("/")
    assert status == 200 and body == "hello"


@pytest.mark.parametrize(
    "over,expect",
    [
        ({"requirements": "requirements/missing.txt"}, "requirements/missing.txt not found"),
        ({"requirements": "../requirements.txt"}, "setting requirements"),
        ({"shared_dirs": ["media", "../x"]}, "setting shared_dirs"),
        ({"shared_dirs": ["media", "media/cache"]}, "media/cache is inside shared path media"),
        ({"static": {"/x/": ".."}}, "setting static"),
    ],
)
def test_silent_cases_are_config_errors(
    daemon_host: Sandbox, tmp_path: Path, cleanup: list[App], over: dict[str, object], expect: str
) -> None:
    a = make(daemon_host, tmp_path, "loud", split_requirements, **{"requirements": "requirements/production.txt", **over})
    cleanup.append(a)
    before = daemon_host.exec_requests()
    p = a.fab("deploy")
    assert p.returncode == 2, p.stderr
    assert expect in p.stderr, p.stderr
    assert daemon_host.exec_requests() == before  # nothing was contacted


def shipped_db_at_the_root(repo: Path) -> None:
    shutil.copytree(REPO_ROOT / "example", repo, dirs_exist_ok=True, ignore=EXAMPLE_ONLY)
    (repo / ".gitignore").unlink()
    db = sqlite3.connect(repo / "db.sqlite3")
    db.execute("CREATE TABLE seed (note TEXT)")
    db.execute("INSERT INTO seed VALUES ('shipped with the repository')")
    db.commit()
    db.close()


def test_a_shipped_shared_file_seeds_shared_on_the_first_deploy(daemon_host: Sandbox, tmp_path: Path, cleanup: list[App]) -> None:
    a = make(daemon_host, tmp_path, "shipdb", shipped_db_at_the_root)  # shared_files: [db.sqlite3], as app_config has it
    cleanup.append(a)
    a.ok("setup")
    a.ok("deploy")
    assert seed_notes(a.deploy_to / "shared" / "db.sqlite3") == ["shipped with the repository"]
    assert json.loads(a.get("/movie")[2])["count"] == 24
