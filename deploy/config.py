"""Settings: read the `deploy:` section of Fabric's config and validate it once into frozen dataclasses.

Where values come from is Fabric/invoke's business (fabric.yaml beside the fabfile, ~/.fabric.yaml,
FABRIC_DEPLOY_* environment variables, `-f FILE`); this module only checks them, so that every
bad value is reported before any host is contacted, with the setting's name and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from deploy.dependencies import KINDS as DEPENDENCY_KINDS
from deploy.errors import ConfigError

MODES = ("daemon", "embedded")
RELOADS = ("touch", "graceful", "rolling")
SOURCES = ("git", "tree")
OUTPUTS = ("text", "json")
INSTALLERS = ("uv", "pip")
# Stages with these names are production unless they say `production: false`.
PRODUCTION_STAGES = ("production", "prod", "live")
# Names end up as directory names and Apache tokens (WSGIDaemonProcess NAME): keep them plain.
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
PATH_RE = re.compile(r"^/[A-Za-z0-9._/+-]*$")
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9*]([A-Za-z0-9.*-]{0,252})$")
LISTEN_RE = re.compile(r"^(\*|[A-Za-z0-9.:\[\]-]+):[0-9]{1,5}$")
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(:[A-Za-z_][A-Za-z0-9_]*)?$")
WSGI_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(:[A-Za-z_][A-Za-z0-9_]*(\(\))?)?$")
URL_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/?=&%-]*$")
CMD_RE = re.compile(r"^[A-Za-z0-9._/+-]+$")
REL_PATH_RE = re.compile(r"^[A-Za-z0-9._+-][A-Za-z0-9._/+-]*$")
MPM_KEYS = (
    "StartServers",
    "MinSpareServers",
    "MaxSpareServers",
    "MaxRequestWorkers",
    "MaxConnectionsPerChild",
    "ServerLimit",
    "ThreadsPerChild",
)


Check = Callable[[str, Any], Any]  # (setting's name, raw value) -> the validated value, or ConfigError


def setting(default: Any, check: Check, factory: Callable[[], Any] | None = None) -> Any:
    """One setting, declared once: its default (MISSING: required; or a `factory`) and how its value is
    checked (field metadata drive `load`, nested sections, and the README reference test)."""
    meta = {"check": check}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def text(pattern: re.Pattern[str] | None = None, what: str = "a string") -> Check:
    if pattern is None:
        return lambda name, v: _typed(name, v, str, what)
    plain: re.Pattern[str] = pattern
    return lambda name, v: _match(name, v, plain, what)


def choice(*choices: str) -> Check:
    return lambda name, v: _choice(name, v, choices)


def number(minimum: int = 0, maximum: int | None = None, what: str = "") -> Check:
    def check(name: str, v: Any) -> int:
        n = _typed(name, v, int, "a whole number")
        if n < minimum or (maximum is not None and n > maximum):
            raise ConfigError(f"setting {name} must be {what or f'at least {minimum}'}, got {v!r}")
        return int(n)

    return check


def flag() -> Check:
    return lambda name, v: _typed(name, v, bool, "true or false")


def strings(pattern: re.Pattern[str] | None = None, what: str = "") -> Check:
    def check(name: str, v: Any) -> tuple[str, ...]:
        items = _str_list(name, v)
        if pattern is not None:
            for item in items:
                _match(name, item, pattern, what)
        return items

    return check


def nullable(check: Check) -> Check:
    return lambda name, v: None if v is None else check(name, v)


def section(cls: type) -> Check:
    return lambda name, v: _section(name, cls, v)


@dataclass(frozen=True)
class Secret:
    """An `environment:` value taken on the deploying machine at deploy time (deploy.secrets resolves it):
    `{env: NAME}` reads the local variable NAME, `{command: "pass show x"}` runs the command (its stdout)."""

    kind: str  # 'env' or 'command'
    ref: str  # the variable's name, or the command line

    def __str__(self) -> str:
        return f"<secret from {self.kind} {self.ref}>"  # never a value: a Secret holds none


SECRET_KINDS = ("env", "command")


@dataclass(frozen=True)
class Hook:
    """A command run in the new release (venv active) before the switch, e.g. Django's migrate."""

    name: str
    run: str
    # Run only when a changed path (vs the live release) matches one of these globs; empty = always.
    when_changed: tuple[str, ...] = ()
    # What the hook makes inside the release; when it is skipped these are hard-linked from the live one.
    outputs: tuple[str, ...] = ()
    # With several hosts: run on the first one only (e.g. migrate on a shared database).
    once: bool = False


_COUNT = number(0, what="a whole number, not negative")
_USER = nullable(text(NAME_RE, "a user or group name"))


@dataclass(frozen=True)
class Daemon:
    """WSGIDaemonProcess options; the timeouts follow mod_wsgi-express's defaults."""

    processes: int = setting(2, number(1))
    threads: int = setting(15, number(1))
    # Blue/green: WSGIDaemonProcess groups a deploy loads and checks, then flips traffic to
    # (deploy/remote/slots.sh). 3: the live one, the previous release (a rollback's flip) and a spare with
    # Python started, which loads the next release without a restart. 2: no spare, the idle one restarts.
    # 1: one group, reloaded in place (`reload`).
    slots: int = setting(3, number(1, 3, "1, 2 or 3"))
    # The spare imports ahead what the live release imported from the stdlib and the venv (slot.wsgi.j2).
    import_ahead: bool = setting(True, flag())
    user: str | None = setting(None, _USER)
    group: str | None = setting(None, _USER)
    graceful_timeout: int = setting(15, _COUNT)
    eviction_timeout: int = setting(0, _COUNT)
    shutdown_timeout: int = setting(5, _COUNT)
    request_timeout: int = setting(60, _COUNT)
    socket_timeout: int = setting(60, _COUNT)
    inactivity_timeout: int = setting(0, _COUNT)
    maximum_requests: int = setting(0, _COUNT)


_CMD = text(CMD_RE, "a command name or absolute path")


@dataclass(frozen=True)
class Apache:
    """How Apache is driven on the host; Debian's defaults, privileged commands through sudo."""

    ctl: str = setting("apache2ctl", _CMD)
    sudo: bool = setting(True, flag())
    sites_dir: str = setting("/etc/apache2/sites-available", text(PATH_RE, "an absolute path"))
    enable: str = setting("a2ensite", lambda n, v: v if v == "" else _match(n, v, CMD_RE, "a command name, or empty"))


@dataclass(frozen=True)
class Health:
    """The HTTP check run on each host after every reload, through the vhost (Host: server_name).

    The new release must first answer on `status_path` with its own id; then `path`, when set,
    must answer `status` (and contain `contains`) within `attempts` tries, all within `timeout` seconds.
    """

    enabled: bool = setting(True, flag())
    path: str | None = setting(None, nullable(text(URL_PATH_RE, "a URL path like /movie")))
    status: int = setting(200, number(100, 599, "an HTTP status"))
    contains: str | None = setting(None, nullable(text()))
    timeout: int = setting(30, number(1, what="at least 1 (seconds)"))
    # A wrong answer from the loaded release is tried again this often, 0.5 s apart, then it fails:
    # a broken release should be rolled back in seconds, not after `timeout`.
    attempts: int = setting(3, _COUNT)
    # Extra request headers of the check, e.g. {X-Forwarded-Proto: https} for an app that redirects plain http.
    headers: Mapping[str, str] = setting(MISSING, lambda n, v: _headers(n, v), dict)  # defined below


_REL_PATHS = strings(REL_PATH_RE, "a list of paths relative to the release")


@dataclass(frozen=True)
class Settings:
    """Everything one deploy needs to know, validated. Each field is one setting of `deploy:` (but `stage`)."""

    app: str = setting(MISSING, text(NAME_RE, "a name of letters, digits, '-' or '_' starting with a letter"))
    deploy_to: str = setting(MISSING, text(PATH_RE, "an absolute path of plain characters"))
    server_name: str = setting(MISSING, text(HOSTNAME_RE, "a host name"))
    wsgi: str = setting(MISSING, text(WSGI_RE, "'module', 'module:callable' or a factory 'module:create_app()'"))
    hosts: tuple[str, ...] = setting((), strings())
    stage: str | None = None  # which stage these settings are for: not a setting itself
    source: str = setting("git", choice(*SOURCES))
    ref: str = setting("HEAD", text())
    path: str = setting(".", text())
    exclude: tuple[str, ...] = setting((".git", "__pycache__", "*.pyc", ".venv"), strings())
    # What the venv installs (deploy/dependencies.py): auto takes exactly one of `requirements`,
    # uv.lock, poetry.lock, else pyproject.toml's dependency list. Setting `requirements` alone means
    # that file (null: no dependencies).
    dependencies: str = setting("auto", choice(*DEPENDENCY_KINDS))
    requirements: str | None = setting("requirements.txt", nullable(text(REL_PATH_RE, "a path relative to the app")))
    # Who builds the venv on the host: uv (shipped by the tool when the host lacks this version) or pip.
    installer: str = setting("uv", choice(*INSTALLERS))
    # Where the code imports from and runs, relative to the release: the daemon's python-path and home
    # (its working directory), the same for hooks (seed 000's layout: python_path [imdb], home imdb).
    python_path: tuple[str, ...] = setting((".",), strings(REL_PATH_RE, "a list of paths relative to the release"))
    home: str = setting(".", text(REL_PATH_RE, "a path relative to the release"))
    # Import the new release's WSGI app in its venv before the switch (deploy/remote/preflight.py).
    import_check: bool = setting(True, flag())
    # Without slots: a process left on the host after each switch, with the live venv's modules imported,
    # that the next deploy's import check forks from (deploy/remote/lib.sh warm_start).
    import_warm: bool = setting(True, flag())
    python: str = setting("/usr/bin/python3", text(PATH_RE, "an absolute path to the host's python"))
    pip_args: tuple[str, ...] = setting((), strings())
    wheels: bool = setting(False, flag())
    mode: str = setting("daemon", choice(*MODES))
    reload: str | None = setting(None, nullable(choice(*RELOADS)))
    django_settings: str | None = setting(None, nullable(text(MODULE_RE, "a module name")))
    server_aliases: tuple[str, ...] = setting((), strings(HOSTNAME_RE, "a list of host names"))
    listen: str = setting("*:80", lambda n, v: _match(n, str(v), LISTEN_RE, "ADDRESS:PORT or *:PORT"))
    static: Mapping[str, str] = setting(MISSING, lambda n, v: _static(v or {}), dict)
    shared_dirs: tuple[str, ...] = setting((), _REL_PATHS)
    shared_files: tuple[str, ...] = setting((), _REL_PATHS)
    hooks: tuple[Hook, ...] = setting((), lambda n, v: _hooks(v or []))
    keep_releases: int = setting(5, number(1))
    # Values: strings, or Secrets resolved on the deploying machine by each deploy (deploy.secrets).
    environment: Mapping[str, str | Secret] = setting(MISSING, lambda n, v: _environment(v or {}), dict)
    release_header: bool = setting(False, flag())
    status_path: str = setting("/__deploy__/status", text(URL_PATH_RE, "a URL path"))
    # `fab maintenance on`: the Retry-After (seconds) of its 503 answers.
    maintenance_retry_after: int = setting(600, number(0))
    mpm: Mapping[str, int] = setting(MISSING, lambda n, v: _mpm(v or {}), dict)
    daemon: Daemon = setting(MISSING, section(Daemon), Daemon)
    apache: Apache = setting(MISSING, section(Apache), Apache)
    health: Health = setting(MISSING, section(Health), Health)
    warmup: tuple[str, ...] = setting((), strings(URL_PATH_RE, "a list of URL paths like /movie"))
    output: str = setting("text", choice(*OUTPUTS))
    # dev: the WSGI script gets mod_wsgi's code-change monitor (restart on a changed module) and
    # `fab watch` may ship saved files; refused where production is true.
    dev: bool = setting(False, flag())
    production: bool = setting(False, flag())

    @property
    def slotted(self) -> bool:
        """Daemon slots (blue/green): daemon mode, daemon.slots 2 or 3, not a dev stage (its code-change
        monitor restarts the live processes), no in-place reload (touch, rolling) asked for."""
        return self.mode == "daemon" and self.daemon.slots >= 2 and not self.dev and self.reload not in ("touch", "rolling")

    @property
    def reload_strategy(self) -> str:
        """slots (daemon default), rolling (daemon.slots 1, 2+ processes), touch (1 process; dev stages),
        graceful (embedded)."""
        if self.mode == "embedded":
            return "graceful"
        if self.slotted and self.reload is None:
            return "slots"
        wanted = self.reload or ("touch" if self.dev else "rolling")
        # One process cannot be restarted while another serves: a rolling reload would be a touch.
        return "touch" if wanted == "rolling" and self.daemon.processes < 2 else wanted

    @property
    def reload_note(self) -> str | None:
        if self.reload == "rolling" and self.reload_strategy == "touch":
            return "reload: rolling needs daemon.processes >= 2; with 1 process the WSGI script is touched instead"
        return None

    @property
    def wsgi_target(self) -> tuple[str, str, bool]:
        """`wsgi` as (module, callable, factory): 'pkg.app:create_app()' -> ('pkg.app', 'create_app', True)."""
        module, _, attr = self.wsgi.partition(":")
        return module, attr.removesuffix("()") or "application", attr.endswith("()")

    @property
    def vhost_name(self) -> str:
        return f"{self.app}.conf"

    @property
    def http_port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def http_addr(self) -> str:
        """Where the host itself reaches the vhost (for status and checks run on the host)."""
        addr = self.listen.rsplit(":", 1)[0]
        return "127.0.0.1" if addr in ("*", "0.0.0.0", "[::]") else addr.strip("[]")


def _plain(value: Any) -> Any:
    """invoke's DataProxy objects to plain dicts and lists."""
    if isinstance(value, Mapping) or hasattr(value, "_config"):
        return {str(k): _plain(value[k]) for k in value}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _no_nul(where: str, value: Any) -> None:
    """A NUL byte reaches the host in a shell variable, which cannot hold one: named here, before any host."""
    if isinstance(value, str) and "\0" in value:
        raise ConfigError(f"setting {where} holds a NUL byte (no shell variable can hold one); remove it")
    if isinstance(value, dict):
        for k, v in value.items():
            _no_nul(f"{where}.{k}" if where else str(k), v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _no_nul(f"{where}[{i}]", v)


def _check_keys(where: str, data: Mapping[str, Any], allowed: list[str]) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(f"unknown setting {where}{key!r}; valid settings: {', '.join(sorted(allowed))}")


def _typed(name: str, value: Any, kind: type, what: str) -> Any:
    # bool is an int to Python; a YAML 'yes' for a number is a mistake worth naming.
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"setting {name} must be {what}, got {value!r}")
    if kind is not int and not isinstance(value, kind):
        raise ConfigError(f"setting {name} must be {what}, got {value!r}")
    return value


def _str_list(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"setting {name} must be a list of strings, got {value!r}")
    return tuple(value)


def _match(name: str, value: Any, pattern: re.Pattern[str], what: str) -> str:
    # A '..' component would reach out of the release (or deploy_to): never a valid path here.
    if not isinstance(value, str) or not pattern.match(value) or ".." in value.split("/"):
        raise ConfigError(f"setting {name} must be {what}, got {value!r}")
    return value


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"setting {name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _section(name: str, cls: type, data: Any) -> Any:
    """A nested mapping (daemon:, apache:, health:) checked field by field from its declarations."""
    if data is None:
        return cls()
    if not isinstance(data, Mapping):
        raise ConfigError(f"setting {name} must be a mapping, got {data!r}")
    allowed = {f.name: f for f in fields(cls)}
    _check_keys(f"{name}.", data, list(allowed))
    return cls(**{key: allowed[key].metadata["check"](f"{name}.{key}", value) for key, value in data.items()})


def load(raw: Any, stage: str | None = None, hosts: tuple[str, ...] = ()) -> Settings:
    """Validate the `deploy:` section (with `stage`'s overrides applied) into Settings."""
    data = _plain(raw) if raw is not None else {}
    if not isinstance(data, dict) or not data:
        raise ConfigError("no 'deploy:' section in the Fabric config; add one to fabric.yaml (see README)")
    stages = data.pop("stages", None) or {}
    default_stage = data.pop("default_stage", None)
    if not isinstance(stages, dict):
        raise ConfigError(f"setting stages must be a mapping of stage name to settings, got {stages!r}")
    stage = stage or default_stage
    if stage is not None:
        if stage not in stages:
            valid = ", ".join(sorted(stages)) or "none defined"
            raise ConfigError(f"unknown stage {stage!r}; stages in config: {valid}")
        overrides = stages[stage] or {}
        if not isinstance(overrides, dict):
            raise ConfigError(f"setting stages.{stage} must be a mapping, got {overrides!r}")
        data = _merge(data, overrides)
    allowed = [f.name for f in fields(Settings) if f.name != "stage"]
    _check_keys("", data, allowed)
    _no_nul("", data)
    for required in (f.name for f in fields(Settings) if f.default is MISSING and f.default_factory is MISSING):
        if data.get(required) in (None, ""):
            raise ConfigError(f"missing required setting deploy.{required}")

    s: dict[str, Any] = {"stage": stage}
    for f in fields(Settings):
        if f.name in data and f.metadata:
            s[f.name] = f.metadata["check"](f.name, data[f.name])
    if hosts:
        s["hosts"] = tuple(hosts)
    # The rules between settings.
    shared = [*s.get("shared_dirs", ()), *s.get("shared_files", ())]
    for p in shared:
        for q in shared:
            if p != q and q.startswith(p.rstrip("/") + "/"):
                kind = "shared_dirs" if q in s.get("shared_dirs", ()) else "shared_files"
                raise ConfigError(f"setting {kind}: {q} is inside shared path {p}; list {p} only (it is shared whole)")
        if shared.count(p) > 1:
            raise ConfigError(f"setting shared_dirs/shared_files: {p} is listed twice")
    if "requirements" in s and s.get("dependencies", "auto") == "auto":
        s["dependencies"] = "requirements" if s["requirements"] else "none"
    if s.get("dependencies") == "requirements" and "requirements" in s and not s["requirements"]:
        raise ConfigError("setting dependencies: requirements needs deploy.requirements (a file), not null")
    s["production"] = s.get("production", stage in PRODUCTION_STAGES)
    if s.get("dev"):
        where = f"stage {stage!r}" if stage else "this config"
        if s["production"]:
            raise ConfigError(
                f"setting dev: true is refused in {where}, which is production (production: true or a stage named"
                f" {'/'.join(PRODUCTION_STAGES)}): the code-change monitor restarts the app on every changed file;"
                " set dev only in a development stage"
            )
        if s.get("mode", "daemon") != "daemon":
            raise ConfigError("setting dev: true needs mode: daemon (the code-change monitor restarts daemon processes)")
    if s.get("mode") == "embedded" and s.get("reload") in ("touch", "rolling"):
        raise ConfigError(f"setting reload: {s['reload']} needs mode: daemon; embedded mode reloads with graceful")
    return Settings(**s)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _static(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"setting static must map URL paths to release paths, got {value!r}")
    out = {}
    for url, path in value.items():
        _match("static (URL)", url, URL_PATH_RE, "a URL path like /static/")
        _match(f"static[{url}]", path, REL_PATH_RE, "a path relative to the release")
        out[url] = path
    return out


def _environment(value: Any) -> dict[str, str | Secret]:
    if not isinstance(value, dict):
        raise ConfigError(f"setting environment must map variable names to strings, got {value!r}")
    out: dict[str, str | Secret] = {}
    for key, val in value.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(key)):
            raise ConfigError(f"setting environment has an invalid variable name {key!r}")
        if isinstance(val, dict):
            out[str(key)] = _secret(f"environment.{key}", val)
            continue
        if not isinstance(val, str | int | float) or isinstance(val, bool):
            # Never echo the value: it may be a secret.
            raise ConfigError(
                f"setting environment.{key} must be a string, {{env: LOCAL_VARIABLE}} or {{command: \"pass show ...\"}}"
            )
        out[str(key)] = str(val)
    return out


def _secret(name: str, value: dict[Any, Any]) -> Secret:
    """`{env: NAME}` or `{command: CMD}`: the shape only (the value is read by each deploy, deploy.secrets)."""
    if len(value) != 1 or next(iter(value)) not in SECRET_KINDS:
        raise ConfigError(f"setting {name} must have exactly one key, env or command, got keys {sorted(map(str, value))}")
    kind, ref = next(iter(value.items()))
    if kind == "env" and (not isinstance(ref, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", ref)):
        raise ConfigError(f"setting {name}.env must be the name of a variable of the deploying machine, got {ref!r}")
    if kind == "command" and (not isinstance(ref, str) or not ref.strip()):
        raise ConfigError(f"setting {name}.command must be a shell command, got {ref!r}")
    return Secret(str(kind), str(ref))


def _hooks(value: Any) -> tuple[Hook, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"setting hooks must be a list of {{name, run}}, got {value!r}")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {"name": item.split()[0] if item.split() else f"hook{i}", "run": item}
        if not isinstance(item, dict):
            raise ConfigError(f"setting hooks[{i}] must be a mapping with 'name' and 'run', got {item!r}")
        _check_keys(f"hooks[{i}].", item, ["name", "run", "when_changed", "outputs", "once"])
        run = item.get("run")
        if not isinstance(run, str) or not run.strip():
            raise ConfigError(f"setting hooks[{i}].run must be a shell command")
        name = item.get("name") or run.split()[0]
        _match(f"hooks[{i}].name", name, re.compile(r"^[A-Za-z0-9._-]+$"), "a plain name")
        when = _str_list(f"hooks[{i}].when_changed", item.get("when_changed", []))
        outputs = _str_list(f"hooks[{i}].outputs", item.get("outputs", []))
        for p in outputs:
            _match(f"hooks[{i}].outputs", p, REL_PATH_RE, "a list of paths relative to the release")
        once = _typed(f"hooks[{i}].once", item.get("once", False), bool, "true or false")
        out.append(Hook(name=name, run=run, when_changed=when, outputs=outputs, once=once))
    return tuple(out)


def _headers(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"setting {name} must map header names to values, got {value!r}")
    out = {}
    for key, val in value.items():
        if not re.match(r"^[A-Za-z0-9-]+$", str(key)) or not isinstance(val, str) or any(c in val for c in "\r\n"):
            raise ConfigError(f"setting {name} must map header names (letters, digits, '-') to one-line strings")
        out[str(key)] = val
    return out


def _mpm(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ConfigError(f"setting mpm must map MPM directives to numbers, got {value!r}")
    _check_keys("mpm.", value, list(MPM_KEYS))
    return {k: _typed(f"mpm.{k}", v, int, "a whole number") for k, v in value.items()}
