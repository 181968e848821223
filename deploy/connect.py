"""Making connections: Fabric's Connection (ssh_config, keys, gateways) plus TCP_NODELAY and clear errors."""

from __future__ import annotations

import os
import socket

import paramiko
from fabric import Config, Connection

from deploy.errors import ConnectError

CONNECT_TIMEOUT = 15


def connection(host: str, config: Config) -> Connection:
    """A Connection with a config of its own.

    Fabric 3.2's resolve_connect_kwargs appends each host's IdentityFile to the *shared* config's
    key list, so with one config the 7th host of a fleet offers six other hosts' keys first and
    sshd drops it (MaxAuthTries 6). A clone per connection, own keys first (see open_connection).
    """
    return Connection(host, config=config.clone())


def _known_hosts(c: Connection) -> None:
    """Check host keys against known_hosts: Fabric loads none (AutoAddPolicy only), so a changed host key
    would pass unnoticed. Hosts not listed are still accepted, as Fabric does."""
    files = c.ssh_config.get("userknownhostsfile", "~/.ssh/known_hosts")
    for name in files.split() if isinstance(files, str) else files:
        path = os.path.expanduser(name)
        if os.path.isfile(path):
            try:
                c.client.load_host_keys(path)
            except (OSError, paramiko.SSHException):
                pass  # an unreadable known_hosts must not stop a deploy; sshd still authenticates us


def _own_keys_first(c: Connection) -> None:
    own = c.ssh_config.get("identityfile", [])
    own = [own] if isinstance(own, str) else list(own)
    keys = c.connect_kwargs.get("key_filename") or []
    keys = [keys] if isinstance(keys, str) else list(keys)
    ordered = own + [k for k in keys if k not in own]
    if ordered:
        c.connect_kwargs["key_filename"] = list(dict.fromkeys(ordered))


def open_connection(c: Connection) -> Connection:
    """Open `c` with Nagle off: paramiko never sets TCP_NODELAY, and each phase is a small exchange."""
    if c.is_connected:
        return c
    _own_keys_first(c)
    _known_hosts(c)
    try:
        if not c.gateway and "sock" not in c.connect_kwargs:
            timeout = c.connect_timeout or CONNECT_TIMEOUT
            sock = socket.create_connection((c.host, c.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.connect_kwargs["sock"] = sock
        c.open()
    except socket.gaierror as exc:
        raise ConnectError(
            f"{c.original_host}: host name {c.host!r} not found ({exc.strerror}); check -H or the stage's hosts"
        ) from exc
    except paramiko.BadHostKeyException as exc:
        raise ConnectError(
            f"{c.original_host}: host key mismatch ({exc.key.get_name()}); if the host was rebuilt, "
            f"remove its old key with: ssh-keygen -R {c.host}"
        ) from exc
    except paramiko.AuthenticationException as exc:
        raise ConnectError(
            f"{c.original_host}: authentication failed for user {c.user!r}: {exc}; check the key (-i) or the user"
        ) from exc
    except (OSError, paramiko.SSHException) as exc:
        raise ConnectError(f"{c.original_host}: cannot connect to {c.host}:{c.port}: {exc}") from exc
    finally:
        # The socket belongs to this connection only; never hand it to a reconnect.
        c.connect_kwargs.pop("sock", None)
    return c
