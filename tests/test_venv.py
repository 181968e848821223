"""The venv key covers every file the install reads; a missing or escaping requirements file is a config error."""

from __future__ import annotations

import pytest

from deploy import venv
from deploy.errors import ConfigError


class Src(dict[str, bytes]):
    pass


def test_includes_are_followed_and_keyed() -> None:
    src = Src({"requirements/production.txt": b"-r base.txt\n-c ../constraints.txt\ngunicorn\n",
               "requirements/base.txt": b"Django==4.2.1\n", "constraints.txt": b"asgiref<4\n"})
    files = venv.requirement_files("requirements/production.txt", src)
    assert [p for p, _ in files] == ["requirements/production.txt", "requirements/base.txt", "constraints.txt"]
    before = venv.key(files, "3.11.2", ())
    src["requirements/base.txt"] = b"Django==4.2.2\n"  # a security bump in the included file
    assert venv.key(venv.requirement_files("requirements/production.txt", src), "3.11.2", ()) != before


def test_one_file_keys_as_before() -> None:
    files = venv.requirement_files("requirements.txt", Src({"requirements.txt": b"Django\n"}))
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
        venv.requirement_files("requirements.txt", Src(files))


def test_no_dependencies_when_requirements_is_null() -> None:
    assert venv.requirement_files(None, Src()) == ()
