"""Secrets from the deploying machine: `{env: NAME}` and `{command: CMD}` values of `environment:`."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from deploy import planning, release, render, secrets, source
from deploy.config import Secret, load
from deploy.errors import ConfigError

BASE: dict[str, Any] = {"app": "imdb", "deploy_to": "/srv/imdb", "server_name": "imdb.example.com", "wsgi": "imdb.wsgi"}
VALUE = "s3cr3t-value-42"


def settings(**env: Any) -> Any:
    return load({**BASE, "environment": env})


def test_the_shape_is_checked_when_the_config_is_loaded() -> None:
    s = settings(A={"env": "FD_A"}, B={"command": "pass show x"}, C="plain")
    assert s.environment == {"A": Secret("env", "FD_A"), "B": Secret("command", "pass show x"), "C": "plain"}
    for bad, words in (
        ({"env": "FD", "command": "x"}, "exactly one key"),
        ({"file": "/x"}, "exactly one key"),
        ({"env": "no spaces"}, "name of a variable"),
        ({"command": "  "}, "shell command"),
        ({"command": ["pass"]}, "shell command"),
    ):
        with pytest.raises(ConfigError, match=words):
            settings(K=bad)


def test_env_and_command_are_resolved_once(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    cmd = f"echo x >> {counter}; printf '{VALUE}\\n\\n'"
    s = secrets.resolve(settings(A={"env": "FD_A"}, B={"command": cmd}, C={"command": cmd}, D="plain"), {"FD_A": "from-env"})
    assert s.environment == {"A": "from-env", "B": VALUE, "C": VALUE, "D": "plain"}
    assert counter.read_text() == "x\n"  # one run for both keys
    plain = settings(D="plain")
    assert secrets.resolve(plain, {}) is plain


def test_a_missing_variable_names_it_never_a_value() -> None:
    with pytest.raises(ConfigError, match=r"environment.SECRET_KEY: the variable IMDB_SECRET_KEY is not set") as exc:
        secrets.resolve(settings(SECRET_KEY={"env": "IMDB_SECRET_KEY"}), {"OTHER": VALUE})
    assert exc.value.exit_code == 2 and VALUE not in str(exc.value)


def test_a_failing_command_names_it_and_its_message_not_its_output() -> None:
    cmd = f"echo {VALUE}; echo 'Error: imdb/key is not in the password store.' >&2; exit 1"
    with pytest.raises(ConfigError) as exc:
        secrets.resolve(settings(K={"command": cmd}), {})
    msg = str(exc.value)
    assert "environment.K: the command" in msg and "failed (exit 1): Error: imdb/key is not in the password store." in msg
    assert exc.value.exit_code == 2
    assert msg.count(VALUE) == 1  # only as part of the command line the user wrote, never its stdout
    with pytest.raises(ConfigError, match="printed nothing"):
        secrets.resolve(settings(K={"command": "true"}), {})


def test_an_unresolved_secret_is_never_shipped() -> None:
    s = settings(K={"env": "FD_K"})
    with pytest.raises(ConfigError, match="not resolved"):
        render.render(s, "20260101T000000Z-a", "a")
    src = source.Source((source.File("app.py", b"x", 0o644), source.File("requirements.txt", b"", 0o644)), "a" * 40, 0)
    resolved = secrets.resolve(s, {"FD_K": VALUE})
    archive = release.build_archive(resolved, src, "20260101T000000Z-a", Path("."))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.getmember(".release/env.sh")
        f = tar.extractfile(member)
        assert f is not None and f.read().decode() == f"K={VALUE}\n" and member.mode == 0o600


def test_a_changed_secret_shows_as_changed_in_the_plan_never_its_value() -> None:
    from tests.test_planning import _survey

    survey: Any = _survey({"app.py": b"1", "requirements.txt": b"Django\n"})
    live_script = render.render(secrets.resolve(settings(K={"env": "FD_K"}), {"FD_K": "old-" + VALUE}), "r", "a" * 40)
    import dataclasses

    survey = dataclasses.replace(survey, wsgi=live_script["app.wsgi"])
    src = source.Source((source.File("app.py", b"1", 0o644), source.File("requirements.txt", b"Django\n", 0o644)), "b" * 40, 0)
    s = secrets.resolve(settings(K={"env": "FD_K"}), {"FD_K": VALUE})
    p = planning.make(s, src, survey, Path("."))
    assert p["diffs"]["environment"] == "environment values changed (not shown)"
    assert VALUE not in json.dumps(p)
    same = planning.make(secrets.resolve(settings(K={"env": "FD_K"}), {"FD_K": "old-" + VALUE}), src, survey, Path("."))
    assert "environment" not in same["diffs"]
