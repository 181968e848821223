"""Day-2 operations without a server: check's events and report, setup refusing hosts that fail their checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deploy import fleet, host
from deploy.config import Settings, load
from deploy.errors import CheckFailed, FleetError
from deploy.output import Reporter, check_text
from tests.test_fleet import HOSTS, Conn, FakeOps

S = load({"app": "imdb", "deploy_to": "/srv/imdb", "server_name": "imdb.example.com", "wsgi": "imdb.wsgi"})

EVENTS = (
    "check ssh ok logged in as deploy on web1",
    "check deploy_to fail /srv is not writable by deploy",
    "fix deploy_to sudo install -d -o deploy -g deploy /srv/imdb",
    "check mod_rewrite warn mod_rewrite is not loaded: fab maintenance needs it",
    "fix mod_rewrite sudo a2enmod rewrite && sudo apache2ctl graceful",
    "lock owner=x",  # another event: not a check
)


def test_checks_are_read_from_events_with_their_fixes() -> None:
    got = host.checks(EVENTS)
    assert [(x["name"], x["status"]) for x in got] == [("ssh", "ok"), ("deploy_to", "fail"), ("mod_rewrite", "warn")]
    assert got[1]["detail"] == "/srv is not writable by deploy"
    assert got[1]["fix"] == ["sudo install -d -o deploy -g deploy /srv/imdb"] and got[0]["fix"] == []
    text = check_text("web1", got)
    assert text.splitlines()[0] == "web1: 1 of 3 checks failed"
    assert "! FAIL  deploy_to" in text and "fix: sudo install -d -o deploy" in text and "~ warn  mod_rewrite" in text


def test_a_failed_check_is_an_error_with_its_fix_lines() -> None:
    err = CheckFailed("web1", [x for x in host.checks(EVENTS) if x["status"] == "fail"])
    assert err.exit_code == 9 and err.host == "web1"
    lines = str(err).splitlines()
    assert lines[0] == "web1: 1 check failed (deploy_to); fix, then run fab check"
    assert lines[-1] == "    fix: sudo install -d -o deploy -g deploy /srv/imdb"


@dataclass
class CheckingOps(FakeOps):
    bad: set[str] = field(default_factory=set)

    def check(self, c: Conn, s: Settings) -> list[dict[str, object]]:
        self._do("check", c)
        return host.checks(EVENTS if c.original_host in self.bad else EVENTS[:1])

    def setup(self, c: Conn, s: Settings, vhost: str, lock_info: str, rep: Reporter) -> None:
        self._do("setup", c)


def test_setup_checks_every_host_first_and_changes_none_when_one_fails() -> None:
    ops = CheckingOps(bad={"web2"})
    with pytest.raises(FleetError) as exc:
        fleet.setup(HOSTS, S, Path("."), ops=ops)  # type: ignore[arg-type]
    assert exc.value.exit_code == 9 and list(exc.value.errors) == ["web2"]
    assert ops.ops("setup") == [] and len(ops.ops("check")) == 3
    one = CheckingOps(bad={"web1"})
    with pytest.raises(CheckFailed):
        fleet.setup(HOSTS[:1], S, Path("."), ops=one)  # type: ignore[arg-type]
    fine = CheckingOps()
    runs: Any = fleet.setup(HOSTS, S, Path("."), ops=fine)  # type: ignore[arg-type]
    assert [r.result for r in runs] == ["ok"] * 3 and len(fine.ops("setup")) == 3


def _logtail(path: Path, lines: int, since: int, capsys: pytest.CaptureFixture[str]) -> list[str]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("fd_logs", Path(__file__).resolve().parents[1] / "deploy/remote/logs.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([str(path), str(lines), str(since), "0"]) == 0
    return [ln.removeprefix("@@out ") for ln in capsys.readouterr().out.splitlines()]


def test_logtail_takes_the_last_lines_since_a_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    def error_time(t: float) -> str:
        return time.strftime("[%a %b %d %H:%M:%S.000123 %Y]", time.localtime(t))

    now = time.time()
    log = tmp_path / "error.log"
    old = [f"{error_time(now - 3600)} [wsgi:error] old {i}" for i in range(3000)]  # more than one block back
    new = [f"{error_time(now - 5)} [wsgi:error] Traceback (most recent call last):", "  continuation without a time"]
    log.write_text("\n".join(old + new) + "\n")
    assert _logtail(log, 2, 0, capsys) == new
    assert _logtail(log, 0, 600, capsys) == new  # 0 lines: all of --since; the continuation keeps its line's time
    assert _logtail(log, 3, 7200, capsys) == [old[-1], *new]
    access = tmp_path / "access.log"
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now - 30))
    access.write_text(f'127.0.0.1 - - [{stamp}] "GET /movie HTTP/1.1" 500 145 3000 "-" "x"\n')
    assert len(_logtail(access, 10, 60, capsys)) == 1 and _logtail(access, 10, 10, capsys) == []


def test_since_and_lines_of_several_hosts() -> None:
    import io

    from deploy.api import since_seconds
    from deploy.errors import ConfigError
    from deploy.output import HostLines

    assert [since_seconds(x) for x in ("90s", "10m", "2h", "1d", "45", None)] == [90, 600, 7200, 86400, 45, 0]
    with pytest.raises(ConfigError, match="--since"):
        since_seconds("yesterday")
    out = io.StringIO()
    HostLines(True, out)("web1", "a line")
    HostLines(False, out)("web1", "as it is")
    assert out.getvalue() == "[web1] a line\nas it is\n"


def test_output_of_several_hosts_is_prefixed_line_by_line() -> None:
    import io

    from deploy.output import HostStreams

    out, err = io.BytesIO(), io.BytesIO()
    streams = HostStreams(True, out, err)
    streams.stdout("web1", b"one\ntw")
    streams.stdout("web2", b"x\n")
    streams.stderr("web1", b"oops\n")
    streams.stdout("web1", b"o\nend")
    streams.close()
    assert out.getvalue() == b"[web1] one\n[web2] x\n[web1] two\n[web1] end\n" and err.getvalue() == b"[web1] oops\n"
    raw = io.BytesIO()
    HostStreams(False, raw, err).stdout("web1", b"\x00binary, as it is")
    assert raw.getvalue() == b"\x00binary, as it is"


def test_the_command_exit_code_is_passed_through() -> None:
    from deploy.api import Result, exit_error
    from deploy.errors import CommandExited

    assert exit_error([Result("web1", "exec", details={"exit_code": 0})]) is None
    one = exit_error([Result("web1", "exec", details={"exit_code": 3})])
    assert isinstance(one, CommandExited) and one.exit_code == 3 and str(one) == "web1: the command exited with 3"
    assert CommandExited({"web1": 2, "web2": 2}).exit_code == 2 and CommandExited({"web1": 2, "web2": 4}).exit_code == 1


def test_the_vhost_keys_maintenance_on_the_page_and_the_page_escapes_its_message(tmp_path: Path) -> None:
    from deploy import render

    vhost = render.render(S, "20260101T000000Z-a", "a")["vhost.conf"]
    assert "RewriteCond /srv/imdb/maintenance -f" in vhost and "RewriteRule ^ - [R=503,L]" in vhost
    assert 'Header always set Retry-After "600"' in vhost and "ErrorDocument 503 /__fabdeploy__/maintenance" in vhost
    assert "ErrorLog /srv/imdb/logs/error.log" in vhost
    page = render.maintenance_page(S, None, "Back at <b>5</b>")
    assert "Back at &lt;b&gt;5&lt;/b&gt;" in page and "10 minutes" in page
    (tmp_path / "conf_templates").mkdir()
    (tmp_path / "conf_templates" / "maintenance.html.j2").write_text("own page of {{ app }}\n")
    assert render.maintenance_page(S, tmp_path) == "own page of imdb\n"


def test_documents_of_the_day2_tasks_match_the_schema() -> None:
    import io
    import json

    import jsonschema

    from deploy.errors import CommandExited
    from deploy.output import TaskRun, schema

    rep = Reporter(stream=io.StringIO(), live=False)
    docs = []
    run = TaskRun("check", True, rep)
    run.host("web1", result="failed", checks=host.checks(EVENTS))
    docs.append(run.document(CheckFailed("web1", host.checks(EVENTS)[1:2]), 9))
    run = TaskRun("logs", True, rep)
    run.host("web1", result="ok", lines=["[Tue Dec 01 12:00:00 2026] [wsgi:error] Traceback"])
    docs.append(run.document())
    run = TaskRun("exec", True, rep)
    run.host("web1", result="exited 3", exit_code=3, stdout="out\n", stderr="")
    docs.append(run.document(CommandExited({"web1": 3}), 3))
    run = TaskRun("maintenance", True, rep)
    run.host("web1", result="ok", maintenance="on")
    docs.append(run.document())
    for doc in docs:
        jsonschema.validate(json.loads(json.dumps(doc)), schema())
