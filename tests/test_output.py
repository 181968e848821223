from __future__ import annotations

import io
import json

import jsonschema

from deploy.errors import LockHeld
from deploy.output import Reporter, TaskRun, schema


def test_documents_match_the_schema() -> None:
    rep = Reporter(stream=io.StringIO(), live=False)
    rep.event("web1", "step unpack 10.5 10.0 3 sent, 5 linked")
    run = TaskRun("deploy", True, rep)
    run.host("web1", result="live", release="20260101T000000Z-abc", seconds=1.0)
    doc = json.loads(run.dump())
    jsonschema.validate(doc, schema())
    assert doc["ok"] and doc["hosts"][0]["steps"] == [{"step": "unpack", "seconds": 0.5, "note": "3 sent, 5 linked"}]

    failed = json.loads(run.dump(LockHeld("web1: deploy lock held by alice"), 4))
    jsonschema.validate(failed, schema())
    assert not failed["ok"] and failed["exit_code"] == 4 and failed["error"]["type"] == "LockHeld"


def test_plain_lines_without_a_terminal() -> None:
    out = io.StringIO()
    rep = Reporter(stream=out)
    rep.event("web1", "begin building virtualenv")  # spinner only: nothing in a log
    rep.event("web1", "step venv 12.0 10.0 built abc")
    rep.event("web1", "python 3.11")  # data for the tool
    assert out.getvalue() == "[web1] venv             built abc (2.00s)\n"
