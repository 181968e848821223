"""Making connections: Fabric's Connection (ssh_config, keys, gateways) plus TCP_NODELAY and clear errors."""

from __future__ import annotations

import fcntl
import functools
import getpass
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import paramiko
from fabric import Config, Connection

from deploy.errors import ConnectError

CONNECT_TIMEOUT = 15


class _LocalUser:
    """getpass for paramiko.config, which asks getpass.getuser() (environment lookups and a passwd read) for
    every rule of every ssh_config lookup: 2 lookups per host, so a block per host made it N^2 (5 of the 7.6 s
    that 300 connections took). The answer does not change within a run: asked once."""

    getuser = staticmethod(functools.cache(getpass.getuser))


setattr(paramiko.config, "getpass", _LocalUser)  # noqa: B010 - a module attribute mypy does not see


def connection(host: str, config: Config) -> Connection:
    """A Connection with a config of its own.

    Fabric 3.2's resolve_connect_kwargs appends each host's IdentityFile to the *shared* config's
    key list, so with one config the 7th host of a fleet offers six other hosts' keys first and
    sshd drops it (MaxAuthTries 6). A clone per connection, own keys first (see open_connection).

    Fabric 3.2's Config.clone() also re-reads the ssh_config files into the config being cloned (each host
    added every rule again: N^3 with a block per host, bench.fleet_scale) and deep-copies the rules into the
    clone (N^2). Only lookups read them: the clone shares the parsed rules, and nothing is re-read.
    """
    shared = config.base_ssh_config
    rules, explicit = shared._config, config._given_explicit_object
    shared._config = []  # nothing to deep-copy
    config._set(_given_explicit_object=True)  # nothing to re-read
    try:
        clone = config.clone()
    finally:
        shared._config = rules
        config._set(_given_explicit_object=explicit)
    clone.base_ssh_config._config = rules
    return Connection(host, config=clone)


class RevokedHostKey(paramiko.SSHException):
    """The host's key is marked @revoked in a known_hosts file."""


class UnknownHost(paramiko.SSHException):
    """The host is in no known_hosts file and ssh_config says StrictHostKeyChecking yes."""


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """OpenSSH's `StrictHostKeyChecking accept-new`: a host in no known_hosts file is trusted on first use
    and its key APPENDED to the user's file (under a file lock: a fleet connects in parallel); the file
    is never rewritten. A known host with another key fails in paramiko itself (BadHostKeyException)."""

    def __init__(self, append_to: str | None, revoked: set[tuple[str, str]], strict: bool) -> None:
        self.append_to = append_to
        self.revoked = revoked
        self.strict = strict

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if (key.get_name(), key.get_base64()) in self.revoked:
            raise RevokedHostKey(f"the host key of {hostname} ({key.get_name()}) is marked @revoked in known_hosts")
        if self.strict:
            raise UnknownHost(f"{hostname} is not in known_hosts and StrictHostKeyChecking is yes")
        if not self.append_to or self.append_to == os.devnull:
            return
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        path = Path(self.append_to)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            text = f.read()
            if line not in text.splitlines(keepends=True):
                f.write(("" if not text or text.endswith("\n") else "\n") + line)


def _files(value: object, default: str) -> list[str]:
    text = value if isinstance(value, str) else " ".join(value) if isinstance(value, list) else default
    return [os.path.expanduser(p) for p in text.split()]


Known = tuple[tuple[paramiko.hostkeys.HostKeyEntry, ...], frozenset[tuple[str, str]]]
_known_files: dict[tuple[str, int, int], Known] = {}
_known_lock = threading.Lock()


def _read_known(path: str) -> Known:
    """The plain entries and the @revoked keys of one known_hosts file, parsed once per process while the
    file stays the same (a fleet's connections read the same file: it was parsed once per host)."""
    try:
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_size)
        with _known_lock:
            if key in _known_files:
                return _known_files[key]
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return (), frozenset()  # missing or unreadable: sshd still authenticates us
    revoked: set[tuple[str, str]] = set()
    trusted: list[paramiko.hostkeys.HostKeyEntry] = []
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        marker = line.split(None, 1)[0] if line.startswith("@") else ""
        if marker:
            line = line[len(marker) :].strip()
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, n)
        except Exception:  # a line paramiko cannot read (key type, base64): OpenSSH skips it too
            continue
        if entry is None or entry.key is None:
            continue
        if marker == "@revoked":
            revoked.add((entry.key.get_name(), entry.key.get_base64()))
        elif not marker:
            trusted.append(entry)
    found: Known = (tuple(trusted), frozenset(revoked))
    with _known_lock:
        _known_files[key] = found
    return found


def _known_hosts(c: Connection) -> None:
    """Check host keys against known_hosts as OpenSSH does: Fabric loads none (AutoAddPolicy only), so a
    changed host key would pass unnoticed. Markers are honoured (@revoked keys refused; @cert-authority
    lines skipped: paramiko checks no certificates), unreadable lines skipped, and a new host appended.
    Only this host's entries are handed to paramiko (its HostKeys.add scans every entry added before)."""
    keys = c.client.get_host_keys()
    revoked: set[tuple[str, str]] = set()
    trusted: list[paramiko.hostkeys.HostKeyEntry] = []
    user_files = _files(c.ssh_config.get("userknownhostsfile"), "~/.ssh/known_hosts")
    global_files = _files(c.ssh_config.get("globalknownhostsfile"), "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2")
    for path in user_files + global_files:
        entries, bad = _read_known(path)
        trusted.extend(entries)
        revoked |= bad
    wanted = {c.host, f"[{c.host}]:{c.port}"}

    def ours(name: str) -> bool:
        if name in wanted:
            return True
        return name.startswith("|1|") and any(paramiko.HostKeys.hash_host(w, name) == name for w in wanted)

    for entry in trusted:  # a revoked key is never trusted, even where a plain line lists it
        if (entry.key.get_name(), entry.key.get_base64()) not in revoked:
            for name in entry.hostnames:
                if ours(name):
                    keys.add(name, entry.key.get_name(), entry.key)
    strict = str(c.ssh_config.get("stricthostkeychecking", "accept-new")).lower() == "yes"
    c.client.set_missing_host_key_policy(_AcceptNew(user_files[0] if user_files else None, revoked, strict))


def _own_keys_first(c: Connection) -> None:
    own = c.ssh_config.get("identityfile", [])
    own = [own] if isinstance(own, str) else list(own)
    keys = c.connect_kwargs.get("key_filename") or []
    keys = [keys] if isinstance(keys, str) else list(keys)
    ordered = own + [k for k in keys if k not in own]
    if ordered:
        c.connect_kwargs["key_filename"] = list(dict.fromkeys(ordered))


def _ack_notices_at_once(transport: paramiko.Transport, tcp: socket.socket) -> None:
    """ACK the host's post-login notice (OpenSSH's hostkeys-00@openssh.com) at once, not 40 ms later.

    sshd sends the notice right after the login, before the first channel's exec has turned Nagle off on its
    socket; its answer to our channel open is then held until the notice is ACKed, and this end, with nothing
    to send, delays that ACK (Linux: 40 ms at least). Measured on loopback: the first channel open took 42-49
    ms, 3-4 ms with this. TCP_QUICKACK sends a pending ACK when set; elsewhere (no such option) nothing changes.
    """
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is None:
        return
    try:  # the notice may have come already, while the login ended: its ACK goes now
        tcp.setsockopt(socket.IPPROTO_TCP, quickack, 1)
    except OSError:
        return
    # paramiko >= 3.2: a table of this transport's own bound parsers (before, one table of the class, whose
    # functions take the transport too: left alone).
    table = vars(transport).get("_handler_table")
    if not isinstance(table, dict):
        return
    parse = table.get(paramiko.common.MSG_GLOBAL_REQUEST)
    if parse is None or getattr(parse, "__self__", None) is not transport:
        return

    def parse_then_ack(m: paramiko.Message) -> None:
        parse(m)
        try:
            tcp.setsockopt(socket.IPPROTO_TCP, quickack, 1)
        except OSError:
            pass  # the connection is going away; paramiko sees that itself

    table[paramiko.common.MSG_GLOBAL_REQUEST] = parse_then_ack


def open_connection(c: Connection, wanted: Callable[[], bool] | None = None) -> Connection:
    """Open `c` with Nagle off (paramiko never sets TCP_NODELAY, and each phase is a small exchange) and the
    host's post-login notice ACKed at once (see _ack_notices_at_once).

    `wanted`: asked once the TCP connection is up, before the SSH handshake; False calls the open off
    (ConnectError), so that nothing starts a handshake for a deploy that has already stopped."""
    if c.is_connected:
        return c
    _own_keys_first(c)
    _known_hosts(c)
    gw = c.gateway
    while isinstance(gw, Connection):  # ProxyJump hops: their host keys are checked the same way
        _own_keys_first(gw)
        _known_hosts(gw)
        gw = gw.gateway
    tcp: socket.socket | None = None
    try:
        if not c.gateway and "sock" not in c.connect_kwargs:
            timeout = c.connect_timeout or CONNECT_TIMEOUT
            tcp = socket.create_connection((c.host, c.port), timeout=timeout)
            tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.connect_kwargs["sock"] = tcp
        if wanted is not None and not wanted():
            if tcp is not None:
                tcp.close()
            raise ConnectError(f"{c.original_host}: connect called off", str(c.original_host))
        c.open()
        if tcp is not None and c.transport is not None:
            _ack_notices_at_once(c.transport, tcp)
    except socket.gaierror as exc:
        raise ConnectError(
            f"{c.original_host}: host name {c.host!r} not found ({exc.strerror}); check -H or the stage's hosts",
            str(c.original_host),
        ) from exc
    except paramiko.BadHostKeyException as exc:
        own = {c.host, f"[{c.host}]:{c.port}"}
        which = exc.hostname if exc.hostname in own else f"its gateway {exc.hostname}"
        raise ConnectError(
            f"{c.original_host}: host key mismatch ({exc.key.get_name()}) for {which}; if that host was rebuilt, "
            f"remove its old key with: ssh-keygen -R {exc.hostname}",
            str(c.original_host),
        ) from exc
    except (RevokedHostKey, UnknownHost) as exc:
        raise ConnectError(f"{c.original_host}: {exc}", str(c.original_host)) from exc
    except paramiko.AuthenticationException as exc:
        raise ConnectError(
            f"{c.original_host}: authentication failed for user {c.user!r}: {exc}; check the key (-i) or the user",
            str(c.original_host),
        ) from exc
    except (OSError, paramiko.SSHException) as exc:
        raise ConnectError(f"{c.original_host}: cannot connect to {c.host}:{c.port}: {exc}", str(c.original_host)) from exc
    finally:
        # The socket belongs to this connection only; never hand it to a reconnect.
        c.connect_kwargs.pop("sock", None)
    return c
