"""The health check (deploy/remote/health.py) as the phase scripts run it: `probe` with the host's python3,
against a small local HTTP server standing in for the vhost."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from deploy import remote


class Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def base() -> Iterator[str]:
    def app(environ: dict[str, str], start_response):  # type: ignore[no-untyped-def]
        path, host = environ["PATH_INFO"], environ.get("HTTP_HOST", "")
        if path == "/__deploy__/status" and host == "app.test":
            body = json.dumps({"release": "R2", "process_group": "app"}).encode()
        elif path == "/movie":
            body = b"The Godfather"
        elif path == "/secure" and environ.get("HTTP_X_FORWARDED_PROTO") != "https":
            start_response("301 Moved Permanently", [("Location", "https://app.example.com/secure")])
            return [b""]
        elif path == "/secure":
            body = b"secure page"
        else:
            start_response("404 Not Found", [])
            return [b"nope"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def probe(*args: str, headers: str = "") -> subprocess.CompletedProcess[str]:
    text = remote.script("unlock", {"PYTHON": sys.executable, "DEPLOY_TO": "/nonexistent"}).split("\n# Remove a lock")[0]
    run = text + '\nHEALTH_HEADERS=$1; shift; HEALTH_HEADERS=$HEALTH_HEADERS probe "$@"'
    return subprocess.run(["bash", "-c", run, "bash", headers, *args], capture_output=True, text=True, timeout=60)


def test_check_passes_when_the_new_release_answers(base: str) -> None:
    p = probe("check", "R2", base, "app.test", "/__deploy__/status", "/movie", "200", "Godfather", "5", "1", "/warm")
    assert p.returncode == 0, p.stdout + p.stderr


def test_check_names_what_failed(base: str) -> None:
    p = probe("check", "R3", base, "app.test", "/__deploy__/status", "/movie", "200", "", "1", "1")
    assert p.returncode == 1 and "not release R3" in p.stdout
    p = probe("check", "R2", base, "app.test", "/__deploy__/status", "/movie", "200", "Casablanca", "3", "1")
    assert p.returncode == 1 and "body without 'Casablanca'" in p.stdout


def test_status_events(base: str) -> None:
    p = probe("status", base, "app.test", "/__deploy__/status", "/movie", "200", "Godfather")
    lines = p.stdout.splitlines()
    assert json.loads(lines[0].removeprefix("@@app "))["release"] == "R2"
    assert lines[1] == "@@health ok GET /movie answered 200"


def test_redirects_are_reported_not_followed(base: str) -> None:
    args = ("check", "R2", base, "app.test", "/__deploy__/status", "/secure", "200", "", "2", "1")
    p = probe(*args)
    assert p.returncode == 1 and "answered 301" in p.stdout and "Location: https://app.example.com/secure" in p.stdout
    assert probe(*args[:6], "301", *args[7:]).returncode == 0  # health.status may accept the redirect
    assert probe(*args, headers='{"X-Forwarded-Proto": "https"}').returncode == 0  # or health.headers avoid it
