from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from deploy.errors import ConfigError
from deploy.source import archive, from_git, from_tree


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@e", "-c", "user.name=t", *args], cwd=cwd, check=True, capture_output=True)


def test_git_subdirectory_at_ref(tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "pkg").mkdir(parents=True)
    (app / "pkg" / "mod.py").write_text("X = 1\n")
    (app / "untracked.txt").write_text("no")
    (tmp_path / "top.txt").write_text("outside")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "app/pkg/mod.py", "top.txt")
    git(tmp_path, "commit", "-qm", "one")
    src = from_git(app, "HEAD")
    assert [f.path for f in src.files] == ["pkg/mod.py"]
    assert len(src.revision) == 40 and src.short_revision == src.revision[:7]
    with pytest.raises(ConfigError, match="not a commit"):
        from_git(app, "no-such-ref")


def test_tree_excludes(tmp_path: Path) -> None:
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"x")
    (tmp_path / "a.py").write_text("a")
    (tmp_path / "b.pyc").write_text("b")
    src = from_tree(tmp_path, ("__pycache__", "*.pyc"))
    assert [f.path for f in src.files] == ["a.py"]
    assert src.revision.startswith("tree-")


def test_archive_round_trip(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o755)
    src = from_tree(tmp_path, ())
    data = archive(src.files, {".release/env.sh": (b"A=1\n", 0o600)}, src.mtime)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["run.sh"].mode == 0o755
    assert members[".release/env.sh"].mode == 0o600
    assert "run.sh" in src.manifest()


def test_delta_sends_only_changes(tmp_path: Path) -> None:
    from deploy.source import delta, parse_manifest

    (tmp_path / "a.py").write_text("a")
    (tmp_path / "b.py").write_text("b")
    old = from_tree(tmp_path, ())
    (tmp_path / "b.py").write_text("B")
    (tmp_path / "c.py").write_text("c")
    new = from_tree(tmp_path, ())
    d = delta(new, parse_manifest(old.manifest()))
    assert [f.path for f in d.send] == ["b.py", "c.py"] and d.link == ("a.py",) and not d.full
    assert delta(new, None).full
    (tmp_path / "a.py").unlink()
    assert "a.py" in delta(from_tree(tmp_path, ()), parse_manifest(old.manifest())).changed
