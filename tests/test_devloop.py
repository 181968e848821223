from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploy import devloop as watch
from deploy.config import load
from deploy.errors import ConfigError

BASE = {"app": "imdb", "deploy_to": "/srv/imdb", "server_name": "imdb.example.com", "wsgi": "imdb.wsgi"}


def tree(root: Path) -> None:
    for p in ("app/views.py", "app/__pycache__/views.cpython-311.pyc", "db.sqlite3", "media/a.png", "notes.log", "README"):
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_text(p)


def test_local_paths_of_a_tree_leave_out_excludes_and_shared_paths(tmp_path: Path) -> None:
    tree(tmp_path)
    s = load(
        {**BASE, "source": "tree", "shared_files": ["db.sqlite3"], "shared_dirs": ["media"], "exclude": ["__pycache__", "*.log"]}
    )
    assert watch.local_paths(tmp_path, s) == ["README", "app/views.py"]


def test_local_paths_of_a_git_tree_are_what_git_sees(tmp_path: Path) -> None:
    tree(tmp_path)
    (tmp_path / ".gitignore").write_text("*.log\n__pycache__/\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "README", ".gitignore"], cwd=tmp_path, check=True)
    s = load({**BASE, "shared_files": ["db.sqlite3"], "shared_dirs": ["media"]})
    # tracked (README, .gitignore) and untracked-but-not-ignored (app/views.py); never shared or ignored ones
    assert watch.local_paths(tmp_path, s) == [".gitignore", "README", "app/views.py"]


def test_watch_refuses_production() -> None:
    s = load({**BASE, "stages": {"production": {}}}, stage="production")
    with pytest.raises(ConfigError, match="refusing to watch stage 'production'"):
        watch.refuse_production(s)


def test_archive_layout() -> None:
    import io
    import tarfile

    from deploy.source import File

    data = watch.archive([File("app/views.py", b"x", 0o644)], ["old.py"], {"app/views.py": "d" * 64})
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        assert names == ["files/app/views.py", "ctl/removed", "ctl/manifest"]
        assert tar.extractfile("ctl/manifest").read() == b"d" * 64 + b"  app/views.py\n"  # type: ignore[union-attr]
