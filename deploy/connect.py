"""Making connections: Fabric's Connection (ssh_config, keys, gateways) plus TCP_NODELAY and clear errors."""

from __future__ import annotations

import socket

import paramiko
from fabric import Config, Connection

from deploy.errors import ConnectError

CONNECT_TIMEOUT = 15


def connection(host: str, config: Config) -> Connection:
    return Connection(host, config=config)


def open_connection(c: Connection) -> Connection:
    """Open `c` with Nagle off: paramiko never sets TCP_NODELAY, and each phase is a small exchange."""
    if c.is_connected:
        return c
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
