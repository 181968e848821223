"""The contract with the host: the phase scripts, their exit codes and steps, and running one phase as ONE SSH command.

Files here: lib.sh (shared functions), slots.sh (blue/green daemon slots), venv.sh (the venv build),
health.py (the health check), and one
`<phase>.sh` per phase. Variables go in quoted at the top of a script (`script`); events come back as
'@@kind ...' lines on stdout; exit codes are the EXIT_* and STEP_OF_CODE below.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import shlex
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
from fabric import Connection

from deploy.errors import ConfigError, ConnectError

HERE = Path(__file__).parent
PHASES = (
    "begin", "prepare", "switch", "abort", "rollback", "reload", "status", "unlock", "setup", "plan", "ship", "check",
    "logs", "exec", "maintenance", "tools", "ahead",
)

# Exit codes of the phase scripts (see lib.sh's die calls).
EXIT_LOCKED = 3  # another deploy holds the lock (a '@@lock ...' event says who, and whether it still runs)
EXIT_NO_TARGET = 4  # no release to roll back to
EXIT_UNHEALTHY = 7
EXIT_NOT_DEPLOYED = 8  # nothing live on the host yet
EXIT_LINK_FAILED = 17
EXIT_LOCK_LOST = 21  # the lock this deploy took is gone or someone else's (fab unlock --force)
EXIT_IN_MAINTENANCE = 22  # a deploy refused: the host is in maintenance (fab maintenance on)

# The step each other `die N` of the phase scripts names (a RemoteError, exit 5).
STEP_OF_CODE = {
    9: "switch",
    10: "unpack",
    11: "virtualenv",
    12: "vhost install",
    13: "pip install",
    14: "hook",
    15: "configtest",
    16: "reload",
    17: "link unchanged files",
    18: "import check",
    20: "setup check",
    23: "maintenance",
}

Value = str | int | bool | None | Sequence[str]


# ---- events: '@@KIND rest' lines of a phase's stdout, kept without the '@@' (Outcome.events)


def values(events: Sequence[str], kind: str) -> list[str]:
    """The rest of every event of `kind` ('venv abc' -> 'abc'), in order."""
    out = []
    for e in events:
        k, _, rest = e.partition(" ")
        if k == kind:
            out.append(rest)
    return out


def value(events: Sequence[str], kind: str, last: bool = False) -> str | None:
    """The rest of the first (or last) event of `kind`; None when there is none."""
    found = values(events, kind)
    return (found[-1] if last else found[0]) if found else None


def whole(events: Sequence[str], kind: str) -> str | None:
    """The first event of `kind`, kind included (a '@@lock owner=...' line for deploy.lock.parse)."""
    rest = value(events, kind)
    return None if rest is None else f"{kind} {rest}"


def text(events: Sequence[str], kind: str) -> str | None:
    """A file the host sent line by line as 'KIND line' events (sed 's/^/@@KIND /'); None when not sent."""
    lines = values(events, kind)
    return "".join(line + "\n" for line in lines) if lines else None


def _bash(value: Value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if value is None:
        return "''"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return shlex.quote(value)
    return "(" + " ".join(shlex.quote(v) for v in value) + ")"


def script(phase: str, variables: Mapping[str, Value]) -> str:
    """The text of one phase: quoted variable assignments, lib.sh, then the phase's own steps."""
    return _header(phase, variables) + _LIBRARY + (HERE / f"{phase}.sh").read_text()


def follow_up(phase: str, variables: Mapping[str, Value], last: bool = False) -> str:
    """The text of a phase that runs in an open Session: its variables and steps (lib.sh is there already).

    `last`: the host's command ends with it, with its exit code, instead of saying '@@ready' and waiting for
    the end of stdin, which fab sends only once it has seen that '@@ready' (a round trip more, when the
    switch was queued behind the archive)."""
    return _header(phase, variables) + (HERE / f"{phase}.sh").read_text() + ("\nexit $?\n" if last else "")


def _header(phase: str, variables: Mapping[str, Value]) -> str:
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    return "".join(f"{name}={_bash(value)}\n" for name, value in variables.items())


# Python run on the host, as shell functions: (function, file, interpreter).
PYTHON_FUNCTIONS = (
    # The health check and `fab status`'s look at the app; -S: it needs the stdlib only (site costs start-up).
    ("probe", "health.py", '"$PYTHON" -S'),
    # The new release's app, imported before the switch (CHECK_PYTHON: lib.sh import_ahead's, another venv's).
    ("import_check", "preflight.py", '"${CHECK_PYTHON:-$REL/.venv/bin/python}"'),
    ("logtail", "logs.py", '"$PYTHON"'),  # `fab logs`: the app's log lines, since a time, following
)


def _library() -> str:
    """What every phase script has: lib.sh, the venv build (venv.sh), and the Python functions above, each
    a file of this folder run from a quoted here-document."""
    python = "".join(
        f"{name}() {{\n  {interpreter} - \"$@\" <<'FABDEPLOY_PY'\n{(HERE / file).read_text()}FABDEPLOY_PY\n}}\n"
        for name, file, interpreter in PYTHON_FUNCTIONS
    )
    return (HERE / "lib.sh").read_text() + (HERE / "slots.sh").read_text() + (HERE / "venv.sh").read_text() + python


_LIBRARY = _library()
# Which phase scripts these are: a release made by others is made again (deploy.release.fingerprint).
SCRIPTS_HASH = hashlib.sha256((_LIBRARY + "".join((HERE / f"{p}.sh").read_text() for p in PHASES)).encode()).hexdigest()


# The one command line sshd runs for every phase. The script itself comes on stdin, its length in bytes on
# a line before it (see `frame`), so that `ps` on the host shows no variable, hook command or path of it;
# what follows the script (the release archive) is the script's own stdin. GNU head -c reads no byte past
# its count, in blocks: bash's `read -d` takes one byte per system call from a pipe (~30 ms for the ~75 KB
# of a phase script with its library).
# A frame ends in a comment line, FRAME_END: a script cut short (the connection lost mid-frame) lacks it and is
# not run (head -c returns what came; bash's read -d used to fail at an EOF with no NUL).
FRAME_END = "#fabdeploy-end"
COMMAND = f"""bash -c 'IFS= read -r n && s=$(head -c "$n") && [[ $s == *"{FRAME_END}" ]] && eval "$s"'"""


# Variables that may hold a credential (a health check's headers, a package index's URL with its token, a
# hook's or `fab exec`'s command): they never travel on a command line, which `ps` shows every user of the host.
PRIVATE = frozenset({"HEALTH_HEADERS", "PIP_ENV", "PIP_ARGS", "HOOK_CMDS", "CMD"})


def public(variables: Mapping[str, Value]) -> bool:
    """A script of these variables may travel in its command line (`inline`): no PRIVATE one has a value."""
    return not any(variables.get(name) for name in PRIVATE)


def without_private(variables: Mapping[str, Value]) -> dict[str, Value]:
    """`variables` with each PRIVATE one empty: for a script that does not need them (begin; the phases that
    follow it in its Session bring their own)."""
    return {k: ([] if isinstance(v, (list, tuple)) else "") if k in PRIVATE else v for k, v in variables.items()}


# The command line of a phase whose script travels in it (`inline`): gzip members, base64. sshd gives a new
# channel's stdin no room (an SSH window of 0) until it has started the command, so a script sent on stdin
# waits one round trip for that; one in the request itself does not (50 ms at 50 ms RTT). ps shows the blob,
# and only scripts of `public` variables are sent so. ~30 KB for the begin with its library (the limit of one
# argument is 128 KiB on Linux).
INLINE_COMMAND = (
    "bash -c 's=$(printf %s {} | base64 -d | gzip -dc) && [[ $s == *\"{}\" ]] || {{ echo \"error: could not unpack"
    " the script fab sent: the host needs base64 (GNU coreutils) and gzip\" >&2; exit 126; }}; eval \"$s\"'"
)


# Longer scripts go on stdin (Linux refuses an argument over 128 KiB: exec would fail).
INLINE_LIMIT = 100 * 1024


@functools.lru_cache(maxsize=64)
def _gzipped(part: str) -> bytes:
    return gzip.compress(part.encode(), mtime=0)


def inline(text: str) -> str:
    """The command line that runs `text` itself (see INLINE_COMMAND; its stdin is then the command's own data).
    The library and the phase's steps are compressed once per process: gzip members concatenate."""
    command(text)  # refuses a NUL
    head, lib, tail = text.partition(_LIBRARY)
    if lib:  # the variables, then the library and the phase's steps (the same text in every command)
        blob = gzip.compress(head.encode(), mtime=0) + _gzipped(lib) + _gzipped(tail + "\n" + FRAME_END)
    else:
        blob = gzip.compress((text + "\n" + FRAME_END).encode(), mtime=0)
    return INLINE_COMMAND.format(base64.b64encode(blob).decode(), FRAME_END)


def _launch(text: str, in_line: bool) -> tuple[str, bytes]:
    """(command line, what goes first on stdin) of a script: in its command line when allowed and short enough."""
    if in_line:
        line = inline(text)
        if len(line) <= INLINE_LIMIT:
            return line, b""
    return COMMAND, frame(text)


def command(text: str) -> str:
    """The command line of a phase: always the same; the script `text` goes first on stdin (see `run`)."""
    if "\0" in text:
        raise ConfigError("a value sent to the host holds a NUL byte (no shell variable can hold one): remove it from the config")
    return COMMAND


def send_exec(chan: paramiko.Channel, line: str) -> None:
    """Ask the host to run `line` on `chan` without waiting for its answer, so that the script (sent next on
    the channel) goes out with the request: paramiko's exec_command waits one round trip for sshd's yes
    first (50 ms at 50 ms RTT, each command). sshd reads the channel in order: it has started the command
    (and opened its stdin) before it reads the data that follows the request. A refusal closes the channel:
    see `exit_code`."""
    if chan.closed or chan.eof_sent or not chan.active:  # exec_command's @open_only
        raise paramiko.SSHException("the channel is not open")
    m = paramiko.Message()
    m.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
    m.add_int(chan.remote_chanid)
    m.add_string("exec")
    m.add_boolean(True)  # the answer still comes; a refusal closes the channel (Channel._request_failed)
    m.add_string(line)
    # Channel.exec_command's own steps but its last (_wait_for_event): private, in paramiko since 1.x (5.1 here).
    chan._event_pending()  # type: ignore[attr-defined]
    chan.get_transport()._send_user_message(m)  # type: ignore[attr-defined]


def exit_code(chan: paramiko.Channel, host: str) -> int:
    """The exit code of a command begun with `send_exec`; the host's refusal or a lost connection raise."""
    code = chan.recv_exit_status()
    chan.close()
    if code == -1:
        transport = chan.get_transport()
        alive = transport is not None and transport.is_active() and transport.get_exception() is None
        if alive and chan.event.is_set() and not chan.event_ready:
            raise ConnectError(f"{host}: the host refused to run the command (sshd said no to exec)", host)
        raise ConnectError(f"{host}: connection lost during the command", host)
    return code


def frame(text: str) -> bytes:
    """A script as the host reads it from stdin (COMMAND, lib.sh's serve): its length, a newline, itself and
    FRAME_END."""
    command(text)  # refuses a NUL, which a bash variable cannot hold
    data = (text + "\n" + FRAME_END).encode()
    return b"%d\n" % len(data) + data


@dataclass(frozen=True)
class Outcome:
    code: int
    events: tuple[str, ...]  # '@@' lines, without the '@@'
    stderr: str

    def tail(self, n: int = 15) -> str:
        # Only blank lines go: the '  | ' quoting of the first line is part of it.
        return "\n".join(self.stderr.strip("\n").splitlines()[-n:])

    def error_line(self) -> str:
        for line in reversed(self.stderr.splitlines()):
            if line.startswith("error: "):
                return line[len("error: ") :]
        last = self.stderr.strip().splitlines()
        return last[-1] if last else f"exit code {self.code}"


def run(
    c: Connection,
    text: str,
    stdin: bytes | None = None,
    on_event: Callable[[str], None] | None = None,
    timeout: float | None = None,
    on_sent: Callable[[int], None] | None = None,
    passing: tuple[str, ...] = (),
    in_line: bool = False,
) -> Outcome:
    """Run one phase script on the host as ONE exec request; stream `stdin` into it.

    `in_line`: the script travels in the command line (`inline`; only a script of `public` variables), not
    first on stdin: a round trip less.

    `passing`: kinds of events only handed to `on_event`, not kept in the Outcome (`fab logs --follow`
    streams lines for hours).

    paramiko's channel is used directly: invoke's runner re-encodes stdin as text, which would
    corrupt a binary archive, and we want the '@@' events as they come.
    """
    transport = c.transport
    if transport is None or not transport.is_active():
        raise ConnectError(f"{c.original_host}: not connected", str(c.original_host))
    line, head = _launch(text, in_line)  # a NUL in the script raises here, before a channel is opened
    try:
        chan = transport.open_session(timeout=30)
        send_exec(chan, line)
    except Exception as exc:  # paramiko raises several unrelated types here
        raise ConnectError(f"{c.original_host}: could not start a command: {exc}", str(c.original_host)) from exc
    if timeout:
        chan.settimeout(timeout)
    errors: list[bytes] = []
    send_error: list[BaseException] = []

    def send() -> None:
        try:
            if head:
                chan.sendall(head)
            if stdin:
                view = memoryview(stdin)
                for i in range(0, len(view), 1 << 16):
                    chan.sendall(view[i : i + (1 << 16)])
                    if on_sent:
                        on_sent(min(len(view), i + (1 << 16)))
            chan.shutdown_write()
        except Exception as exc:  # the remote side may exit early; its exit code tells why
            send_error.append(exc)

    def read_stderr() -> None:
        while True:
            data = chan.recv_stderr(1 << 15)
            if not data:
                return
            errors.append(data)

    threads = [threading.Thread(target=send, daemon=True), threading.Thread(target=read_stderr, daemon=True)]
    for t in threads:
        t.start()
    events: list[str] = []
    buf = b""
    while True:
        data = chan.recv(1 << 15)
        if not data:
            break
        buf += data
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace")
            if line.startswith("@@"):
                if line[2:].partition(" ")[0] not in passing:
                    events.append(line[2:])
                if on_event:
                    on_event(line[2:])
    for t in threads:
        t.join(timeout=30)
    code = exit_code(chan, str(c.original_host))
    return Outcome(code, tuple(events), b"".join(errors).decode(errors="replace"))


READY = "ready"  # a Session's host finished a script and waits for the next (lib.sh's serve)


class Session:
    """A phase whose channel stays open for the phases that follow it: a whole deploy (begin, prepare,
    switch) as ONE SSH command.

    The first script ends in lib.sh's `serve`: the host says '@@ready', then runs each script that comes on
    stdin (a `follow_up`, framed, its data after it), saying '@@ready' after each. A script that
    fails ends the command with its exit code. When stdin closes, the host marks a release that was not
    switched failed and frees this deploy's lock: a deploy that had nothing to do, or whose fab went away
    while its other hosts prepared, leaves nothing behind.
    """

    def __init__(self, c: Connection, text: str, in_line: bool = False) -> None:
        self.host = str(c.original_host)
        transport = c.transport
        if transport is None or not transport.is_active():
            raise ConnectError(f"{self.host}: not connected", self.host)
        line, self._first = _launch(text, in_line)  # a NUL raises here, before a channel is opened; `in_line`: see `run`
        try:
            self._chan = transport.open_session(timeout=30)
            send_exec(self._chan, line)
        except Exception as exc:  # paramiko raises several unrelated types here
            raise ConnectError(f"{self.host}: could not start a command: {exc}", self.host) from exc
        self._cond = threading.Condition()
        self._events: list[str] = []
        self._readies = 0
        self._ready_at: list[int] = []  # how many events had come at each '@@ready'
        self._closed = False  # stdout and stderr both ended: the host's command is over
        self._open_streams = 2
        self._errors: list[bytes] = []
        self._on_event: Callable[[str], None] | None = None
        self._steps = 0  # '@@ready's consumed: the steps done
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    @property
    def open(self) -> bool:
        """The host waits for a next script (the last step ended with '@@ready')."""
        with self._cond:
            return not self._closed and self._readies == self._steps

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                data = self._chan.recv(1 << 15)
            except Exception:  # the connection went away: the exit status tells
                data = b""
            if not data:
                break
            buf += data
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                if not line.startswith("@@"):
                    continue
                event = line[2:]
                with self._cond:
                    if event == READY:
                        self._readies += 1
                        self._ready_at.append(len(self._events))
                    else:
                        self._events.append(event)
                    on_event = self._on_event
                    self._cond.notify_all()
                if on_event and event != READY:
                    on_event(event)
        self._stream_ended()

    def _stream_ended(self) -> None:
        with self._cond:
            self._open_streams -= 1
            self._closed = self._open_streams == 0
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        while True:
            try:
                data = self._chan.recv_stderr(1 << 15)
            except Exception:
                data = b""
            if not data:
                break
            with self._cond:
                self._errors.append(data)
        self._stream_ended()

    def step(
        self,
        text: str | None = None,
        data: bytes = b"",
        on_event: Callable[[str], None] | None = None,
        on_sent: Callable[[int], None] | None = None,
        last: bool = False,
    ) -> Outcome:
        """Send the next script (`text`, then its `data` on the script's stdin) and wait until the host is ready
        for another, or (`last`, or a failure) until the command ends; the Outcome of this step alone (its
        events: those after the last '@@ready' consumed, a script queued in the step before may have begun)."""
        with self._cond:
            self._on_event = on_event
            start = self._ready_at[self._steps - 1] if self._steps else 0
        head = self._first if self._first else b""
        self._first = b""
        if text is not None:
            head += frame(text)
        try:
            if head:
                self._chan.sendall(head)
            view = memoryview(data)
            for i in range(0, len(view), 1 << 16):
                self._chan.sendall(view[i : i + (1 << 16)])
                if on_sent:
                    on_sent(min(len(view), i + (1 << 16)))
            if last:
                self._chan.shutdown_write()
        except Exception:  # the host may have ended early; its exit code tells why
            pass
        with self._cond:
            if not last:
                self._cond.wait_for(lambda: self._closed or self._readies > self._steps)
                if self._readies > self._steps:
                    end = self._ready_at[self._steps]
                    self._steps += 1
                    return Outcome(0, tuple(self._events[start:end]), b"".join(self._errors).decode(errors="replace"))
            self._cond.wait_for(lambda: self._closed)
        code = exit_code(self._chan, self.host)
        with self._cond:
            events = tuple(self._events[start:])
            stderr = b"".join(self._errors).decode(errors="replace")
        return Outcome(code, events, stderr)

    def send(self, data: bytes) -> None:
        """Send `data` on the host's stdin now, without waiting: scripts (and their data) queued for the
        steps that follow, each later awaited with step(None)."""
        head, self._first = self._first, b""
        try:
            self._chan.sendall(head + data)
        except Exception:  # the host may have ended early (a lock held): its exit code tells why
            pass

    def end(self, on_event: Callable[[str], None] | None = None) -> Outcome:
        """Close the host's stdin with nothing more to run (it frees the lock, see above) and wait for its end."""
        return self.step(None, b"", on_event, last=True)


# A command with a terminal (`fab exec` on a terminal): the pty would echo the script and cook its bytes, so
# the host first makes the pty raw and says so ('\x01R'); the script comes after that, then the pty is sane
# again for the command.
# The script ends at a NUL byte here, not at a length (`frame`): through the pty, `head -c` waited for bytes
# that never came (seen in CI); the byte-per-call read costs nothing that matters to an interactive command.
PTY_COMMAND = """bash -c 'stty raw -echo 2>/dev/null; printf "\\001R"; IFS= read -r -d "" s; stty sane 2>/dev/null; eval "$s"'"""
RAN = b"@@ran"  # the exec phase's last event: what follows is the command's, and so is the exit code


@dataclass(frozen=True)
class Ran:
    code: int
    ran: bool  # the command started ('@@ran' came): `code` is its own, else the script's (a `die`)
    stderr: str  # the script's own stderr before the command ran (its error line)

    def error_line(self) -> str:
        return Outcome(self.code, (), self.stderr).error_line()


def run_command(
    c: Connection,
    text: str,
    on_stdout: Callable[[bytes], None],
    on_stderr: Callable[[bytes], None],
    terminal: Callable[[Any], None] | None = None,
    size: tuple[int, int] = (80, 24),
    term: str = "xterm",
) -> Ran:
    """Run a script whose last step is a command (the exec phase) as ONE exec request, its output streamed raw.

    `terminal`: given, the command gets a pty of `size` and `terminal(channel)` moves the bytes between the
    local terminal and the channel until it closes (the pty merges stderr into stdout).
    """
    command(text)  # refuses a NUL, before a channel is opened
    script = frame(text) if terminal is None else text.encode() + b"\0"
    transport = c.transport
    if transport is None or not transport.is_active():
        raise ConnectError(f"{c.original_host}: not connected", str(c.original_host))
    try:
        chan = transport.open_session(timeout=30)
        if terminal is not None:
            chan.get_pty(term=term, width=size[0], height=size[1])
            chan.exec_command(PTY_COMMAND)
            ready = b""
            while not ready.endswith(b"\x01R"):
                data = chan.recv(1)
                if not data:
                    break
                ready += data
        else:
            send_exec(chan, COMMAND)
        # Without a terminal the channel's input stays open, and empty, until the command ends: its end
        # tells the host that fab went away (see exec.sh).
        chan.sendall(script)
    except Exception as exc:  # paramiko raises several unrelated types here
        raise ConnectError(f"{c.original_host}: could not start a command: {exc}", str(c.original_host)) from exc
    before: list[bytes] = []
    ran = False
    head = b""

    def out(data: bytes) -> None:
        nonlocal ran, head
        if ran:
            on_stdout(data)
            return
        head += data
        at = head.find(RAN)
        if at < 0:
            return
        end = head.find(b"\n", at)
        if end < 0:
            return
        ran = True
        rest, head = head[end + 1 :], b""
        if rest:
            on_stdout(rest)

    def read_stderr() -> None:
        while True:
            data = chan.recv_stderr(1 << 15)
            if not data:
                return
            if ran:
                on_stderr(data)
            else:
                before.append(data)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    if terminal is not None:
        def relay(data: bytes) -> None:
            out(data)

        terminal(_Relay(chan, relay))
    else:
        while True:
            data = chan.recv(1 << 15)
            if not data:
                break
            out(data)
    reader.join(timeout=30)
    code = exit_code(chan, str(c.original_host))
    if not ran and head:
        before.append(head)  # a pty merges the script's error line into stdout
    return Ran(code, ran, b"".join(before).decode(errors="replace"))


class _Relay:
    """The channel as the terminal loop sees it: what it receives goes through the '@@ran' filter first."""

    def __init__(self, chan: Any, deliver: Callable[[bytes], None]) -> None:
        self.chan = chan
        self.deliver = deliver

    def fileno(self) -> int:
        return int(self.chan.fileno())

    def pump(self) -> bool:
        """Receive what is there and deliver it; False once the channel is closed."""
        data = self.chan.recv(1 << 15)
        if not data:
            return False
        self.deliver(data)
        return True

    def send(self, data: bytes) -> None:
        self.chan.sendall(data)

    def resize(self, width: int, height: int) -> None:
        self.chan.resize_pty(width=width, height=height)
