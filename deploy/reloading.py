"""Reload strategies (touch, rolling, graceful) and the post-reload health check: what the phase scripts get.

- touch: the WSGI script's mtime changes; mod_wsgi restarts all daemon processes of the group on the
  next request (hard `shutdown-timeout`; long requests can be cut).
- rolling (daemon default with 2+ processes): SIGUSR1 to one daemon process at a time (mod_wsgi's
  graceful path: `eviction-timeout`, else `graceful-timeout`), waiting until its replacement has loaded
  the app (preloaded via process-group/application-group) before the next. Needs `WSGIScriptReloading Off`
  in the vhost so that a changed script does not race the signals; the vhost template sets it.
- graceful (embedded default, and whenever the vhost changed): `apachectl graceful`.

The functions themselves are shell (deploy/remote/lib.sh: reload_app, reload_rolling, http_check) so
that a reload and its check cost one SSH command.
"""

from __future__ import annotations

import dataclasses
import json

from deploy.config import RELOADS, Settings
from deploy.errors import ConfigError
from deploy.remote import Value


def http_base(s: Settings) -> str:
    host = f"[{s.http_addr}]" if ":" in s.http_addr else s.http_addr
    return f"http://{host}:{s.http_port}"


def variables(s: Settings) -> dict[str, Value]:
    d = s.daemon
    return {
        "DAEMON_USER": d.user or "",
        "DAEMON_GROUP": d.group or "",
        "DAEMON_PROCESSES": d.processes,
        "SLOTS": s.daemon.slots if s.slotted else 1,
        # Worst case for one process: its requests' grace, its shutdown, then loading the app again.
        "ROLL_TIMEOUT": max(d.eviction_timeout, d.graceful_timeout) + d.shutdown_timeout + 60,
        "HTTP_BASE": http_base(s),
        "SERVER_NAME": s.server_name,
        "STATUS_PATH": s.status_path,
        "HEALTH": s.health.enabled,
        "HEALTH_PATH": s.health.path or "",
        "HEALTH_STATUS": s.health.status,
        "HEALTH_CONTAINS": s.health.contains or "",
        "HEALTH_TIMEOUT": s.health.timeout,
        "HEALTH_ATTEMPTS": max(1, s.health.attempts),
        "HEALTH_HEADERS": json.dumps(dict(s.health.headers)) if s.health.headers else "",
        "WARMUP": list(s.warmup),
        "NO_ROLLBACK": False,
    }


def with_strategy(s: Settings, strategy: str | None) -> Settings:
    """Settings for a one-off `fab reload --strategy X`; refuses what the rendered vhost cannot do."""
    if not strategy:
        return s
    if strategy not in RELOADS:
        raise ConfigError(f"--strategy must be one of {', '.join(RELOADS)}, got {strategy!r}")
    if s.mode == "embedded" and strategy != "graceful":
        raise ConfigError(f"--strategy {strategy} needs daemon mode; embedded mode reloads with graceful")
    if strategy == "touch" and s.reload_strategy == "rolling":
        raise ConfigError(
            "--strategy touch does nothing with this vhost (WSGIScriptReloading Off for rolling); use rolling or graceful"
        )
    return dataclasses.replace(s, reload=strategy)
