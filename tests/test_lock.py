from __future__ import annotations

import socket

from deploy import lock


def test_info_has_no_spaces_inside_values() -> None:
    line = lock.info("deploy; rm -rf /", now=100)
    fields = lock.parse("lock " + line)
    assert fields["time"] == "100" and fields["cmd"] == "deploy__rm_-rf__"
    assert set(fields) == {"owner", "host", "pid", "time", "cmd", "token"}


def test_every_run_has_its_own_token() -> None:
    assert lock.parse("lock " + lock.info("deploy"))["token"] != lock.parse("lock " + lock.info("deploy"))["token"]


def test_held_error_names_holder_age_and_fix() -> None:
    err = lock.held_error("web1", "lock owner=alice host=laptop pid=12 time=100 cmd=deploy now=400 running=0")
    msg = str(err)
    assert "alice@laptop" in msg and "5m" in msg and "fab -H web1 unlock" in msg and err.host == "web1"


def test_stale_only_when_nothing_runs_on_the_host() -> None:
    me = socket.gethostname()
    # The local fab process is gone, but its remote step (pip, a hook) still runs: not stale.
    err = str(lock.held_error("web1", f"lock owner=bob host={me} pid=999999999 time=1 cmd=deploy now=2 running=1"))
    assert "stale" not in err and "still running" in err and "unlock --force" in err and "fab process is gone" in err
    err = str(lock.held_error("web1", f"lock owner=bob host={me} pid=999999999 time=1 cmd=deploy now=2 running=0"))
    assert "stale" in err and "--force" not in err
