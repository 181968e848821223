"""Secrets of `environment:` taken on the deploying machine: `{env: NAME}` and `{command: CMD}`, resolved once per deploy.

A value is read from the local environment or a command's stdout (`pass show imdb/secret_key`, `op read ...`,
`vault kv get -field=...`) before any host is contacted; a missing variable or a failing command is a
ConfigError (exit 2) naming the variable or the command, never the value. Resolved values travel as the
other environment values do (inside the archive, masked in plans) and are never printed or logged.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Mapping

from deploy.config import Secret, Settings
from deploy.errors import ConfigError

COMMAND_TIMEOUT = 60  # a password manager may ask for a passphrase once; longer means it hangs


def resolve(s: Settings, environ: Mapping[str, str] | None = None) -> Settings:
    """`s` with every Secret of `environment` replaced by its value (a command run once even if named twice)."""
    if not any(isinstance(v, Secret) for v in s.environment.values()):
        return s
    env = os.environ if environ is None else environ
    outputs: dict[str, str] = {}
    values: dict[str, str | Secret] = {}
    for key, value in s.environment.items():
        if not isinstance(value, Secret):
            values[key] = value
        elif value.kind == "env":
            if value.ref not in env:
                raise ConfigError(
                    f"environment.{key}: the variable {value.ref} is not set on this machine; export it before fab"
                    " (nothing was sent to any host)"
                )
            values[key] = env[value.ref]
        else:
            if value.ref not in outputs:
                outputs[value.ref] = _command(key, value.ref)
            values[key] = outputs[value.ref]
    return dataclasses.replace(s, environment=values)


def _command(key: str, command: str) -> str:
    """The command's stdout without its trailing newlines (as `$(...)` gives it); its stderr only says why it failed."""
    try:
        p = subprocess.run(
            command, shell=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=COMMAND_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(f"environment.{key}: the command `{command}` did not finish in {COMMAND_TIMEOUT}s") from exc
    if p.returncode != 0:
        # stderr is the command's own message ("not in the password store"); stdout, the would-be secret, never shown.
        why = p.stderr.decode(errors="replace").strip().splitlines()
        tail = f": {why[-1][:200]}" if why else ""
        raise ConfigError(
            f"environment.{key}: the command `{command}` failed (exit {p.returncode}){tail} (nothing was sent to any host)"
        )
    value = p.stdout.decode(errors="replace").rstrip("\n")
    if not value:
        raise ConfigError(f"environment.{key}: the command `{command}` printed nothing (nothing was sent to any host)")
    return value


def plain(environment: Mapping[str, str | Secret]) -> dict[str, str]:
    """The environment as strings, for what ships it (the WSGI script, `.release/env.sh`); a Secret still
    unresolved here is a bug of the caller, refused rather than shipped as its description."""
    out = {}
    for key, value in environment.items():
        if isinstance(value, Secret):
            raise ConfigError(f"environment.{key} comes from {value.kind} and was not resolved (deploy.secrets.resolve)")
        out[key] = value
    return out


__all__ = ["plain", "resolve"]
