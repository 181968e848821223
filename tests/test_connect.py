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
