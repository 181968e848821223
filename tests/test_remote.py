"""Phase scripts: every value reaches the host shell-quoted; run() streams stdin over one exec request."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from deploy import remote

NASTY = ["; rm -rf /tmp/x", "$(touch /tmp/pwned)", "a'b\"c", "with space", "`id`", "\\n", ""]


def test_header_quotes_every_value() -> None:
    text = "".join(f"{k}={remote._bash(v)}\n" for k, v in {"A": NASTY[0], "B": NASTY[1], "L": NASTY}.items())
    text += 'printf "%s\\n" "$A" "$B" "${L[@]}"\n'
    out = subprocess.run(["bash", "-c", text], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:-1] == [NASTY[0], NASTY[1], *NASTY]


def test_script_has_lib_and_phase() -> None:
    text = remote.script("unlock", {"DEPLOY_TO": "/srv/x"})
    assert text.startswith("DEPLOY_TO=/srv/x\n") and "lock_release()" in text and 'say "nolock"' in text
    with pytest.raises(ValueError):
        remote.script("nope", {})


def test_scripts_parse() -> None:
    for phase in remote.PHASES:
        subprocess.run(["bash", "-n", "-c", remote.script(phase, {})], check=True)


@pytest.fixture
def mock_server(tmp_path: Path) -> Iterator[object]:
    mockssh = pytest.importorskip("mockssh")
    key = paramiko.RSAKey.generate(2048)
    key_path = tmp_path / "id_rsa"
    key.write_private_key_file(str(key_path))
    with mockssh.Server({"tester": str(key_path)}) as server:
        yield server


def test_run_streams_stdin_and_events(mock_server: object) -> None:
    from fabric import Connection

    server = mock_server
    c = Connection(
        server.host,
        port=server.port,
        user="tester",  # type: ignore[attr-defined]
        connect_kwargs={
            "key_filename": server._users["tester"][0],
            "look_for_keys": False,  # type: ignore[attr-defined]
            "allow_agent": False,
        },
    )
    c.open()
    try:
        seen: list[str] = []
        data = bytes(range(256)) * 1000
        # mock-ssh-server does not pass the channel's EOF on: read exactly what is sent.
        script = f'n=$(head -c {len(data)} | wc -c); echo "@@got $n"; echo oops >&2; exit 7'
        out = remote.run(c, script, stdin=data, on_event=seen.append)
        assert out.code == 7 and seen == [f"got {len(data)}"] and "oops" in out.stderr
    finally:
        c.close()


def test_command_line_holds_nothing_of_the_script() -> None:
    """`ps` on the host shows the command line: it is the same for every phase, the script comes on stdin."""
    text = remote.script("prepare", {"DEPLOY_TO": "/srv/secret-path", "HOOK_CMDS": ["echo tok-123"]})
    line = remote.command(text)
    assert line == remote.COMMAND and "secret-path" not in line and "tok-123" not in line
    # bash takes the script up to the NUL byte and leaves the rest of stdin to it.
    out = subprocess.run(
        ["bash", "-c", line.split(" ", 2)[2][1:-1]], input=b"echo got; wc -c\n\0" + b"x" * 5, capture_output=True, check=True
    ).stdout
    assert out.split() == [b"got", b"5"]


def test_pip_index_options_leave_the_command_line() -> None:
    from deploy.host import pip_variables

    args = ("--index-url", "https://u:tok@pypi.example/simple", "--no-cache-dir", "--extra-index-url=https://x/s", "-i", "https://y")
    v = pip_variables(args)
    assert v["PIP_ARGS"] == ["--no-cache-dir"]
    assert v["PIP_ENV"] == ["PIP_INDEX_URL=https://u:tok@pypi.example/simple https://y", "PIP_EXTRA_INDEX_URL=https://x/s"]


def test_events_are_read_by_kind_not_by_offset() -> None:
    events = ("venv a1", "python 3.11.2 (main)", "venv b2", "wsgi import os", "wsgi ", "lock owner=x now=2", "reload rolling 2")
    assert remote.values(events, "venv") == ["a1", "b2"]
    assert remote.value(events, "python") == "3.11.2 (main)" and remote.value(events, "nope") is None
    assert remote.text(events, "wsgi") == "import os\n\n" and remote.text(events, "vhost") is None
    assert remote.whole(events, "lock") == "lock owner=x now=2"
    assert remote.value(("reload graceful", "reload rolling 2"), "reload", last=True) == "rolling 2"


def test_marked_pids_never_drops_the_marker_of_a_live_process_while_it_is_written(tmp_path: Path) -> None:
    """A marker read while its process writes it (empty, or without its start time) stays, unlisted; one of
    a process that is gone, or of an earlier process with the same pid, goes."""
    run = tmp_path / "shared" / "run"
    run.mkdir(parents=True)
    with open("/proc/self/stat") as f:
        started = f.read().rsplit(")", 1)[1].split()[19]
    me = os.getpid()
    (run / f"ready.{me}").write_text("")  # being written
    (run / f"failed.{me}").write_text(f"release r\nstarted {started}\ngroup g\n")
    (run / f"spare.{me}").write_text(f"release r\nstarted {int(started) - 1}\ngroup g\n")  # the pid's earlier owner
    (run / "loading.4194303").write_text("release r\nstarted 1\ngroup g\n")  # gone
    script = remote._LIBRARY + "for k in ready failed spare loading; do echo $k: $(marked_pids $k); done"
    out = subprocess.run(["bash", "-c", script], env={"DEPLOY_TO": str(tmp_path), "PATH": os.environ["PATH"]},
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["ready:", f"failed: {me}", "spare:", "loading:"]
    assert sorted(p.name for p in run.iterdir()) == [f"failed.{me}", f"ready.{me}"]
