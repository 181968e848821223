"""What the venv installs, found like Heroku does; the key covers what is installed; bad layouts are config errors."""

from __future__ import annotations

import shutil

import pytest

from deploy import dependencies, venv
from deploy.errors import ConfigError


class Src(dict[str, bytes]):
    pass


def test_includes_are_followed_and_keyed() -> None:
    src = Src({"requirements/production.txt": b"-r base.txt\n-c ../constraints.txt\ngunicorn\n",
               "requirements/base.txt": b"Django==4.2.1\n", "constraints.txt": b"asgiref<4\n"})
    files = dependencies.requirement_files("requirements/production.txt", src)
    assert [p for p, _ in files] == ["requirements/production.txt", "requirements/base.txt", "constraints.txt"]
    before = venv.key(files, "3.11.2", ())
    src["requirements/base.txt"] = b"Django==4.2.2\n"  # a security bump in the included file
    assert venv.key(dependencies.requirement_files("requirements/production.txt", src), "3.11.2", ()) != before


def test_one_file_keys_as_before() -> None:
    files = dependencies.requirement_files("requirements.txt", Src({"requirements.txt": b"Django\n"}))
    assert venv.key(files, "3.11.2", ()) == venv.key((("requirements.txt", b"Django\n"),), "3.11.2", ())


@pytest.mark.parametrize(
    "files,expect",
    [
        ({}, "requirements.txt not found in the release (setting requirements)"),
        ({"requirements.txt": b"-r base.txt\n"}, "base.txt not found in the release (included by requirements.txt line 1)"),
        ({"requirements.txt": b"--requirement=../../etc/x\n"}, "outside the release"),
        ({"requirements.txt": b"-r /etc/passwd\n"}, "outside the release"),
    ],
)
def test_missing_or_escaping_files_are_named(files: dict[str, bytes], expect: str) -> None:
    with pytest.raises(ConfigError, match=expect.replace("(", r"\(").replace(")", r"\)")):
        dependencies.requirement_files("requirements.txt", Src(files))


def test_no_dependencies_when_requirements_is_null() -> None:
    assert dependencies.find("auto", None, Src()).kind == "none"
    assert dependencies.find("none", "requirements.txt", Src({"requirements.txt": b"x\n"})).keyed == ()


PYPROJECT = b'[project]\nname = "flaskr"\nversion = "1"\ndependencies = ["flask>=3", "click"]\n[tool.x]\na = 1\n'


def test_detection_takes_exactly_one() -> None:
    assert dependencies.find("auto", "requirements.txt", Src({"requirements.txt": b"Django\n"})).kind == "requirements"
    with pytest.raises(ConfigError, match="the release has requirements.txt and uv.lock: set deploy.dependencies"):
        dependencies.find("auto", "requirements.txt", Src({"requirements.txt": b"x\n", "uv.lock": b"", "pyproject.toml": b""}))
    with pytest.raises(ConfigError, match="no requirements.txt, uv.lock, poetry.lock or pyproject.toml in the release"):
        dependencies.find("auto", "requirements.txt", Src({"app.py": b""}))
    with pytest.raises(ConfigError, match="setup.py alone cannot be read"):
        dependencies.find("auto", "requirements.txt", Src({"setup.py": b""}))
    with pytest.raises(ConfigError, match="Pipfile.lock is not supported"):
        dependencies.find("auto", "requirements.txt", Src({"Pipfile.lock": b"{}"}))


def test_pyproject_installs_its_dependency_list_not_the_app() -> None:
    deps = dependencies.find("auto", "requirements.txt", Src({"pyproject.toml": PYPROJECT}))
    assert (deps.kind, deps.install, deps.generated) == ("pyproject", dependencies.GENERATED, b"flask>=3\nclick\n")
    # An edit outside the dependency list keeps the venv (the key is what is installed).
    other = dependencies.find("auto", "requirements.txt", Src({"pyproject.toml": PYPROJECT.replace(b"a = 1", b"a = 2")}))
    assert venv.key(other.keyed, "3.11", ()) == venv.key(deps.keyed, "3.11", ())
    with pytest.raises(ConfigError, match="declares its dependencies dynamic"):
        dependencies.find("pyproject", None, Src({"pyproject.toml": b'[project]\nname="x"\ndynamic=["dependencies"]\n'}))


def test_the_app_itself_is_refused_in_requirements() -> None:
    with pytest.raises(ConfigError, match=r"requirements.txt line 2 installs the app itself \(-e \.\)"):
        dependencies.find("requirements", "requirements.txt", Src({"requirements.txt": b"Django\n-e .\n"}))


@pytest.mark.skipif(dependencies.uv_binary() is None, reason="needs uv on this machine")
def test_uv_lock_is_exported_without_dev_groups_or_the_project(tmp_path: object) -> None:
    import subprocess
    from pathlib import Path

    root = Path(str(tmp_path))
    pyproject = b'[project]\nname = "shop"\nversion = "0.1"\nrequires-python = ">=3.10"\ndependencies = ["six==1.16.0"]\n'
    pyproject += b'[dependency-groups]\ndev = ["pytest"]\n'
    (root / "pyproject.toml").write_bytes(pyproject)
    p = subprocess.run([str(dependencies.uv_binary()), "lock", "-q"], cwd=root, capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"uv lock needs the package index: {p.stderr.strip()[:80]}")
    src = Src({"pyproject.toml": pyproject, "uv.lock": (root / "uv.lock").read_bytes()})
    deps = dependencies.find("auto", "requirements.txt", src)
    assert deps.kind == "uv" and deps.generated is not None
    text = deps.generated.decode()
    assert "six==1.16.0" in text and "--hash=sha256:" in text and "pytest" not in text and "shop" not in text
    # A lock older than pyproject.toml is refused with uv's own words, never installed stale.
    src["pyproject.toml"] = pyproject.replace(b"six==1.16.0", b"six==1.17.0")
    with pytest.raises(ConfigError, match="uv export of uv.lock failed: .*needs to be updated"):
        dependencies.find("auto", "requirements.txt", src)


def test_poetry_without_poetry_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="poetry.lock needs poetry on this machine"):
        dependencies.find("auto", "requirements.txt", Src({"poetry.lock": b"x", "pyproject.toml": PYPROJECT}))

