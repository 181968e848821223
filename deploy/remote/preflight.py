"""Import the new release's WSGI app in its own venv before the switch (stdlib only; the release's venv python).

Inlined into the phase scripts as the shell function `import_check` (see deploy/remote/__init__.py) and run
by prepare in the release's home dir, with its PYTHONPATH, DJANGO_SETTINGS_MODULE and environment:
    import_check MODULE CALLABLE FACTORY(0|1) [PATH HOST STATUS]
A release that cannot be imported (a module its code needs is missing, settings that raise) fails here,
with the app's own traceback, and never reaches a daemon process; so does a factory named without its ().
With PATH (embedded mode, which has no idle slot to try a release in before Apache's graceful): the app is
called once with a GET of PATH (Host: HOST) and must answer STATUS; a raise or another status fails too.

    import_check --ahead IMPORTS 3<&0
is the same check, started early (at the deploy's begin, in the live release's venv: lib.sh import_ahead):
it imports ahead the installed modules listed in IMPORTS, then reads from fd 3 the request for the release
(NUL-separated: log file, working dir, the number of arguments, the arguments above, then the environment as
`env -0` prints it) and checks that release as a fresh process would, writing to the log file. An empty
request (fd 3 closed at once) ends it.

    import_check --warm IMPORTS WARM
is the check kept warm between deploys (lib.sh warm_start, after a switch): the same imports, done once, then
for each directory D named by a line of the fifo WARM/ctl a fork checks the release of D/req (the request
above) and tells the fifo D/res its pid, then its exit code. It writes WARM/pid at its start and WARM/ready
once it has imported; it ends when WARM/pid is no longer its own (replaced) or its venv is gone.
"""

from __future__ import annotations

import importlib
import inspect
import io
import os
import select
import signal
import sys
import threading
import time
import traceback


def main(module: str, name: str, factory: str, loaded: list[object] | None = None) -> int:
    """0 when the app imports and is a WSGI callable (appended to `loaded`)."""
    try:
        app = getattr(importlib.import_module(module), name)
        if factory == "1":
            app = app()
    except BaseException as exc:  # whatever the app raises, it must not go live
        traceback.print_exc(limit=-8)
        print(f"error: importing the app failed: {module}:{name}{'()' if factory == '1' else ''}: {type(exc).__name__}: {exc}")
        return 1
    if not callable(app):
        print(f"error: {module}:{name} is a {type(app).__name__}, not a WSGI callable")
        return 1
    if loaded is not None:
        loaded.append(app)
    try:
        params = [
            p for p in inspect.signature(app).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):  # a builtin or C callable: nothing to say
        return 0
    if factory != "1" and len(params) < 2 and not any(p.kind == p.VAR_POSITIONAL for p in params):
        print(f"error: {module}:{name} takes {len(params)} arguments, a WSGI app takes 2: if it is an app factory,"
              f" write wsgi: {module}:{name}()")
        return 1
    return 0


def call_once(app: object, path: str, host: str, want: str) -> int:
    """GET `path` from the imported app, as Apache would hand it over; 0 when it answers `want`."""
    environ = {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path.split("?")[0], "QUERY_STRING": path.partition("?")[2],
        "SERVER_NAME": host, "SERVER_PORT": "80", "HTTP_HOST": host, "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }
    got: list[str] = []
    try:
        body = app(environ, lambda status, headers, exc_info=None: got.append(status))  # type: ignore[operator]
        for _ in body:
            pass
        getattr(body, "close", lambda: None)()
    except BaseException as exc:  # the release must not reach Apache
        traceback.print_exc(limit=-8)
        print(f"error: the app raised on GET {path}: {type(exc).__name__}: {exc}")
        return 1
    status = got[0].split()[0] if got else "none"
    if status != want:
        print(f"error: the app answered GET {path} with {got[0] if got else 'no status'}, not {want}")
        return 1
    return 0


def main_with_call(module: str, name: str, factory: str, path: str, host: str, want: str) -> int:
    loaded: list[object] = []
    return main(module, name, factory, loaded) or call_once(loaded[0], path, host, want)


def check(args: list[str]) -> int:
    if len(args) >= 6 and args[3]:
        return main_with_call(args[0], args[1], args[2], args[3], args[4], args[5])
    return main(args[0], args[1], args[2])


def preimport(names: list[str], stop: threading.Event) -> str:
    """Import `names` in order with only the stdlib and the venv on sys.path (nothing of a release), until
    `stop`; the first that fails ends it, dropping every module that attempt added (nothing half-imported
    stays). The module it stopped at, and why; '' when it got through or `stop` came first."""
    roots = (os.path.realpath(os.path.dirname(os.__file__)) + "/", os.path.realpath(sys.prefix) + "/")
    saved = sys.path[:]
    sys.path[:] = [p for p in saved if p and (os.path.realpath(p) + "/").startswith(roots)]
    try:
        for name in names:
            if stop.is_set():
                return ""
            if name in sys.modules:
                continue
            before = set(sys.modules)
            try:
                importlib.import_module(name)
            except BaseException as exc:  # a module that needs the app's settings: the check imports it later
                for added in set(sys.modules) - before:
                    module = sys.modules.pop(added, None)
                    parent, _, child = added.rpartition(".")
                    if parent in before and getattr(sys.modules.get(parent), child, None) is module:
                        delattr(sys.modules[parent], child)
                return f"stopped at {name} ({type(exc).__name__})"
    finally:
        sys.path[:] = saved
    return ""


def read_names(imports: str) -> list[str]:
    try:
        with open(imports) as f:
            return f.read().split()
    except OSError:
        return []


def preimport_niced(names: list[str], stop: threading.Event, why: list[str]) -> threading.Thread:
    """preimport(names) in a thread at the lowest CPU priority (the live processes keep the CPU); its reason
    for stopping into why[0]."""

    def work() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # this thread only, on Linux
        except OSError:
            pass
        if names:
            why[0] = preimport(names, stop)

    worker = threading.Thread(target=work, name="fabdeploy-ahead", daemon=True)
    worker.start()
    return worker


def ahead(imports: str) -> int:
    """The check, its installed modules imported while the release is on its way; then the release's request
    from fd 3, checked as a fresh process would."""
    names = read_names(imports)
    stop, why = threading.Event(), ["no list of the live release's imports"]
    t0 = time.monotonic()
    held = len(sys.modules)
    worker = preimport_niced(names, stop, why)
    with os.fdopen(3, "rb") as fd3:
        request = fd3.read()
    waited = time.monotonic() - t0
    stop.set()
    worker.join()
    if not request:
        return 0
    # The list's names are where imports started: one name imports many; say how many modules came.
    note = f"ahead: {len(sys.modules) - held} modules imported ahead ({waited:.2f}s before the release)"
    return check_request(request, note + (f"; {why[0]}" if why[0] else ""))


def check_request(request: bytes, note: str) -> int:
    """Check the release of `request` (see the docstring above) as `python - ARGS` started in its working dir
    with its environment would, writing `note` first and then the check's words to its log file."""
    fields = [v.decode("utf-8", "surrogateescape") for v in request.split(b"\0")]
    log, cwd, n = fields[0], fields[1], int(fields[2])
    args, env = fields[3 : 3 + n], [e for e in fields[3 + n :] if "=" in e]
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    print(note, flush=True)
    # sys.path[0] is '' (the working dir), then PYTHONPATH's entries, then the stdlib and the venv.
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(e.partition("=")[::2] for e in env)
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[1:1] = extra
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    sys.argv = ["-", *args]
    return check(args)


def warm(imports: str, home: str) -> int:
    """The check kept warm (see the docstring above): it outlives the command that started it, in a session
    of its own, and forks one child per request."""
    os.setsid()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the children are reaped by the kernel
    me = str(os.getpid())
    with open(os.path.join(home, "pid"), "w") as f:
        f.write(me + "\n")
    t0 = time.time()
    names = read_names(imports)
    deadline = time.monotonic() + 60
    while not names and time.monotonic() < deadline and still_mine(home, me):
        time.sleep(0.5)  # a new venv: its list comes once a live process has loaded the app
        names = read_names(imports)
    held = len(sys.modules)
    why = [""]
    preimport_niced(names, threading.Event(), why).join()
    count = len(sys.modules) - held
    since = time.strftime("%H:%M:%S", time.gmtime(t0))
    note = f"warm: {count} modules imported warm (since {since}Z)" + (f"; {why[0]}" if why[0] else "")
    ctl = os.open(os.path.join(home, "ctl"), os.O_RDWR)  # read and write: never an end of file
    with open(os.path.join(home, "ready"), "w") as f:
        f.write(me + "\n")
    buf = b""
    while still_mine(home, me) and os.path.exists(sys.executable):
        if not select.select([ctl], [], [], 60)[0]:
            continue
        buf += os.read(ctl, 4096)
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if os.fork() == 0:
                rc = 125
                try:
                    rc = warm_child(line.decode("utf-8", "surrogateescape"), note)
                finally:
                    os._exit(rc)  # whatever happened, a child never goes on with the parent's loop
    return 0


def still_mine(home: str, me: str) -> bool:
    try:
        with open(os.path.join(home, "pid")) as f:
            return f.read().strip() == me
    except OSError:
        return False


def warm_child(d: str, note: str) -> int:
    """One request of the warm check: its pid, then its exit code, to the fifo d/res."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        res = os.open(os.path.join(d, "res"), os.O_WRONLY | os.O_NONBLOCK)
        os.write(res, f"{os.getpid()}\n".encode())
        with open(os.path.join(d, "req"), "rb") as f:
            request = f.read()
        os.unlink(os.path.join(d, "req"))
    except OSError:
        return 125
    try:
        rc = check_request(request, note)
    except BaseException:  # whatever it was, the fresh check that follows a failure says it
        rc = 125
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.write(res, f"{rc}\n".encode())
    except OSError:  # the deploy gave up waiting
        pass
    return rc


if __name__ == "__main__":
    if sys.argv[1:2] == ["--ahead"]:
        sys.exit(ahead(sys.argv[2]))
    if sys.argv[1:2] == ["--warm"]:
        sys.exit(warm(sys.argv[2], sys.argv[3]))
    sys.exit(check(sys.argv[1:]))
