"""Real app layouts, written by the tests themselves and deployed without changing the app's own files
(issue "Real apps, as they are"), against real sshd + Apache/mod_wsgi.

(a) seed 000's layout: requirements.txt at the repository root, the Django project (manage.py) in imdb/,
    a shipped SQLite db that must survive as a shared file.
(b) Flask's tutorial app flaskr: pyproject.toml only, an app factory, an init-db hook, its db in instance/.
(c) requirements/production.txt including base.txt: a bump in base.txt reaches the live venv.
(d) a uv project: pyproject.toml + uv.lock, code in src/, data read relative to the working directory.
(e) the app as its own user (daemon.user/group other than the deploy user), secrets, a writable shared db.
(f) a plain WSGI app built by a factory, `module:create_app()`.
Plus the silent cases made loud: a missing or escaping requirements file, `..` in a shared path.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import secrets
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def make(sb: Sandbox, base: Path, name: str, build: object, **cfg: Any) -> App:
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
    # The plan names the tracked file at a shared path (it seeds shared/ once; never a full re-send after).
    assert plan_of(a)["shared_tracked"] == {"imdb/db.sqlite3": ["imdb/db.sqlite3"]}
    shown = a.ok("plan")
    assert "shared     imdb/db.sqlite3: 1 tracked file(s) in the repository; seeds shared/" in shown.stderr + shown.stdout
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


def plan_of(a: App) -> dict[str, object]:
    return json.loads(a.ok("plan", "--json").stdout)["hosts"][0]["plan"]  # type: ignore[no-any-return]


def live_venv(a: App) -> Path:
    return (a.deploy_to / "current" / ".venv").resolve()


FLASKR_INIT = """import os

from flask import Flask, jsonify

VERSION = "1"


def create_app(test_config=None):
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(SECRET_KEY="dev", DATABASE=os.path.join(app.instance_path, "flaskr.sqlite"))
    os.makedirs(app.instance_path, exist_ok=True)
    from . import db

    db.init_app(app)

    @app.route("/posts")
    def posts():
        rows = db.get_db().execute("SELECT title FROM post ORDER BY id").fetchall()
        return jsonify(version=VERSION, titles=[r[0] for r in rows])

    return app
"""
FLASKR_DB = """import sqlite3

import click
from flask import current_app, g


def get_db():
    if "db" not in g:
        g.db = sqlite3.connect(current_app.config["DATABASE"])
    return g.db


def close_db(e=None):
    db = g.pop("db", None)
    if db is not None:
        db.close()


@click.command("init-db")
def init_db_command():
    db = get_db()
    with current_app.open_resource("schema.sql") as f:
        db.executescript(f.read().decode("utf8"))
    click.echo("Initialized the database.")


def init_app(app):
    app.teardown_appcontext(close_db)
    app.cli.add_command(init_db_command)
"""
FLASKR_PYPROJECT = """[project]
name = "flaskr"
version = "1.0.0"
description = "The basic blog app built in the Flask tutorial."
dependencies = ["flask"]

[build-system]
requires = ["flit_core<4"]
build-backend = "flit_core.buildapi"
"""


def flaskr(repo: Path) -> None:
    """Flask's tutorial layout: the flaskr package, pyproject.toml (no requirements file), tests/."""
    (repo / "flaskr").mkdir()
    (repo / "flaskr" / "__init__.py").write_text(FLASKR_INIT)
    (repo / "flaskr" / "db.py").write_text(FLASKR_DB)
    (repo / "flaskr" / "schema.sql").write_text(
        "DROP TABLE IF EXISTS post;\nCREATE TABLE post (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL);\n"
    )
    (repo / "pyproject.toml").write_text(FLASKR_PYPROJECT)
    (repo / "tests").mkdir()
    (repo / "tests" / "test_factory.py").write_text("def test_config():\n    pass\n")
    (repo / ".gitignore").write_text("instance/\n")


def test_flaskr_with_only_pyproject(daemon_host: Sandbox, tmp_path: Path, cleanup: list[App]) -> None:
    hooks = [{"name": "init-db", "run": "flask --app flaskr init-db", "when_changed": ["flaskr/schema.sql"]}]
    a = make(
        daemon_host, tmp_path, "flaskr", flaskr, wsgi="flaskr:create_app()", django_settings=None, hooks=hooks,
        static={}, shared_files=[], shared_dirs=["instance"], health={"path": "/posts"},
    )
    cleanup.append(a)
    a.ok("setup")
    assert plan_of(a)["dependencies"] == "pyproject (pyproject.toml)"
    a.ok("deploy")
    status, _, body = a.get("/posts")
    assert status == 200 and json.loads(body) == {"version": "1", "titles": []}
    first = live_venv(a)
    assert list(first.glob("lib/python3*/site-packages/flask")) and not list(first.glob("lib/python3*/site-packages/flaskr*"))
    db = sqlite3.connect(a.deploy_to / "shared" / "instance" / "flaskr.sqlite")
    db.execute("INSERT INTO post (title) VALUES ('written by the live app')")
    db.commit()
    db.close()
    # A dependency bump: a new venv; init-db (which drops the table) is not among the hooks it re-runs.
    (a.path / "pyproject.toml").write_text(FLASKR_PYPROJECT.replace('["flask"]', '["flask", "six==1.16.0"]'))
    init = a.path / "flaskr" / "__init__.py"
    init.write_text(init.read_text().replace('VERSION = "1"', 'VERSION = "2"'))
    commit(a.path, "bump")
    plan = plan_of(a)
    assert plan["requirements_changed"] and str(plan["venv"]).startswith("build"), plan
    assert [(h["name"], h["run"]) for h in plan["hooks"]] == [("init-db", False)], plan  # type: ignore[attr-defined]
    a.ok("deploy")
    assert json.loads(a.get("/posts")[2]) == {"version": "2", "titles": ["written by the live app"]}
    assert live_venv(a) != first and list(live_venv(a).glob("lib/python3*/site-packages/six.py"))
    a.ok("rollback")
    assert json.loads(a.get("/posts")[2]) == {"version": "1", "titles": ["written by the live app"]}
    assert live_venv(a) == first


SHOP_PYPROJECT = """[project]
name = "shop"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["markupsafe>=2"]

[dependency-groups]
dev = ["pytest>=7"]

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"
"""
SHOP_WEB = """import csv
import json

from markupsafe import escape

VERSION = "1"


def application(environ, start_response):
    # Read relative to the working directory, as many apps do: the daemon's home must be the release.
    with open("data/items.csv", newline="") as f:
        items = [str(escape(row[0])) for row in csv.reader(f)]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"version": VERSION, "items": items}).encode()]
"""


def uv_lock(repo: Path) -> None:
    env = {**os.environ, "UV_SYSTEM_CERTS": "1"}
    p = subprocess.run([shutil.which("uv") or "uv", "lock", "-q"], cwd=repo, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def uv_src_app(repo: Path) -> None:
    (repo / "src" / "shop").mkdir(parents=True)
    (repo / "src" / "shop" / "__init__.py").write_text("")
    (repo / "src" / "shop" / "web.py").write_text(SHOP_WEB)
    (repo / "data").mkdir()
    (repo / "data" / "items.csv").write_text("apples\npears <3\n")
    (repo / "pyproject.toml").write_text(SHOP_PYPROJECT)
    uv_lock(repo)


def test_uv_project_with_a_src_layout(daemon_host: Sandbox, tmp_path: Path, cleanup: list[App]) -> None:
    a = make(
        daemon_host, tmp_path, "uvshop", uv_src_app, wsgi="shop.web:application", python_path=["src"], home=".",
        django_settings=None, hooks=[], static={}, shared_files=[], shared_dirs=[], health={"path": "/"},
    )
    cleanup.append(a)
    a.ok("setup")
    assert plan_of(a)["dependencies"] == "uv (uv.lock, pyproject.toml)"
    a.ok("deploy")
    status, _, body = a.get("/")
    assert status == 200 and json.loads(body) == {"version": "1", "items": ["apples", "pears &lt;3"]}
    first = live_venv(a)
    site = list(first.glob("lib/python3*/site-packages"))[0]
    # The locked set, without the dev group and without the project itself (it imports from src/).
    assert (site / "markupsafe").is_dir() and not (site / "pytest").exists() and not list(site.glob("shop*"))
    # A pyproject.toml changed without `uv lock`: refused before any host is contacted, nothing stale installed.
    (a.path / "pyproject.toml").write_text(SHOP_PYPROJECT.replace('["markupsafe>=2"]', '["markupsafe>=2", "six"]'))
    commit(a.path, "stale-lock")
    before = daemon_host.exec_requests()
    p = a.fab("deploy")
    assert p.returncode == 2 and "uv export of uv.lock failed" in p.stderr and "uv lock" in p.stderr, p.stderr
    assert daemon_host.exec_requests() == before
    uv_lock(a.path)
    (a.path / "data" / "items.csv").write_text("apples\nplums\n")
    commit(a.path, "relocked")
    plan = plan_of(a)
    assert plan["requirements_changed"] and str(plan["venv"]).startswith("build"), plan
    assert "data/items.csv" in plan["files"]["changed"] and "uv.lock" in plan["files"]["changed"]  # type: ignore[index]
    a.ok("deploy")
    assert json.loads(a.get("/")[2]) == {"version": "1", "items": ["apples", "plums"]}
    assert list(live_venv(a).glob("lib/python3*/site-packages/six.py"))
    a.ok("rollback")
    assert json.loads(a.get("/")[2])["items"] == ["apples", "pears &lt;3"]
    assert live_venv(a) == first


OWN_USER_APP = """import json
import os
import pwd
import sqlite3

VERSION = "1"


def application(environ, start_response):
    db = sqlite3.connect("data/hits.sqlite3")
    db.execute("CREATE TABLE IF NOT EXISTS hit (n INTEGER)")
    db.execute("INSERT INTO hit VALUES (1)")
    db.commit()
    hits = db.execute("SELECT count(*) FROM hit").fetchone()[0]
    db.close()
    body = {"version": VERSION, "user": pwd.getpwuid(os.getuid()).pw_name, "hits": hits,
            "secret": len(os.environ.get("SHOP_SECRET", ""))}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]
"""


def own_user_app(repo: Path) -> None:
    (repo / "shopapp.py").write_text(OWN_USER_APP)
    (repo / "requirements.txt").write_text("")
    (repo / "data").mkdir()
    (repo / "data" / ".keep").write_text("")


@pytest.fixture
def app_user(daemon_host: Sandbox) -> Iterator[str]:
    """A system user the app runs as; the deploy user in its group and allowed to signal its processes."""
    name = "fa" + secrets.token_hex(3)
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    subprocess.run(["usermod", "-aG", name, daemon_host.user.name], check=True)
    rule = Path("/etc/sudoers.d") / f"fabdeploy-{name}"
    rule.write_text(f"{daemon_host.user.name} ALL=({name}) NOPASSWD: /bin/kill -USR1 *, /usr/bin/kill -USR1 *\n")
    rule.chmod(0o440)
    yield name
    rule.unlink(missing_ok=True)
    subprocess.run(["gpasswd", "-d", daemon_host.user.name, name], capture_output=True)
    subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
    subprocess.run(["userdel", name], capture_output=True)


def test_app_user_other_than_the_deploy_user(
    daemon_host: Sandbox, tmp_path: Path, cleanup: list[App], app_user: str
) -> None:
    secret = "s3cret-" + secrets.token_hex(8)
    a = make(
        daemon_host, tmp_path, "ownuser", own_user_app, wsgi="shopapp", django_settings=None, hooks=[], static={},
        shared_files=["data/hits.sqlite3"], shared_dirs=[], health={"path": "/"},
        environment={"SHOP_SECRET": secret},
        daemon={"user": app_user, "group": app_user, "processes": 2, "threads": 5},
    )
    cleanup.append(a)
    a.ok("setup")
    out = a.ok("deploy")
    assert secret not in out.stdout + out.stderr
    status, _, body = a.get("/")
    assert status == 200, body
    got = json.loads(body)
    assert (got["user"], got["secret"], got["version"]) == (app_user, len(secret), "1")
    assert json.loads(a.get("/")[2])["hits"] == got["hits"] + 1  # the app writes its shared db
    script = a.deploy_to / "current" / ".release" / "app.wsgi"
    st = script.stat()
    assert grp.getgrgid(st.st_gid).gr_name == app_user and st.st_mode & 0o007 == 0, oct(st.st_mode)
    env_file = a.deploy_to / "current" / ".release" / "env.sh"
    assert env_file.stat().st_mode & 0o077 == 0
    db = a.deploy_to / "shared" / "data" / "hits.sqlite3"
    assert pwd.getpwuid(db.stat().st_uid).pw_name == app_user or grp.getgrgid(db.stat().st_gid).gr_name == app_user
    # A changed secret: the plan says so without showing it; the redeploy serves it; the rollback the old one.
    cfg = json.loads((a.path / "fabric.json").read_text())
    cfg["deploy"]["environment"] = {"SHOP_SECRET": secret + "-2"}
    (a.path / "fabric.json").write_text(json.dumps(cfg))
    app_py = a.path / "shopapp.py"
    app_py.write_text(app_py.read_text().replace('VERSION = "1"', 'VERSION = "2"'))
    commit(a.path, "v2")
    plan = a.ok("plan", "--json").stdout
    assert secret not in plan and "environment values changed" in plan
    a.ok("deploy")
    got2 = json.loads(a.get("/")[2])
    assert (got2["version"], got2["secret"], got2["user"]) == ("2", len(secret) + 2, app_user)
    assert got2["hits"] > got["hits"] + 1  # the same db, still writable after the redeploy
    a.ok("rollback")
    assert json.loads(a.get("/")[2])["version"] == "1"
