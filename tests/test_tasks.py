from __future__ import annotations

import json

import jsonschema
import pytest
from invoke.config import Config
from invoke.context import MockContext
from invoke.exceptions import Exit

from deploy import tasks
from deploy.output import schema


def ctx(deploy: dict[str, object] | None) -> MockContext:
    return MockContext(config=Config(overrides={"deploy": deploy} if deploy is not None else {}))


def test_config_error_is_a_json_document_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(Exit) as exc:
        tasks.status.body(ctx({"app": "imdb", "output": "json"}))  # `output: json` without --json
    assert exc.value.code == 2
    assert "missing required setting deploy.deploy_to" in str(exc.value.message)
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, schema())
    assert doc["ok"] is False and doc["task"] == "status" and doc["error"]["type"] == "ConfigError"


def test_text_mode_prints_nothing_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(Exit) as exc:
        tasks.plan.body(ctx(None), json=False)
    assert exc.value.code == 2 and "no 'deploy:' section" in str(exc.value.message)
    assert capsys.readouterr().out == ""


def test_every_task_documents_every_option() -> None:
    for name in tasks.__all__:
        t = getattr(tasks, name)
        assert (t.__doc__ or "").strip(), f"{name} has no docstring"
        options = [a for a in t.argspec(t.body).parameters if a != "c"]
        assert "json" in options, name
        for opt in options:
            assert opt.replace("_", "-") in t.help or opt in t.help, f"{name} --{opt} has no help"
