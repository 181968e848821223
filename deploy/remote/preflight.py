"""Import the new release's WSGI app in its own venv before the switch (stdlib only; the release's venv python).

Inlined into the phase scripts as the shell function `import_check` (see deploy/remote/__init__.py) and run
by prepare in the release's home dir, with its PYTHONPATH, DJANGO_SETTINGS_MODULE and environment:
    import_check MODULE CALLABLE FACTORY(0|1)
A release that cannot be imported (a module its code needs is missing, settings that raise) fails here,
with the app's own traceback, and never reaches a daemon process; so does a factory named without its ().
"""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback


def main(module: str, name: str, factory: str) -> int:
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


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
