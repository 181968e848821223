"""Phase scripts: every value reaches the host shell-quoted; run() streams stdin over one exec request."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from deploy import remote
from deploy.errors import ConfigError, ConnectError

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
def mock_server(tmp_path: Path) -> Iterator[Any]:
    mockssh = pytest.importorskip("mockssh")
    key = paramiko.RSAKey.generate(2048)
    key_path = tmp_path / "id_rsa"
    key.write_private_key_file(str(key_path))
    with mockssh.Server({"tester": str(key_path)}) as server:
        yield server


def test_run_streams_stdin_and_events(mock_server: Any) -> None:
    from fabric import Connection

    server = mock_server
    c = Connection(
        server.host,
        port=server.port,
        user="tester",
        connect_kwargs={
            "key_filename": server._users["tester"][0],
            "look_for_keys": False,
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


class _Sent:
    """A transport that keeps the messages it is given (for send_exec)."""

    alive = True

    def __init__(self) -> None:
        self.messages: list[paramiko.Message] = []

    def _send_user_message(self, m: paramiko.Message) -> None:
        self.messages.append(m)

    def is_active(self) -> bool:
        return self.alive

    def get_exception(self) -> None:
        return None


class _Chan:
    """The parts of a paramiko Channel that send_exec and exit_code touch; sshd's answer never comes."""

    remote_chanid = 7
    eof_sent = False
    active = True

    def __init__(self, code: int = 0, refused: bool = False) -> None:
        self.transport = _Sent()
        self.event = threading.Event()
        self.event_ready = False
        self.code = code
        self.closed = False
        if refused:
            self.event.set()

    def _event_pending(self) -> None:
        self.event.clear()
        self.event_ready = False

    def get_transport(self) -> _Sent:
        return self.transport

    def recv_exit_status(self) -> int:
        return self.code

    def close(self) -> None:
        self.closed = True


def test_the_exec_request_does_not_wait_for_sshd_s_answer() -> None:
    """Issue "Speed": paramiko's exec_command waits a round trip for sshd's yes before the script can go;
    send_exec returns at once (the answer never comes here) with the request as exec_command makes it."""
    chan = _Chan()
    remote.send_exec(chan, remote.COMMAND)  # type: ignore[arg-type]
    (m,) = chan.transport.messages
    m.rewind()
    assert m.get_byte() == paramiko.common.cMSG_CHANNEL_REQUEST and m.get_int() == 7
    assert m.get_text() == "exec" and m.get_boolean() is True and m.get_text() == remote.COMMAND
    assert remote.exit_code(_Chan(code=3), "web1") == 3  # type: ignore[arg-type]
    with pytest.raises(ConnectError, match="web1: the host refused to run the command"):
        remote.exit_code(_Chan(code=-1, refused=True), "web1")  # type: ignore[arg-type]
    with pytest.raises(ConnectError, match="web1: connection lost during the command"):
        remote.exit_code(_Chan(code=-1), "web1")  # type: ignore[arg-type]
    lost = _Chan(code=-1, refused=True)  # the event is set by a transport that died before sshd answered, too
    lost.transport.alive = False
    with pytest.raises(ConnectError, match="web1: connection lost during the command"):
        remote.exit_code(lost, "web1")  # type: ignore[arg-type]
    closed = _Chan()
    closed.closed = True
    with pytest.raises(paramiko.SSHException, match="not open"):
        remote.send_exec(closed, remote.COMMAND)  # type: ignore[arg-type]


def test_command_line_holds_nothing_of_the_script() -> None:
    """`ps` on the host shows the command line: it is the same for every phase, the script comes on stdin."""
    text = remote.script("prepare", {"DEPLOY_TO": "/srv/secret-path", "HOOK_CMDS": ["echo tok-123"]})
    line = remote.command(text)
    assert line == remote.COMMAND and "secret-path" not in line and "tok-123" not in line
    # bash takes the script (its length first) and leaves the rest of stdin to it, byte for byte.
    out = subprocess.run(
        shlex.split(line), input=remote.frame("echo got; wc -c\n") + b"x" * 5, capture_output=True, check=True
    ).stdout
    assert out.split() == [b"got", b"5"]
    # A script longer than a pipe's buffer and head's blocks, and no NUL anywhere.
    long = "".join(f"v{i}=1\n" for i in range(20000)) + "echo $v19999; wc -c\n"
    out = subprocess.run(shlex.split(line), input=remote.frame(long) + b"y" * 7, capture_output=True, check=True).stdout
    assert out.split() == [b"1", b"7"]
    with pytest.raises(ConfigError, match="holds a NUL byte"):
        remote.frame("echo \0")
    # A frame cut short (the connection lost mid-script) is not run: head -c returns what came.
    cut = subprocess.run(shlex.split(line), input=remote.frame("echo ran; echo twice")[:-3], capture_output=True)
    assert cut.returncode != 0 and cut.stdout == b""
    # lib.sh's serve checks the same end line (split there, so that the library itself does not end in it).
    end = subprocess.run(["bash", "-c", remote._LIBRARY.split("\nserve() {")[0].rsplit("\n", 1)[1] + '\necho "$FRAME_END"'],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert end == remote.FRAME_END


def test_a_public_script_travels_in_its_command_line() -> None:
    """sshd opens a channel's stdin window only once the command runs: a script in the command line saves that
    round trip. Only scripts whose private variables are empty go so (ps shows command lines to every user)."""
    text = "DEPLOY_TO=/srv/app\necho got; wc -c\n"
    line = remote.inline(text)
    assert line != remote.COMMAND and "/srv/app" not in line  # compressed: not greppable either
    out = subprocess.run(["bash", "-c", line], input=b"x" * 5, capture_output=True, check=True).stdout
    assert out.split() == [b"got", b"5"]  # stdin is the command's data alone
    # With the library: the same text in every command, compressed once, and still one script.
    full = remote.inline(remote.script("begin", {"A": "1"}))
    assert len(full) < 64 * 1024 and remote.inline(remote.script("begin", {"A": "1"})) == full
    for private in ("HEALTH_HEADERS", "PIP_ENV", "PIP_ARGS", "HOOK_CMDS", "CMD"):
        assert not remote.public({"DEPLOY_TO": "/srv", private: "Authorization: Bearer tok-123"})
        assert remote.public({"DEPLOY_TO": "/srv", private: ""})
    blanked = remote.without_private({"HEALTH_HEADERS": '{"X": "tok"}', "PIP_ARGS": ["--x"], "APP": "imdb"})
    assert blanked == {"HEALTH_HEADERS": "", "PIP_ARGS": [], "APP": "imdb"} and remote.public(blanked)
    with pytest.raises(ConfigError, match="holds a NUL byte"):
        remote.inline("echo \0")
    # A host without the decoder says what it lacks and runs nothing.
    lacking = subprocess.run(["bash", "-c", line.replace("base64 -d", "no-such-base64 -d")], capture_output=True)
    assert lacking.returncode == 126 and lacking.stdout == b""
    assert remote.Outcome(126, (), lacking.stderr.decode()).error_line().endswith("needs base64 (GNU coreutils) and gzip")


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


def _ahead_layout(tmp_path: Path, env_sh: str = "") -> dict[str, str]:
    """A live release 'old' and a new one 'new' sharing a venv (its python: this one), an imports list."""
    import sys

    deploy_to = tmp_path / "app"
    venv = deploy_to / "shared" / "venvs" / "k"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (deploy_to / "shared" / "run").mkdir()
    (deploy_to / "shared" / "run" / "imports.k").write_text("json\ncsv\nno_such_module_fd\ndecimal\n")
    for rel in ("old", "new"):
        (deploy_to / "releases" / rel / ".release").mkdir(parents=True)
        (deploy_to / "releases" / rel / ".venv").symlink_to(venv)
        (deploy_to / "releases" / rel / ".release" / "env.sh").write_text("FD_GREETING=hi\n")
    (deploy_to / "current").symlink_to(deploy_to / "releases" / "old")
    if env_sh:
        (deploy_to / "releases" / "new" / ".release" / "env.sh").write_text(env_sh)
    return {"DEPLOY_TO": str(deploy_to), "PATH": os.environ["PATH"]}


def checked_release(env: dict[str, str], imported: str) -> Path:
    """The new release, whose app asserts its own path and environment, and that `imported` came ahead."""
    new = Path(env["DEPLOY_TO"]) / "releases" / "new"
    (new / "helper.py").write_text("WHO = 'helper'\n")
    (new / "app.py").write_text(
        f"import os, sys, helper\nassert os.environ['FD_GREETING'] == 'hi' and os.getcwd() == {str(new)!r}\n"
        f"assert 'no_such_module_fd' not in sys.modules and {imported!r} in sys.modules\n"
        "def application(environ, start_response):\n    return []\n"
    )
    return new


AHEAD_RUN = (
    "ID=new REL=$R/new HOME_DIR=. PY_PATH=(.) DJANGO_SETTINGS=\n"
    "import_ahead; sleep 1\n"
    "if ahead_fits; then ahead_check app application 0; echo rc=$?; else echo unfit; ahead_end; fi\n"
    "cat $REL/.release/import.log 2> /dev/null\n"
)


def test_the_import_check_started_ahead_checks_the_release_as_a_fresh_process_would(tmp_path: Path) -> None:
    """Started at the begin in the live venv, it imports the listed modules up to the first that fails, then
    imports the new release with that release's path and environment (the release's app reads both)."""
    env = _ahead_layout(tmp_path)
    new = checked_release(env, "json")
    out = subprocess.run(["bash", "-c", remote._LIBRARY + AHEAD_RUN], env=env, capture_output=True, text=True)
    lines = out.stdout.splitlines()
    assert lines[0] == "rc=0", (out.stdout, out.stderr)
    assert re.fullmatch(r"ahead: [1-9]\d* modules imported ahead \(\d\.\d\ds before the release\); .*", lines[1])
    assert lines[1].endswith(
        "; stopped at no_such_module_fd (ModuleNotFoundError)"
    ), lines
    assert not (new / ".release" / "import.req").exists()


def test_a_release_that_fails_the_check_started_ahead_fails_with_its_traceback(tmp_path: Path) -> None:
    env = _ahead_layout(tmp_path)
    new = Path(env["DEPLOY_TO"]) / "releases" / "new"
    (new / "app.py").write_text("import no_such_module_of_the_app\n")
    out = subprocess.run(["bash", "-c", remote._LIBRARY + AHEAD_RUN], env=env, capture_output=True, text=True)
    assert out.stdout.splitlines()[0] == "rc=1", out.stdout
    assert "No module named 'no_such_module_of_the_app'" in out.stdout
    assert "error: importing the app failed: app:application" in out.stdout


def test_the_check_started_ahead_takes_no_release_with_another_environment(tmp_path: Path) -> None:
    env = _ahead_layout(tmp_path, env_sh="FD_GREETING=bye\n")
    out = subprocess.run(["bash", "-c", remote._LIBRARY + AHEAD_RUN], env=env, capture_output=True, text=True)
    assert out.stdout.splitlines() == ["unfit"], out.stdout


WARM_RUN = (
    "ID=old REL=$R/old IMPORT_WARM=1 HOME_DIR=. PY_PATH=(.) DJANGO_SETTINGS=\n"
    "warm_start\n"
    "for _ in {1..200}; do [ -e $WARM/ready ] && break; sleep 0.05; done\n"
    "ID=new REL=$R/new\n"
    "for _ in 1 2; do\n"
    "  if warm_fits; then warm_check app application 0; echo rc=$?; else echo unfit; fi\n"
    "  head -n 1 $REL/.release/import.log 2> /dev/null\n"
    "done\n"
    "read -r pid < $WARM/pid; warm_stop\n"
    "for _ in {1..100}; do kill -0 $pid 2> /dev/null || break; sleep 0.05; done\n"
    "kill -0 $pid 2> /dev/null && echo left || echo stopped\n"
)


def test_the_check_kept_warm_checks_each_release_as_a_fresh_process_would(tmp_path: Path) -> None:
    """Started after a switch in the live venv, it imports the listed modules once; each request forks a
    check of that release with its path and environment, and warm_stop ends it."""
    env = _ahead_layout(tmp_path)
    checked_release(env, "csv")
    out = subprocess.run(["bash", "-c", remote._LIBRARY + WARM_RUN], env=env, capture_output=True, text=True, timeout=60)
    lines = out.stdout.splitlines()
    assert lines[0] == lines[2] == "rc=0" and lines[4] == "stopped", (out.stdout, out.stderr)
    note = r"warm: [1-9]\d* modules imported warm \(since \d\d:\d\d:\d\dZ\); stopped at no_such_module_fd \(ModuleNotFoundError\)"
    assert re.fullmatch(note, lines[1]) and lines[3] == lines[1], lines
    assert not (Path(env["DEPLOY_TO"]) / "shared" / "run" / "warm").exists()


def test_a_release_that_fails_the_check_kept_warm_fails_with_its_traceback(tmp_path: Path) -> None:
    env = _ahead_layout(tmp_path)
    (Path(env["DEPLOY_TO"]) / "releases" / "new" / "app.py").write_text("import no_such_module_of_the_app\n")
    out = subprocess.run(["bash", "-c", remote._LIBRARY + WARM_RUN + "cat $R/new/.release/import.log"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines()[0] == "rc=1", out.stdout
    assert "No module named 'no_such_module_of_the_app'" in out.stdout
    assert "error: importing the app failed: app:application" in out.stdout


def test_the_check_kept_warm_takes_no_release_with_another_environment(tmp_path: Path) -> None:
    env = _ahead_layout(tmp_path, env_sh="FD_GREETING=bye\n")
    out = subprocess.run(["bash", "-c", remote._LIBRARY + WARM_RUN], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["unfit", "unfit", "stopped"], out.stdout


def test_a_check_kept_warm_that_dies_says_125_at_once(tmp_path: Path) -> None:
    """125: the prepare checks the release again with a fresh process, whose words count."""
    env = _ahead_layout(tmp_path)
    (Path(env["DEPLOY_TO"]) / "releases" / "new" / "app.py").write_text("import os, signal\nos.kill(os.getpid(), 9)\n")
    out = subprocess.run(["bash", "-c", remote._LIBRARY + WARM_RUN], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines()[0] == "rc=125", (out.stdout, out.stderr)


def test_the_check_started_ahead_ends_with_its_input_though_children_of_the_script_live_on(tmp_path: Path) -> None:
    """No child of the script holds the check's input open (a hook's daemon, a sleep): closing it ends the check."""
    env = _ahead_layout(tmp_path)
    script = remote._LIBRARY + (
        "import_ahead\nsleep 5 & s=$!\n/bin/sleep 5 & t=$!\n( sleep 5 ) & u=$!\n"
        "ahead_end; t0=${EPOCHREALTIME/[.,]/}; wait $AHEAD_CHILD\n"
        "echo rc=$? waited=$(( (${EPOCHREALTIME/[.,]/} - t0) / 500000 ))\n"
        "kill $s $t $u\n"
    )
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=20)
    # waited = whole half-seconds (EPOCHSECONDS counted a second boundary crossed in a 1 ms wait as 1)
    assert out.stdout.split() == ["rc=0", "waited=0"], (out.stdout, out.stderr)


def test_facts_of_a_live_release_without_a_fingerprint(tmp_path: Path) -> None:
    """A release made before fingerprints existed (or one rolled back to) has no .release/fingerprint: the
    begin still says its facts (it read an unset variable under `set -u` and died after taking the lock)."""
    rel = tmp_path / "releases" / "r1" / ".release"
    rel.mkdir(parents=True)
    (rel / "state").write_text("finished\n")
    (rel / "manifest").write_text("abc  app.py\n")
    (tmp_path / "current").symlink_to("releases/r1")
    head = remote._header("begin", {"DEPLOY_TO": str(tmp_path), "PYTHON": sys.executable, "INSTALLER": "pip"})
    out = subprocess.run(["bash", "-c", head + remote._LIBRARY + "\nsay_facts; echo rc=$?\n"], capture_output=True, text=True)
    assert "rc=0" in out.stdout, out.stderr
    assert "@@m abc  app.py" in out.stdout and "@@fingerprint" not in out.stdout
    (rel / "fingerprint").write_text("f" * 64)  # no final newline, as the tool writes it
    out = subprocess.run(["bash", "-c", head + remote._LIBRARY + "\nsay_facts\n"], capture_output=True, text=True)
    assert f"@@fingerprint {'f' * 64}" in out.stdout, out.stderr


def test_a_prepare_sent_ahead_runs_only_while_the_guess_holds(tmp_path: Path) -> None:
    """ahead.sh, after the begin's facts: the guess holds (the live release, its fingerprint, the Python, the
    venv, an id later than every release) and the host says 'used'; else it reads exactly the bytes sent ahead
    and the next frame (the prepare made from the facts) is the next thing serve runs."""
    rid = "20260101T000000Z-abc"
    rel = tmp_path / "releases" / rid / ".release"
    rel.mkdir(parents=True)
    (rel / "state").write_text("finished\n")
    (rel / "manifest").write_text("abc  app.py\n")
    (rel / "fingerprint").write_text("f" * 64)
    (tmp_path / "current").symlink_to(f"releases/{rid}")
    (tmp_path / "shared" / "venvs" / "k1").mkdir(parents=True)
    (tmp_path / "shared" / "venvs" / "k1" / ".complete").touch()
    head = remote._header("begin", {"DEPLOY_TO": str(tmp_path), "PYTHON": sys.executable, "INSTALLER": "pip"})
    facts = subprocess.run(["bash", "-c", head + remote._LIBRARY + "\nsay_facts\n"], capture_output=True, text=True)
    python = next(e[len("@@python ") :] for e in facts.stdout.splitlines() if e.startswith("@@python "))

    def serve(**guess: remote.Value) -> list[str]:
        ahead = {"GUESS_CURRENT": rid, "GUESS_FINGERPRINT": "f" * 64, "GUESS_PYTHON": python, "GUESS_VENV": "k1",
                 "GUESS_ID": "20260101T000001Z-def", **guess}
        rest = remote.frame('say "prepare sent ahead"') + b"ARCHIVE" * 1000
        ahead["GUESS_BYTES"] = len(rest)
        stdin = remote.frame(remote.follow_up("ahead", ahead)) + rest + remote.frame('say "made from the facts"')
        out = subprocess.run(["bash", "-c", head + remote._LIBRARY + "\nsay_facts > /dev/null; serve\n"], input=stdin,
                             capture_output=True, timeout=20)
        return [e.decode() for e in out.stdout.splitlines() if not e.startswith(b"@@ready")]

    assert serve()[:2] == ["@@ahead used (the host is as the last deploy from this machine left it)", "@@prepare sent ahead"]
    for stale in ({"GUESS_CURRENT": "20250101T000000Z-old"}, {"GUESS_FINGERPRINT": "e" * 64}, {"GUESS_PYTHON": "2.7"},
                  {"GUESS_VENV": "k2"}, {"GUESS_ID": rid}, {"GUESS_CURRENT": ""}):
        events = serve(**stale)
        assert events[0].startswith("@@ahead dropped") and events[1:] == ["@@made from the facts"], (stale, events)
    # A folder that is no release (releases.valid_id) is no later release either.
    (tmp_path / "releases" / "old").mkdir()
    assert serve()[0].startswith("@@ahead used")
