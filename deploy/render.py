"""Render the WSGI script, the Apache vhost and the maintenance page from conf_templates/ (Jinja2, StrictUndefined)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from deploy.config import Settings
from deploy.errors import ConfigError
from deploy.secrets import plain

PACKAGED = Path(__file__).parent / "conf_templates"
CHECKOUT = Path(__file__).parent.parent / "conf_templates"
WSGI_TEMPLATE = "app.wsgi.j2"
VHOST_TEMPLATE = "vhost.conf.j2"
SLOT_TEMPLATE = "slot.wsgi.j2"  # the one WSGI script of every daemon slot
SLOT_NAMES = ("a", "b", "c")  # daemon.slots of them; the third is the spare (deploy/remote/slots.sh)
MAINTENANCE_TEMPLATE = "maintenance.html.j2"


def template_dirs(project_dir: Path | None) -> list[str]:
    """The project's own conf_templates/ first (to override ours), then the ones we ship."""
    dirs = [project_dir / "conf_templates"] if project_dir else []
    dirs += [PACKAGED, CHECKOUT]
    return [str(d) for d in dirs if d.is_dir()]


def context(s: Settings, release_id: str, revision: str) -> dict[str, object]:
    current = f"{s.deploy_to}/current"
    module, attr, factory = s.wsgi_target
    # Where the code imports from (python-path) and runs (home), below `current`.
    paths = [current if p in (".", "") else f"{current}/{p.strip('/')}" for p in s.python_path]
    slots_dir = f"{s.deploy_to}/slots"
    names = SLOT_NAMES[: s.daemon.slots] if s.slotted else ()

    def below(base: str, p: str) -> str:
        return base if p in (".", "") else f"{base}/{p.strip('/')}"

    return {
        "slots": s.slotted,
        "slot_names": names,
        "slots_dir": slots_dir,
        "slot_script": f"{slots_dir}/app.wsgi",
        "slot_python_path": {x: [below(f"{slots_dir}/{x}", p) for p in s.python_path] for x in names},
        "slot_home": {x: below(f"{slots_dir}/{x}", s.home) for x in names},
        "home_rel": "" if s.home in (".", "") else s.home.strip("/"),
        "rel_python_path": list(s.python_path),
        "app": s.app,
        "mode": s.mode,
        "reload": s.reload_strategy,
        "release_id": release_id,
        "revision": revision,
        "deploy_to": s.deploy_to,
        "current": current,
        "release_dir": f"{s.deploy_to}/releases/{release_id}",
        "venv": f"{current}/.venv",
        "script": f"{current}/.release/app.wsgi",
        "script_dir": f"{current}/.release",
        "run_dir": f"{s.deploy_to}/shared/run",
        "logs_dir": f"{s.deploy_to}/logs",
        "maintenance": f"{s.deploy_to}/maintenance",
        "maintenance_retry_after": s.maintenance_retry_after,
        "module": module,
        "callable": attr,
        "factory": factory,
        "python_path": paths,
        "home": current if s.home in (".", "") else f"{current}/{s.home.strip('/')}",
        "django_settings": s.django_settings,
        "environment": plain(s.environment),
        "server_name": s.server_name,
        "server_aliases": s.server_aliases,
        "listen": s.listen,
        "static": dict(s.static),
        "mpm": dict(s.mpm),
        "daemon": s.daemon,
        "release_header": s.release_header,
        "status_path": s.status_path,
        "dev": s.dev,
    }


def preload() -> None:
    """Start importing Jinja2 (~20 ms of CPU) in a thread: fab deploy calls this before it reads its source,
    whose git commands leave the interpreter idle while they run, and render's own import then finds it
    done or waits for it (Python's import lock). A failed import here is render's to report."""

    def load() -> None:
        try:
            import jinja2  # noqa: F401
        except ImportError:
            pass

    threading.Thread(target=load, name="fabdeploy-jinja2", daemon=True).start()


def _environment(project_dir: Path | None) -> Any:
    import jinja2  # here, not at the top: rollback, reload and status never render, and start faster

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dirs(project_dir)),
        bytecode_cache=_bytecode_cache(jinja2),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["pyrepr"] = repr
    return env


# Compiled templates, keyed by Jinja2 on each template's name and source: compiling the three templates was
# ~30 ms of every deploy.
TEMPLATE_CACHE = Path.home() / ".cache" / "fabdeploy" / "templates"


def _bytecode_cache(jinja2: Any) -> Any:
    try:
        TEMPLATE_CACHE.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None  # a cache only: without it the templates are compiled each time, with the same result
    return jinja2.FileSystemBytecodeCache(str(TEMPLATE_CACHE))


def _render(env: Any, template: str, ctx: dict[str, object], project_dir: Path | None) -> str:
    import jinja2

    try:
        return str(env.get_template(template).render(ctx))
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"template {exc.filename or template} line {exc.lineno}: {exc.message}") from exc
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"template {template}: {exc.message}; define it or remove it from the template") from exc
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(f"template {exc.name} not found in {', '.join(template_dirs(project_dir))}") from exc


def render(s: Settings, release_id: str, revision: str, project_dir: Path | None = None) -> dict[str, str]:
    """{'app.wsgi': ..., 'vhost.conf': ...} for this release; a template error names the file and line."""
    env = _environment(project_dir)
    ctx = context(s, release_id, revision)
    templates = (("app.wsgi", WSGI_TEMPLATE), ("vhost.conf", VHOST_TEMPLATE), ("slot.wsgi", SLOT_TEMPLATE))
    return {name: _render(env, template, ctx, project_dir) for name, template in templates}


def maintenance_page(s: Settings, project_dir: Path | None = None, message: str | None = None) -> str:
    """The page `fab maintenance on` shows (conf_templates/maintenance.html.j2; `message` is HTML-escaped)."""
    ctx: dict[str, object] = {
        "app": s.app,
        "server_name": s.server_name,
        "message": message or "",
        "retry_after": s.maintenance_retry_after,
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return _render(_environment(project_dir), MAINTENANCE_TEMPLATE, ctx, project_dir)
