"""fleet's decisions (all-or-none, batches, compensating rollbacks, what each host is left on), with fake
host operations passed in: no server, no root."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deploy import fleet, host, releases, source
from deploy.config import Settings, load
from deploy.errors import ConnectError, FleetError, HealthCheckFailed, RemoteError
from deploy.output import Reporter

OLD = "20260101T000000Z-old"


CLOSED: list[str] = []


@dataclass(frozen=True)
class Conn:
    original_host: str

    def close(self) -> None:
        CLOSED.append(self.original_host)


@dataclass
class FakeOps:
    """Host operations that succeed, except where `fail[(operation, host)]` names an error to raise."""

    fail: dict[tuple[str, str], BaseException] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    live: dict[str, str] = field(default_factory=dict)
    aheads: list[Any] = field(default_factory=list)  # what each begin got to send its prepare with
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _do(self, op: str, c: Conn, *args: Any) -> None:
        with self._lock:
            self.calls.append((op, c.original_host, *args))
        exc = self.fail.get((op, c.original_host))
        if exc is not None:
            raise exc

    def ops(self, op: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == op]

    def connect(self, c: Conn, wanted: Callable[[], bool] | None = None) -> None:
        self._do("connect", c)
        if wanted is not None and not wanted():
            raise ConnectError(f"{c.original_host}: connect called off", c.original_host)

    def begin(
        self, c: Conn, s: Settings, lock_info: str, rep: Reporter, keep_maintenance: bool = False, ahead: Any = None
    ) -> host.Facts:
        self._do("begin", c)
        self.aheads.append(ahead)
        cur = self.live.setdefault(c.original_host, OLD)
        listing = releases.Listing((releases.Release(cur, "finished", "r0"),), cur)
        return host.Facts(listing, "", "3.11.2", frozenset())

    def prepare(self, c: Conn, s: Settings, src: source.Source, release_id: str, *rest: Any) -> host.PrepareArgs:
        self._do("prepare", c, tuple(h.name for h in s.hooks))
        return host.PrepareArgs(release_id, src.revision, ())

    def switch(self, c: Conn, s: Settings, args: host.PrepareArgs, *rest: Any) -> host.Reloaded:
        self._do("switch", c)
        self.live[c.original_host] = args.release_id
        return host.Reloaded("rolling 2 processes", "ok")

    def abort(self, c: Conn, s: Settings, lock_info: str, release_id: str | None, remove: bool) -> None:
        self._do("abort", c, remove)

    def rollback(self, c: Conn, s: Settings, to: str | None, lock: str, rep: Reporter, undo: bool = False) -> host.RolledBack:
        self._do("rollback", c, to, undo)
        prev = self.live.get(c.original_host, "new")
        target = to or OLD
        self.live[c.original_host] = target
        return host.RolledBack(prev, target, host.Reloaded("rolling 2 processes", "ok"))

    def reload(self, c: Conn, s: Settings, lock_info: str, rep: Reporter) -> host.Reloaded:
        self._do("reload", c)
        return host.Reloaded("rolling 2 processes", "ok")


@pytest.fixture
def s() -> Settings:
    return load(
        {
            "app": "imdb",
            "deploy_to": "/srv/imdb",
            "server_name": "imdb.example.com",
            "wsgi": "imdb.wsgi:application",
            "hooks": [{"name": "migrate", "run": "true", "once": True}, {"name": "collect", "run": "true"}],
        }
    )


@pytest.fixture
def src(tmp_path: Path) -> source.Source:
    (tmp_path / "app.py").write_text("application = None\n")
    return source.from_tree(tmp_path, ())


HOSTS = [Conn("web1"), Conn("web2"), Conn("web3")]


def deploy(s: Settings, src: source.Source, ops: FakeOps, **kw: Any) -> list[fleet.HostRun]:
    return fleet.deploy(HOSTS, s, Path("."), src=src, ops=ops, **kw)  # type: ignore[arg-type]


def test_every_host_prepares_before_any_switches_once_hooks_on_the_first_only(s: Settings, src: source.Source) -> None:
    ops = FakeOps()
    runs = deploy(s, src, ops)
    assert [r.result for r in runs] == ["live"] * 3 and len({r.release_id for r in runs}) == 1
    order = [c[0] for c in ops.calls if c[0] in ("prepare", "switch")]
    assert order == ["prepare"] * 3 + ["switch"] * 3
    hooks = {c[1]: c[2] for c in ops.ops("prepare")}
    assert hooks == {"web1": ("migrate", "collect"), "web2": ("collect",), "web3": ("collect",)}
    assert runs[0].reload == "rolling 2 processes" and runs[0].health == "ok"  # results as data


def test_a_failed_prepare_switches_no_host(s: Settings, src: source.Source) -> None:
    ops = FakeOps(fail={("prepare", "web3"): RemoteError("web3", "pip install", "no such package")})
    with pytest.raises(FleetError, match="no host was switched") as err:
        deploy(s, src, ops)
    assert ops.ops("switch") == []
    # The healthy hosts' releases are removed; the failed one is kept for a look.
    assert sorted(ops.ops("abort")) == [("abort", "web1", True), ("abort", "web2", True), ("abort", "web3", False)]
    assert {h["host"]: h["result"] for h in err.value.hosts} == {"web1": "not switched", "web2": "not switched", "web3": "failed"}


def test_a_failed_switch_rolls_the_switched_hosts_back(s: Settings, src: source.Source) -> None:
    ops = FakeOps(fail={("switch", "web2"): HealthCheckFailed("web2: health check failed", "web2")})
    with pytest.raises(FleetError, match="the fleet is on its previous release") as err:
        deploy(s, src, ops)
    back = {c[1]: c[2] for c in ops.ops("rollback")}
    assert back == {"web1": OLD, "web3": OLD}
    assert err.value.exit_code == 7
    assert ops.live == {"web1": OLD, "web2": OLD, "web3": OLD}


def test_a_failed_compensating_rollback_is_reported_per_host(s: Settings, src: source.Source) -> None:
    ops = FakeOps(
        fail={
            ("switch", "web2"): HealthCheckFailed("web2: health check failed", "web2"),
            ("rollback", "web3"): RemoteError("web3", "reload", "reloading Apache failed"),
        }
    )
    with pytest.raises(FleetError) as err:
        deploy(s, src, ops)
    msg = str(err.value)
    assert "rolling back failed on web3: still on" in msg and "previous release" not in msg
    results = {h["host"]: h["result"] for h in err.value.hosts}
    assert results["web3"].startswith("rolling back failed, still on") and results["web1"] == f"rolled back to {OLD}"


def test_batches_keep_earlier_batches_and_abort_later_ones(s: Settings, src: source.Source) -> None:
    ops = FakeOps(fail={("switch", "web2"): HealthCheckFailed("web2: health check failed", "web2")})
    with pytest.raises(FleetError, match="batch 2 of 3 failed; web1 stay on") as err:
        deploy(s, src, ops, batch=1)
    assert [c[1] for c in ops.ops("switch")] == ["web1", "web2"]
    assert ops.ops("rollback") == [] and ("abort", "web3", True) in ops.calls
    assert {h["host"]: h["result"] for h in err.value.hosts}["web3"] == "not switched"


def test_one_host_gets_its_own_error(s: Settings, src: source.Source) -> None:
    ops = FakeOps(fail={("prepare", "web1"): RemoteError("web1", "hook", "migrate failed")})
    with pytest.raises(RemoteError, match="migrate failed"):
        fleet.deploy([HOSTS[0]], s, Path("."), src=src, ops=ops)  # type: ignore[arg-type]


def test_rollback_is_all_or_none(s: Settings) -> None:
    ops = FakeOps(live={"web1": "v2", "web2": "v2", "web3": "v2"})
    ops.fail[("rollback", "web2")] = RemoteError("web2", "reload", "reloading Apache failed")
    with pytest.raises(FleetError, match="every host is on the release it had") as err:
        fleet.rollback(HOSTS, s, None, ops=ops)  # type: ignore[arg-type]
    undone = sorted((c[1], c[2], c[3]) for c in ops.ops("rollback") if c[3])
    assert undone == [("web1", "v2", True), ("web3", "v2", True)]
    assert ops.live == {"web1": "v2", "web2": "v2", "web3": "v2"}
    assert {h["host"]: h["result"] for h in err.value.hosts}["web1"] == "put back on v2"


def test_rollback_in_batches_keeps_earlier_batches(s: Settings) -> None:
    ops = FakeOps(live={"web1": "v2", "web2": "v2", "web3": "v2"})
    ops.fail[("rollback", "web2")] = RemoteError("web2", "reload", "reloading Apache failed")
    with pytest.raises(FleetError, match="web1 stay rolled back"):
        fleet.rollback(HOSTS, s, None, batch=1, ops=ops)  # type: ignore[arg-type]
    assert [c[1] for c in ops.ops("rollback")] == ["web1", "web2"]  # web3 never touched


def test_rollback_in_parallel_reports_each_host(s: Settings) -> None:
    ops = FakeOps(live={"web1": "v2", "web2": "v2", "web3": "v2"})
    runs = fleet.rollback(HOSTS, s, None, ops=ops)  # type: ignore[arg-type]
    assert [(r.name, r.previous, r.release_id, r.result) for r in runs] == [(h.original_host, "v2", OLD, "live") for h in HOSTS]


def test_reload_stops_after_a_failed_batch(s: Settings) -> None:
    ops = FakeOps(fail={("reload", "web1"): HealthCheckFailed("web1: health check failed", "web1")})
    with pytest.raises(FleetError, match="reload failed on batch 1 of 2") as err:
        fleet.reload(HOSTS, s, batch=2, ops=ops)  # type: ignore[arg-type]
    assert sorted(c[1] for c in ops.ops("reload")) == ["web1", "web2"]
    assert {h["host"]: h["result"] for h in err.value.hosts}["web3"] == "not reloaded"


def test_connections_opened_ahead_are_the_begins_own_and_a_failed_one_fails_its_host(s: Settings, src: source.Source) -> None:
    """fleet.Connecting opens the first hosts' connections while the client still reads the source: each
    host connects once, and a connect that failed there is that host's error in the begin (no host switched)."""
    ops = FakeOps()
    connecting = fleet.Connecting(HOSTS[:2], 10, ops)  # type: ignore[arg-type]
    runs = deploy(s, src, ops, connecting=connecting)
    assert [r.result for r in runs] == ["live"] * 3
    assert sorted(c[1] for c in ops.ops("connect")) == ["web1", "web2", "web3"]
    ops = FakeOps(fail={("connect", "web2"): RemoteError("web2", "connect", "connection refused")})
    connecting = fleet.Connecting(HOSTS, 1, ops)  # type: ignore[arg-type]
    with pytest.raises(FleetError) as err:
        deploy(s, src, ops, connecting=connecting)
    assert "connection refused" in str(err.value) and ops.ops("switch") == []
    assert sorted(c[1] for c in ops.ops("connect")) == ["web1", "web2", "web3"]


def test_connections_opened_ahead_that_no_begin_took_are_closed_and_no_handshake_outlives_close() -> None:
    """A bad input stops the deploy while connects run: close() waits for a handshake under way (one cut by
    the interpreter's exit aborted the process: SIGABRT after the one-line error) and closes it, calls off
    a connect still waiting for TCP without waiting for it, and leaves the one a begin took alone."""
    tcp = threading.Event()

    class SlowOps(FakeOps):
        def connect(self, c: Conn, wanted: Callable[[], bool] | None = None) -> None:
            if c.original_host == "web2":
                assert tcp.wait(10)  # a host slow to answer TCP
            if wanted is not None and not wanted():
                raise ConnectError(f"{c.original_host}: connect called off", c.original_host)
            if c.original_host == "web3":
                time.sleep(0.3)  # a handshake under way

    CLOSED.clear()
    connecting = fleet.Connecting(HOSTS, 10, SlowOps())  # type: ignore[arg-type]
    threads = dict(connecting.threads)
    connecting.connect(HOSTS[0])  # a begin took web1
    time.sleep(0.05)
    connecting.close()
    assert not threads[HOSTS[2]].is_alive() and CLOSED == ["web3"]
    assert threads[HOSTS[1]].is_alive()  # not waited for
    tcp.set()
    threads[HOSTS[1]].join(10)
    assert CLOSED == ["web3"] and "called off" in str(connecting.errors[HOSTS[1]])


def test_only_a_deploy_to_one_host_sends_its_prepare_with_the_begin(s: Settings, src: source.Source) -> None:
    """A fleet's release id and all-or-none switch wait for every host's facts; one host has nothing to wait
    for: its begin gets what it needs to send the prepare ahead (deploy.release.Ahead)."""
    ops = FakeOps()
    deploy(s, src, ops)
    assert ops.aheads == [None] * 3
    ops = FakeOps()
    (run,) = fleet.deploy([HOSTS[0]], s, Path("."), src=src, ops=ops, force=True)  # type: ignore[arg-type]
    (ahead,) = ops.aheads
    assert ahead.then_switch and ahead.force and ahead.release_id == run.release_id and ahead.src is src
