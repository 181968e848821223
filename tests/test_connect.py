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
    policy = c.client._policy  # type: ignore[attr-defined]
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
        c.client._policy.missing_host_key(c.client, "10.0.0.1", key)  # type: ignore[attr-defined]
    assert known.read_text() == text + f"10.0.0.1 ssh-rsa {key.get_base64()}\n"
