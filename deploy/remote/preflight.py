"""Import the new release's WSGI app in its own venv before the switch (stdlib only; the release's venv python).

Inlined into the phase scripts as the shell function `import_check` (see deploy/remote/__init__.py) and run
by prepare in the release's home dir, with its PYTHONPATH, DJANGO_SETTINGS_MODULE and environment:
    import_check MODULE CALLABLE FACTORY(0|1) [PATH HOST STATUS]
A release that cannot be imported (a module its code needs is missing, settings that raise) fails here,
with the app's own traceback, and never reaches a daemon process; so does a factory named without its ().
With PATH (embedded mode, which has no idle slot to try a release in before Apache's graceful): the app is
called once with a GET of PATH (Host: HOST) and must answer STATUS; a raise or another status fails too.
"""

from __future__ import annotations

import importlib
import inspect
import io
import sys
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


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) >= 6 and args[3]:
        sys.exit(main_with_call(args[0], args[1], args[2], args[3], args[4], args[5]))
    sys.exit(main(args[0], args[1], args[2]))
