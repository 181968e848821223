from __future__ import annotations

from pathlib import Path

from fabric import Config

from deploy.connect import _own_keys_first, connection


def test_each_host_offers_its_own_key_first(tmp_path: Path) -> None:
    cfg = tmp_path / "ssh_config"
    cfg.write_text("".join(f"Host web{i}\n    HostName 10.0.0.{i}\n    IdentityFile /keys/web{i}\n" for i in range(1, 9)))
    config = Config(runtime_ssh_path=str(cfg))
    config.load_ssh_config()
    conns = [connection(f"web{i}", config) for i in range(1, 9)]
    for i, c in enumerate(conns, start=1):
        _own_keys_first(c)
        keys = c.connect_kwargs["key_filename"]
        assert keys[0] == f"/keys/web{i}"
        assert len(keys) == len(set(keys)) <= 2


def test_connections_do_not_grow_the_shared_ssh_config(tmp_path: Path) -> None:
    """Fabric's Config.clone() re-reads the ssh_config into the config cloned: 50 hosts made 2,550 rules
    (bench.fleet_scale), and every later connection scanned them all."""
    cfg = tmp_path / "ssh_config"
    cfg.write_text("".join(f"Host web{i}\n    HostName 10.0.0.{i}\n" for i in range(1, 51)))
    config = Config(runtime_ssh_path=str(cfg))
    config.load_ssh_config()
    rules = len(config.base_ssh_config._config)
    conns = [connection(f"web{i}", config) for i in range(1, 51)]
    assert len(config.base_ssh_config._config) == rules
    assert conns[49].host == "10.0.0.50" and len(conns[49].config.base_ssh_config._config) == rules


def _known(tmp_path: Path, text: str) -> tuple[Config, Path]:
    known = tmp_path / "known_hosts"
    known.write_text(text)
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host web1\n    HostName 10.0.0.1\n    UserKnownHostsFile {known}\n    GlobalKnownHostsFile /dev/null\n")
    config = Config(runtime_ssh_path=str(cfg))
    config.load_ssh_config()
    return config, known


def test_known_hosts_markers_and_bad_lines_do_not_crash(tmp_path: Path) -> None:
    import paramiko

    from deploy.connect import RevokedHostKey, _known_hosts

    key = paramiko.RSAKey.generate(1024)
    kb = key.get_base64()
    text = (
        "# comment stays\n"
        f"web1,10.0.0.5 ssh-rsa {kb}\n"
        f"@cert-authority *.example.com ssh-rsa {kb}\n"
        "garbage line that is no key\n"
        f"@revoked [10.0.0.9]:2222 ssh-rsa {kb}\n"
    )
    config, known = _known(tmp_path, text)
    c = connection("web1", config)
    _known_hosts(c)
    keys = c.client.get_host_keys()
    # the revoked key is trusted nowhere, even where a plain line lists it
    assert "web1" not in keys or "ssh-rsa" not in keys["web1"]
    policy = c.client._policy
    try:
        policy.missing_host_key(c.client, "[10.0.0.9]:2222", key)
        raise AssertionError("a revoked key was accepted")
    except RevokedHostKey:
        pass
    assert known.read_text() == text  # nothing written for a refused key


def test_new_host_is_appended_never_rewritten(tmp_path: Path) -> None:
    import paramiko

    from deploy.connect import _known_hosts

    text = "# my hosts\nweb9,10.0.0.9 ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC\n"
    config, known = _known(tmp_path, text)
    c = connection("web1", config)
    _known_hosts(c)
    key = paramiko.RSAKey.generate(1024)
    for _ in range(2):  # a second connection to the same host adds nothing
        c.client._policy.missing_host_key(c.client, "10.0.0.1", key)
    assert known.read_text() == text + f"10.0.0.1 ssh-rsa {key.get_base64()}\n"


def test_only_this_hosts_known_keys_reach_paramiko(tmp_path: Path) -> None:
    """paramiko's HostKeys.add scans every entry added before: a known_hosts of K hosts cost K^2 per
    connection. The host's own entries go in, hashed ones (HashKnownHosts) too."""
    import paramiko

    from deploy.connect import _known_hosts

    kb = paramiko.RSAKey.generate(1024).get_base64()
    others = "".join(f"[10.1.{i // 250}.{i % 250}]:22{i % 10} ssh-rsa {kb}\n" for i in range(300))
    config, _ = _known(tmp_path, others + f"{paramiko.HostKeys.hash_host('10.0.0.1')} ssh-rsa {kb}\n")
    c = connection("web1", config)
    _known_hosts(c)
    keys = c.client.get_host_keys()
    assert len(keys) == 1 and keys.lookup("10.0.0.1") is not None


def test_ssh_config_lookups_ask_for_the_local_user_once(tmp_path: Path) -> None:
    """paramiko.config asked getpass.getuser() for every rule of every lookup (N^2 with a block per host)."""
    import getpass

    import paramiko

    cfg = tmp_path / "ssh_config"
    cfg.write_text("".join(f"Host web{i}\n    HostName 10.0.0.{i}\n" for i in range(1, 51)))
    config = Config(runtime_ssh_path=str(cfg))
    config.load_ssh_config()
    cached = paramiko.config.getpass.getuser  # type: ignore[attr-defined]
    before = cached.cache_info()
    for i in range(1, 51):
        connection(f"web{i}", config)
    after = cached.cache_info()
    assert after.misses - before.misses <= 1 and after.hits - before.hits >= 50 * 50
    assert cached() == getpass.getuser()


def test_the_notice_ack_wraps_only_a_transports_own_parsers() -> None:
    """paramiko >= 3.2 keeps a table of bound parsers per transport; before, one table of the class holds
    functions taking the transport too: wrapping that would change every transport and break the call."""
    import socket

    import paramiko

    from deploy.connect import _ack_notices_at_once

    GR = paramiko.common.MSG_GLOBAL_REQUEST
    acks: list[int] = []

    class Sock:
        def setsockopt(self, level: int, opt: int, value: int) -> None:
            acks.append(opt)

    class Own:
        def __init__(self) -> None:
            self.seen: list[object] = []
            self._handler_table = {GR: self.parse}

        def parse(self, m: object) -> None:
            self.seen.append(m)

    own = Own()
    _ack_notices_at_once(own, Sock())  # type: ignore[arg-type]
    own._handler_table[GR]("notice")
    assert own.seen == ["notice"] and acks == [socket.TCP_QUICKACK] * 2  # once at once, once after the notice

    class Old:
        _handler_table = {GR: lambda self, m: None}

    before = dict(Old._handler_table)
    _ack_notices_at_once(Old(), Sock())  # type: ignore[arg-type]
    assert Old._handler_table == before
