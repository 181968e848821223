"""Settings: read the `deploy:` section of Fabric's config and validate it once into frozen dataclasses.

Where values come from is Fabric/invoke's business (fabric.yaml beside the fabfile, ~/.fabric.yaml,
FABRIC_DEPLOY_* environment variables, `-f FILE`); this module only checks them, so that every
bad value is reported before any host is contacted, with the setting's name and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from deploy.errors import ConfigError

MODES = ("daemon", "embedded")
RELOADS = ("touch", "graceful", "rolling")
SOURCES = ("git", "tree")
OUTPUTS = ("text", "json")
# Stages with these names are production unless they say `production: false`.
PRODUCTION_STAGES = ("production", "prod", "live")
# Names end up as directory names and Apache tokens (WSGIDaemonProcess NAME): keep them plain.
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
PATH_RE = re.compile(r"^/[A-Za-z0-9._/+-]*$")
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9*]([A-Za-z0-9.*-]{0,252})$")
LISTEN_RE = re.compile(r"^(\*|[A-Za-z0-9.:\[\]-]+):[0-9]{1,5}$")
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(:[A-Za-z_][A-Za-z0-9_]*)?$")
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


@dataclass(frozen=True)
class Daemon:
    """WSGIDaemonProcess options; the timeouts follow mod_wsgi-express's defaults."""

    processes: int = 2
    threads: int = 15
    user: str | None = None
    group: str | None = None
    graceful_timeout: int = 15
    eviction_timeout: int = 0
    shutdown_timeout: int = 5
    request_timeout: int = 60
    socket_timeout: int = 60
    inactivity_timeout: int = 0
    maximum_requests: int = 0


@dataclass(frozen=True)
class Apache:
    """How Apache is driven on the host; Debian's defaults, privileged commands through sudo."""

    ctl: str = "apache2ctl"
    sudo: bool = True
    sites_dir: str = "/etc/apache2/sites-available"
    enable: str = "a2ensite"


@dataclass(frozen=True)
class Health:
    """The HTTP check run on each host after every reload, through the vhost (Host: server_name).

    The new release must first answer on `status_path` with its own id; then `path`, when set,
    must answer `status` (and contain `contains`) within `attempts` tries, all within `timeout` seconds.
    """

    enabled: bool = True
    path: str | None = None
    status: int = 200
    contains: str | None = None
    timeout: int = 30
    # A wrong answer from the loaded release is tried again this often, 0.5 s apart, then it fails:
    # a broken release should be rolled back in seconds, not after `timeout`.
    attempts: int = 3


@dataclass(frozen=True)
class Settings:
    """Everything one deploy needs to know, validated."""

    app: str
    deploy_to: str
    server_name: str
    wsgi: str
    hosts: tuple[str, ...] = ()
    stage: str | None = None
    source: str = "git"
    ref: str = "HEAD"
    path: str = "."
    exclude: tuple[str, ...] = (".git", "__pycache__", "*.pyc", ".venv")
    requirements: str = "requirements.txt"
    python: str = "/usr/bin/python3"
    pip_args: tuple[str, ...] = ()
    wheels: bool = False
    mode: str = "daemon"
    reload: str | None = None
    django_settings: str | None = None
    server_aliases: tuple[str, ...] = ()
    listen: str = "*:80"
    static: Mapping[str, str] = field(default_factory=dict)
    shared_dirs: tuple[str, ...] = ()
    shared_files: tuple[str, ...] = ()
    hooks: tuple[Hook, ...] = ()
    keep_releases: int = 5
    environment: Mapping[str, str] = field(default_factory=dict)
    release_header: bool = False
    status_path: str = "/__deploy__/status"
    mpm: Mapping[str, int] = field(default_factory=dict)
    daemon: Daemon = field(default_factory=Daemon)
    apache: Apache = field(default_factory=Apache)
    health: Health = field(default_factory=Health)
    warmup: tuple[str, ...] = ()
    output: str = "text"
    # dev: the WSGI script gets mod_wsgi's code-change monitor (restart on a changed module) and
    # `fab watch` may ship saved files; refused where production is true.
    dev: bool = False
    production: bool = False

    @property
    def reload_strategy(self) -> str:
        """rolling (daemon, 2+ processes), touch (daemon, 1 process; and dev stages), graceful (embedded)."""
        if self.mode == "embedded":
            return "graceful"
        wanted = self.reload or ("touch" if self.dev else "rolling")
        # One process cannot be restarted while another serves: a rolling reload would be a touch.
        return "touch" if wanted == "rolling" and self.daemon.processes < 2 else wanted

    @property
    def reload_note(self) -> str | None:
        if self.reload == "rolling" and self.reload_strategy == "touch":
            return "reload: rolling needs daemon.processes >= 2; with 1 process the WSGI script is touched instead"
        return None

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
    if not isinstance(value, str) or not pattern.match(value) or "/../" in f"{value}/":
        raise ConfigError(f"setting {name} must be {what}, got {value!r}")
    return value


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"setting {name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _section(name: str, cls: type, data: Any) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, Mapping):
        raise ConfigError(f"setting {name} must be a mapping, got {data!r}")
    allowed = {f.name: f for f in fields(cls)}
    _check_keys(f"{name}.", data, list(allowed))
    out: dict[str, Any] = {}
    for key, value in data.items():
        default = allowed[key].default
        if isinstance(default, bool):
            out[key] = _typed(f"{name}.{key}", value, bool, "true or false")
        elif isinstance(default, int):
            if _typed(f"{name}.{key}", value, int, "a whole number") < 0:
                raise ConfigError(f"setting {name}.{key} must not be negative, got {value!r}")
            out[key] = value
        elif value is None:
            out[key] = None
        elif key in ("user", "group"):
            out[key] = _match(f"{name}.{key}", value, NAME_RE, "a user or group name")
        else:
            out[key] = _typed(f"{name}.{key}", value, str, "a string")
    return cls(**out)


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
    for required in ("app", "deploy_to", "server_name", "wsgi"):
        if data.get(required) in (None, ""):
            raise ConfigError(f"missing required setting deploy.{required}")

    s: dict[str, Any] = {"stage": stage}
    s["app"] = _match("app", data["app"], NAME_RE, "a name of letters, digits, '-' or '_' starting with a letter")
    s["deploy_to"] = _match("deploy_to", data["deploy_to"], PATH_RE, "an absolute path of plain characters")
    s["server_name"] = _match("server_name", data["server_name"], HOSTNAME_RE, "a host name")
    s["wsgi"] = _match("wsgi", data["wsgi"], MODULE_RE, "'module' or 'module:callable'")
    s["hosts"] = tuple(hosts) or _str_list("hosts", data.get("hosts", []))
    for key, choices in (("source", SOURCES), ("mode", MODES)):
        if key in data:
            s[key] = _choice(key, data[key], choices)
    if data.get("reload") is not None:
        s["reload"] = _choice("reload", data["reload"], RELOADS)
    for key in ("ref", "path"):
        if key in data:
            s[key] = _typed(key, data[key], str, "a string")
    for key in ("exclude", "pip_args", "server_aliases", "shared_dirs", "shared_files"):
        if key in data:
            s[key] = _str_list(key, data[key])
    for alias in s.get("server_aliases", ()):
        _match("server_aliases", alias, HOSTNAME_RE, "a list of host names")
    for key in ("shared_dirs", "shared_files"):
        for p in s.get(key, ()):
            _match(key, p, REL_PATH_RE, "a list of paths relative to the release")
    if "requirements" in data:
        s["requirements"] = _match("requirements", data["requirements"], REL_PATH_RE, "a path relative to the app")
    if "python" in data:
        s["python"] = _match("python", data["python"], PATH_RE, "an absolute path to the host's python")
    if data.get("django_settings") is not None:
        s["django_settings"] = _match("django_settings", data["django_settings"], MODULE_RE, "a module name")
    if "listen" in data:
        s["listen"] = _match("listen", str(data["listen"]), LISTEN_RE, "ADDRESS:PORT or *:PORT")
    if "status_path" in data:
        s["status_path"] = _match("status_path", data["status_path"], URL_PATH_RE, "a URL path")
    if "keep_releases" in data:
        if _typed("keep_releases", data["keep_releases"], int, "a whole number") < 1:
            raise ConfigError(f"setting keep_releases must be at least 1, got {data['keep_releases']!r}")
        s["keep_releases"] = data["keep_releases"]
    if "wheels" in data:
        s["wheels"] = _typed("wheels", data["wheels"], bool, "true or false")
    if "output" in data:
        s["output"] = _choice("output", data["output"], OUTPUTS)
    s["production"] = _typed("production", data.get("production", stage in PRODUCTION_STAGES), bool, "true or false")
    if "dev" in data:
        s["dev"] = _typed("dev", data["dev"], bool, "true or false")
        where = f"stage {stage!r}" if stage else "this config"
        if s["dev"] and s["production"]:
            raise ConfigError(
                f"setting dev: true is refused in {where}, which is production (production: true or a stage named"
                f" {'/'.join(PRODUCTION_STAGES)}): the code-change monitor restarts the app on every changed file;"
                " set dev only in a development stage"
            )
        if s["dev"] and data.get("mode", "daemon") != "daemon":
            raise ConfigError("setting dev: true needs mode: daemon (the code-change monitor restarts daemon processes)")
    if "release_header" in data:
        s["release_header"] = _typed("release_header", data["release_header"], bool, "true or false")
    s["static"] = _static(data.get("static") or {})
    s["environment"] = _environment(data.get("environment") or {})
    s["hooks"] = _hooks(data.get("hooks") or [])
    s["mpm"] = _mpm(data.get("mpm") or {})
    s["health"] = _health(data.get("health"))
    if "warmup" in data:
        s["warmup"] = _str_list("warmup", data["warmup"])
        for w in s["warmup"]:
            _match("warmup", w, URL_PATH_RE, "a list of URL paths like /movie")
    s["daemon"] = _section("daemon", Daemon, data.get("daemon"))
    s["apache"] = _section("apache", Apache, data.get("apache"))
    if s["daemon"].processes < 1 or s["daemon"].threads < 1:
        raise ConfigError("settings daemon.processes and daemon.threads must be at least 1")
    _match("apache.sites_dir", s["apache"].sites_dir, PATH_RE, "an absolute path")
    _match("apache.ctl", s["apache"].ctl, CMD_RE, "a command name or absolute path")
    if s["apache"].enable:
        _match("apache.enable", s["apache"].enable, CMD_RE, "a command name or absolute path, or empty")
    if s.get("mode") == "embedded" and s.get("reload") in ("touch", "rolling"):
        raise ConfigError(f"setting reload: {s['reload']} needs mode: daemon; embedded mode reloads with graceful")
    return Settings(**s)


def _health(value: Any) -> Health:
    h = _section("health", Health, value)
    if h.path is not None:
        _match("health.path", h.path, URL_PATH_RE, "a URL path like /movie")
    if not 100 <= h.status <= 599:
        raise ConfigError(f"setting health.status must be an HTTP status, got {h.status!r}")
    if h.timeout < 1:
        raise ConfigError("setting health.timeout must be at least 1 (seconds)")
    return h  # type: ignore[no-any-return]


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


def _environment(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"setting environment must map variable names to strings, got {value!r}")
    out = {}
    for key, val in value.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(key)):
            raise ConfigError(f"setting environment has an invalid variable name {key!r}")
        if not isinstance(val, str | int | float) or isinstance(val, bool):
            # Never echo the value: it may be a secret.
            raise ConfigError(f"setting environment.{key} must be a string")
        out[str(key)] = str(val)
    return out


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


def _mpm(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ConfigError(f"setting mpm must map MPM directives to numbers, got {value!r}")
    _check_keys("mpm.", value, list(MPM_KEYS))
    return {k: _typed(f"mpm.{k}", v, int, "a whole number") for k, v in value.items()}
