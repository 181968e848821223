"""What a task shows: progress for people on stderr, and the one JSON document for pipelines on stdout.

On a terminal (stderr is a TTY) lines are coloured with `rich` and a spinner shows what each host is
doing right now (upload size, pip install, a hook); `NO_COLOR` turns colour off. Anywhere else
(CI logs, pipes) the output is plain `[host] step ... (1.23s)` lines and rich is not even imported.
Every step is also recorded, per host, for the `--json` document (`TaskRun`, schema: result.schema.json).
Output only displays: results come to it as data from the layers below, never the other way round.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from deploy.errors import DeployError

# Remote events that are data for the tool, not news for a person.
_DATA_EVENTS = frozenset(
    "release current lock app mpm log m python venv proc disk health deployed shipped watched fingerprint".split()
)


def duration(seconds: int) -> str:
    """An age for people: 42s, 17m, 3h05m."""
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def show(text: str, stream: TextIO | None = None) -> None:
    """A task's own report (plan, status) on stdout; on a terminal, `+`/`-`/`~` lines coloured like a diff."""
    out = stream or sys.stdout
    if not _fancy(out):
        print(text, file=out, flush=True)
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(file=out, highlight=False, soft_wrap=True)
    styles = {"+": "green", "-": "red", "~": "yellow", "!": "bold red", "@": "cyan"}
    for line in text.splitlines():
        body = line.lstrip()
        style = styles.get(body[:1], "") if body[:3] not in ("---", "+++") else "bold"
        console.print(Text(line, style=style))


def _fancy(stream: TextIO) -> bool:
    """Colour and live updates: only on a terminal that can show them."""
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


class Reporter:
    """Where the tool says what it does. `quiet` keeps the record but prints nothing."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.steps: dict[str, list[dict[str, Any]]] = {}
        self.events: dict[str, list[str]] = {}  # per host, the events shown to people (not the data ones)
        self._lock = threading.Lock()
        self._doing: dict[str, str] = {}
        self._phase: dict[str, str] = {}
        self._console: Any = None
        self._status: Any = None
        if live is None:
            live = _fancy(self.stream)
        if live and not quiet:
            from rich.console import Console  # only on a terminal: a pipeline never pays its import

            self._console = Console(file=self.stream, highlight=False, soft_wrap=True)

    @property
    def live(self) -> bool:
        return self._console is not None

    def line(self, host: str, text: str, style: str = "") -> None:
        if self.quiet:
            return
        if self._console is not None:
            from rich.markup import escape

            body = f"[{style}]{escape(text)}[/]" if style else escape(text)
            self._console.print(f"[cyan]\\[{escape(host)}][/] {body}")
        else:
            print(f"[{host}] {text}", file=self.stream, flush=True)

    def note(self, text: str) -> None:
        """A line that belongs to no host (a summary, a table)."""
        if self.quiet:
            return
        if self._console is not None:
            from rich.markup import escape

            self._console.print(escape(text))
        else:
            print(text, file=self.stream, flush=True)

    def record(self, host: str, step: str, seconds: float, note: str = "") -> None:
        with self._lock:
            self.steps.setdefault(host, []).append({"step": step, "seconds": round(seconds, 3), "note": note})

    def event(self, host: str, event: str) -> None:
        """Show a phase script's '@@' event in words (and keep it for the JSON document)."""
        parts = event.split()
        if not parts:
            return
        kind = parts[0]
        if kind in _DATA_EVENTS:
            return  # data for the tool (a manifest can be thousands of lines): neither shown nor kept
        with self._lock:
            self.events.setdefault(host, []).append(event)
        if kind == "step" and len(parts) >= 4:
            try:
                seconds = float(parts[2]) - float(parts[3])
            except ValueError:
                seconds = 0.0
            note = " ".join(parts[4:])
            self.record(host, parts[1], seconds, note)
            self.doing(host, None)
            self.line(host, f"{parts[1]:<16} {note + ' ' if note else ''}({seconds:.2f}s)")
        elif kind == "begin":
            self.doing(host, " ".join(parts[1:]))
        else:
            self.line(host, " ".join(parts), "red" if "failed" in parts else "")

    def phase(self, host: str, what: str) -> None:
        """The phase a host is in (what the spinner says between steps)."""
        self._phase[host] = what
        self.doing(host, None)

    def doing(self, host: str, what: str | None) -> None:
        """What a host is busy with now: the spinner's text on a terminal, nothing elsewhere."""
        if self._console is None or self.quiet:
            return
        with self._lock:
            what = what or self._phase.get(host)
            if what:
                self._doing[host] = what
            else:
                self._doing.pop(host, None)
            text = "  ".join(f"[cyan]{h}[/] {w}" for h, w in self._doing.items())
            if self._status is None and text:
                self._status = self._console.status(text, spinner="dots")
                self._status.start()
            elif self._status is not None:
                self._status.update(text or "working")

    def upload(self, host: str, sent: int, total: int) -> None:
        if self._console is not None:
            self.doing(host, f"uploading {sent / 1024:.0f} / {total / 1024:.0f} KiB" if sent < total else "unpacking")

    def close(self) -> None:
        with self._lock:
            if self._status is not None:
                self._status.stop()
                self._status = None
            self._doing.clear()
            self._phase.clear()


# ---- reports of the tasks for people


def status_text(d: dict[str, Any]) -> str:
    """One host's `fab status` for a person (d: deploy.host.status's dict)."""
    rel = next((r for r in d["releases"] if r["id"] == d["current"]), None)
    lines = [f"{d['host']}: live {d['current'] or 'nothing'}" + (f" (revision {rel['revision'][:12]})" if rel else "")]
    if d.get("deployed"):
        dep = d["deployed"]
        lines.append(f"  deployed   {dep['at']} by {dep['by']} ({dep['action']})")
    if d.get("watched"):
        lines.append(f"  modified   by fab watch, last at {d['watched']} (not a clean release: deploy to replace it)")
    app = d.get("app") or {}
    if "error" in app:
        lines.append(f"  app        {app['error']}")
    else:
        lines.append(
            f"  app        {d['mode'] or 'unknown'} mode"
            + (f" (group {app.get('process_group')})" if app.get("process_group") else "")
            + f", mpm {d['mpm'] or 'unknown'}, python {app.get('python', '?')}, answering release {app.get('release', '?')}"
        )
    procs = d.get("processes") or []
    if procs:
        each = (f"{p['pid']} (up {duration(p['seconds'])}, since {p['started']})" for p in procs)
        lines.append("  processes  " + ", ".join(each))
    elif d.get("mode") == "daemon":
        lines.append("  processes  none has loaded the app yet")
    for slot in d.get("slots") or []:
        pids = ", ".join(str(p) for p in slot["pids"]) or "no process"
        lines.append(
            f"  slot {slot['slot']}     {slot.get('role') or ('live' if slot['live'] else 'idle')}: {slot['release'] or '-'}"
            f" ({pids}; {slot['rss_kib'] / 1024:.0f} MiB)"
        )
    warm = d.get("warm")
    if warm:
        lines.append(
            f"  warm check {warm['pid']} ({warm['rss_kib'] / 1024:.0f} MiB, venv {warm['venv'] or '?'}):"
            " the next deploy's import check forks from it"
        )
    lines.append(f"  health     {d.get('health') or 'unknown'}")
    disk = d.get("disk_kib") or {}
    if disk:
        sizes = f"releases {disk['releases'] / 1024:.1f} MiB, venvs {disk['venvs'] / 1024:.1f} MiB"
        lines.append(f"  disk       {sizes} ({len(d['releases'])} releases)")
    if d.get("maintenance"):
        lines.append(f"  MAINTENANCE since {d['maintenance']}: visitors get the 503 page (fab maintenance off)")
    if d.get("lock"):
        lk = d["lock"]
        lines.append(f"  LOCKED     by {lk.get('owner')}@{lk.get('host')} pid {lk.get('pid')} ({lk.get('cmd')})")
    return "\n".join(lines)


class HostLines:
    """Lines of several hosts as they come, for people (`fab logs`): '[host] line' with several hosts, the line
    alone with one (so that `fab logs | grep` sees the log as it is); one thread's line never cuts another's."""

    def __init__(self, prefix: bool, stream: TextIO | None = None) -> None:
        self.prefix = prefix
        self.stream = stream
        self._lock = threading.Lock()

    def __call__(self, host: str, line: str) -> None:
        with self._lock:
            out = self.stream or sys.stdout
            out.write(f"[{host}] {line}\n" if self.prefix else line + "\n")
            out.flush()


class HostStreams:
    """A command's output from several hosts (`fab exec --all`): complete lines, each as '[host] line', on
    stdout or stderr as the host wrote them; with one host (`prefix` false) its bytes as they are."""

    def __init__(self, prefix: bool, stdout: Any = None, stderr: Any = None) -> None:
        self.prefix = prefix
        self.out = stdout if stdout is not None else sys.stdout.buffer
        self.err = stderr if stderr is not None else sys.stderr.buffer
        self._partial: dict[tuple[str, int], bytes] = {}
        self._lock = threading.Lock()

    def stdout(self, host: str, data: bytes) -> None:
        self._write(host, data, self.out)

    def stderr(self, host: str, data: bytes) -> None:
        self._write(host, data, self.err)

    def _write(self, host: str, data: bytes, stream: Any) -> None:
        with self._lock:
            if not self.prefix:
                stream.write(data)
                stream.flush()
                return
            key = (host, id(stream))
            *lines, self._partial[key] = (self._partial.get(key, b"") + data).split(b"\n")
            for line in lines:
                stream.write(f"[{host}] ".encode() + line + b"\n")
            stream.flush()

    def close(self) -> None:
        """Lines a host left unfinished (no newline at the end)."""
        with self._lock:
            for (host, which), rest in self._partial.items():
                if rest:
                    stream = self.out if which == id(self.out) else self.err
                    stream.write(f"[{host}] ".encode() + rest + b"\n")
                    stream.flush()
            self._partial.clear()


class Terminal:
    """This terminal, lent to a command's pty on a host (`fab exec` with a terminal): keys go raw to the host,
    whose pty echoes and signals (Ctrl-C reaches the command); the window's size follows SIGWINCH.

    Made in the main thread (`with Terminal() as t:`, the signal handler's place); called with the channel
    relay of deploy.remote.run_command, in whatever thread runs the command.
    """

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno()
        self.relay: Any = None
        self._old_handler: Any = None

    @staticmethod
    def wanted() -> bool:
        try:
            return sys.stdin.isatty() and sys.stdout.isatty()
        except (AttributeError, ValueError):
            return False

    def size(self) -> tuple[int, int]:
        try:
            cols, rows = os.get_terminal_size(self.fd)
            return cols, rows
        except OSError:
            return 80, 24

    def __enter__(self) -> Terminal:
        import signal

        if threading.current_thread() is threading.main_thread():
            self._old_handler = signal.signal(signal.SIGWINCH, self._resized)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        if self._old_handler is not None:
            signal.signal(signal.SIGWINCH, self._old_handler)

    def _resized(self, signum: int, frame: object) -> None:
        if self.relay is not None:
            self.relay.resize(*self.size())

    def __call__(self, relay: Any) -> None:
        import select
        import termios
        import tty

        self.relay = relay
        old = termios.tcgetattr(self.fd)
        tty.setraw(self.fd)
        reading = [relay, self.fd]
        try:
            while True:
                ready, _, _ = select.select(reading, [], [])
                if relay in ready and not relay.pump():
                    return
                if self.fd in ready:
                    data = os.read(self.fd, 4096)
                    if data:
                        relay.send(data)
                    else:
                        reading = [relay]  # stdin closed: the command's output still comes
        finally:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, old)
            self.relay = None


def check_text(name: str, checks: list[dict[str, Any]]) -> str:
    """One host's `fab check` for a person: a line per check, the fix lines under each that is not ok."""
    marks = {"ok": "  ok  ", "warn": "~ warn", "fail": "! FAIL"}
    width = max((len(str(x["name"])) for x in checks), default=4)
    failed = sum(1 for x in checks if x["status"] == "fail")
    out = [f"{name}: " + (f"{failed} of {len(checks)} checks failed" if failed else f"all {len(checks)} checks passed")]
    for x in checks:
        out.append(f"  {marks.get(str(x['status']), x['status'])}  {x['name']:<{width}}  {x['detail']}")
        out += [f"{' ' * (width + 12)}fix: {line}" for line in x["fix"]]
    return "\n".join(out)


def plan_text(name: str, p: dict[str, Any], max_files: int = 20) -> str:
    """One host's plan for a person (p: deploy.planning.make's dict)."""
    out = [f"{name}: plan"]
    if not p["set_up"]:
        return f"{name}: not set up: run fab setup first (then a deploy would ship {p['revision'][:12]})"
    if p["locked"]:
        lk = p["locked"]
        out.append(f"  ! locked by {lk.get('owner')}@{lk.get('host')} ({lk.get('cmd')}): a deploy now would wait for it")
    live = f"{p['live_release']} ({(p['live_revision'] or '-')[:12]})" if p["live_release"] else "nothing live yet"
    out.append(f"  revision   {p['revision'][:12]}  <- live: {live}")
    out += [f"    {line}" for line in p["commits"]]
    f = p["files"]
    counts = f"{len(f['added'])} added, {len(f['changed'])} changed, {len(f['removed'])} removed, {f['unchanged']} unchanged"
    out.append(f"  files      {counts}")
    for mark, key in (("+", "added"), ("~", "changed"), ("-", "removed")):
        for path in f[key][:max_files]:
            out.append(f"    {mark} {path}")
        if len(f[key]) > max_files:
            out.append(f"    {mark} ... {len(f[key]) - max_files} more")
    deps = f" [{p['dependencies']}]" if p.get("dependencies") else ""
    out.append(f"  venv       {'requirements changed: ' if p['requirements_changed'] else ''}{p['venv']}{deps}")
    for shared, tracked in (p.get("shared_tracked") or {}).items():
        live = "shared/ keeps its own copy" if p["live_release"] else "seeds shared/ (first deploy)"
        out.append(f"  shared     {shared}: {len(tracked)} tracked file(s) in the repository; {live}")
    for h in p["hooks"]:
        out.append(f"  hook       {h['name']}: {'run' if h['run'] else 'skip'} ({h['reason']})")
    out.append(f"  reload     {p['reload']}")
    out.append(f"  health     {p['health']}")
    if not p["diffs"]:
        out.append("  config     vhost and WSGI script unchanged")
    for fname, body in p["diffs"].items():
        out.append(f"  config     {fname}:")
        out += [f"    {line}" for line in body.rstrip("\n").splitlines()]
    return "\n".join(out)


def table(hosts: list[dict[str, Any]]) -> str:
    """A fleet's per-host results for a person (the JSON document's host entries)."""
    width = max((len(h["host"]) for h in hosts), default=4)
    lines = [f"{'host':<{width}}  {'release':<26} {'time':>7}  result"]
    for h in hosts:
        lines.append(f"{h['host']:<{width}}  {h.get('release') or '-':<26} {h.get('seconds') or 0:6.2f}s  {h['result']}")
    return "\n".join(lines)



# ---- the JSON document (--json)

SCHEMA_PATH = Path(__file__).with_name("result.schema.json")
SCHEMA_ID = "fabdeploy/result/1"


@dataclass
class TaskRun:
    """One task's run: its hosts' results as they come, turned into the JSON document at the end."""

    task: str
    json: bool
    reporter: Reporter
    stage: str | None = None
    started: float = field(default_factory=time.monotonic)
    started_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)

    def host(self, name: str, **values: Any) -> dict[str, Any]:
        """The entry of one host (created on first use); values are merged in."""
        entry = self.hosts.setdefault(name, {"host": name, "result": "pending"})
        entry.update(values)
        return entry

    def say(self, text: str = "") -> None:
        """A task's own output for a person (status, releases, plan): stdout, but never with --json."""
        if not self.json:
            show(text)

    def document(self, error: BaseException | None = None, exit_code: int = 0) -> dict[str, Any]:
        from deploy import __version__

        hosts = []
        for name, entry in self.hosts.items():
            hosts.append({**entry, "steps": self.reporter.steps.get(name, [])})
        doc: dict[str, Any] = {
            "schema": SCHEMA_ID,
            "tool": "fabdeploy",
            "version": __version__,
            "task": self.task,
            "stage": self.stage,
            "ok": error is None,
            "exit_code": exit_code,
            "started_at": self.started_at,
            "seconds": round(time.monotonic() - self.started, 3),
            "release": self.fields.get("release"),
            "revision": self.fields.get("revision"),
            "hosts": hosts,
            "error": None if error is None else error_info(error, exit_code),
        }
        doc.update({k: v for k, v in self.fields.items() if k not in doc})
        return doc

    def dump(self, error: BaseException | None = None, exit_code: int = 0) -> str:
        return json.dumps(self.document(error, exit_code), indent=2, default=str)


def error_info(exc: BaseException, exit_code: int) -> dict[str, Any]:
    if isinstance(exc, DeployError):
        kind = type(exc).__name__
    else:
        kind = "Interrupted" if isinstance(exc, KeyboardInterrupt) else "Error"
    message = str(exc) or kind
    host = getattr(exc, "host", None)
    return {"type": kind, "message": message.splitlines()[0], "detail": message, "exit_code": exit_code, "host": host}


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())  # type: ignore[no-any-return]


