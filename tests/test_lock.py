from __future__ import annotations

import socket

from deploy import lock


def test_info_has_no_spaces_inside_values() -> None:
    line = lock.info("deploy; rm -rf /", now=100)
    fields = lock.parse("lock " + line)
    assert fields["time"] == "100" and fields["cmd"] == "deploy__rm_-rf__"
    assert set(fields) == {"owner", "host", "pid", "time", "cmd"}


def test_held_error_names_holder_age_and_fix() -> None:
    err = lock.held_error("web1", "lock owner=alice host=laptop pid=12 time=100 cmd=deploy now=400")
    msg = str(err)
    assert "alice@laptop" in msg and "5m" in msg and "fab -H web1 unlock" in msg and "stale" not in msg


def test_stale_when_local_process_is_gone() -> None:
    me = socket.gethostname()
    err = lock.held_error("web1", f"lock owner=bob host={me} pid=999999999 time=1 cmd=deploy now=2")
    assert "stale" in str(err)
