"""The errors a deploy can end with, each with the exit code `fab` returns for it.

    DeployError (1)                  base: the message names what to fix; `host` is set on host errors
    ├── ConfigError (2)              a setting, template or input is wrong; found before any command runs
    ├── ConnectError (3)             a host could not be reached or refused us (DNS, refused, auth, host key)
    ├── LockHeld (4)                 another deploy holds the host's lock, or this deploy lost it
    ├── RemoteError (5)              a step on (or for) the host failed; the live release is untouched or back
    ├── NothingToRollBack (6)        no finished release to go back to (or the one asked for does not exist)
    ├── HealthCheckFailed (7)        the app did not answer as expected after a reload
    ├── NotDeployed (8)              the host has no live release yet (reload, rollback before any deploy)
    ├── CheckFailed (9)              a host lacks a prerequisite (fab check; fab setup checks first): each with its fix
    ├── InMaintenance (10)           a deploy refused: the host is in maintenance (fab maintenance off, --keep-maintenance)
    ├── CommandExited (its code)     fab exec: the command ended non-zero; its exit code is passed through
    └── FleetError (its hosts' code) some hosts of a task failed: each host's error and where every host is
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class DeployError(Exception):
    """Base of every error the tool reports; the message names what to fix."""

    exit_code = 1

    def __init__(self, message: str, host: str | None = None) -> None:
        self.host = host
        super().__init__(message)


class ConfigError(DeployError):
    """A setting is missing, misspelt or of the wrong type; found before any command runs on a host."""

    exit_code = 2


class ConnectError(DeployError):
    """A host could not be reached or refused us (DNS, refused, auth, host key)."""

    exit_code = 3


class LockHeld(DeployError):
    """Another deploy holds the host's lock (or removed ours with `fab unlock --force`)."""

    exit_code = 4


class RemoteError(DeployError):
    """A step on the host failed; carries the host, the step and the output's last lines."""

    exit_code = 5

    def __init__(self, host: str, step: str, message: str, tail: str = "", code: int = 1) -> None:
        self.step = step
        self.tail = tail
        self.code = code  # the phase script's own exit code
        super().__init__(f"{host}: {step} failed: {message}", host)


class NothingToRollBack(DeployError):
    """No finished release to go back to (or the one asked for does not exist)."""

    exit_code = 6


class HealthCheckFailed(DeployError):
    """The app did not answer as expected after a reload."""

    exit_code = 7


class NotDeployed(DeployError):
    """The host has no live release yet: nothing to reload or roll back."""

    exit_code = 8


class CheckFailed(DeployError):
    """A host lacks what the tool needs (`fab check`, and `fab setup` before it changes anything).

    `failed`: the failed checks, each a dict with name, status, detail and fix (the lines that fix it).
    """

    exit_code = 9

    def __init__(self, host: str, failed: Sequence[Mapping[str, Any]]) -> None:
        self.failed = list(failed)
        names = ", ".join(dict.fromkeys(str(f["name"]) for f in self.failed))
        plural = "s" if len(self.failed) != 1 else ""
        lines = [f"{host}: {len(self.failed)} check{plural} failed ({names}); fix, then run fab check"]
        for f in self.failed:
            lines.append(f"  {f['name']}: {f['detail']}")
            lines += [f"    fix: {x}" for x in f["fix"]]
        super().__init__("\n".join(lines), host)


class InMaintenance(DeployError):
    """A deploy refused: the host is in maintenance (`fab maintenance on`); off first, or `--keep-maintenance`."""

    exit_code = 10


class CommandExited(DeployError):
    """`fab exec`: the command ended with a non-zero exit code, which `fab` passes through as its own.

    `codes`: each host's code (the non-zero ones). Several hosts: their code when they agree, else 1.
    """

    def __init__(self, codes: Mapping[str, int]) -> None:
        self.codes = dict(codes)
        found = set(self.codes.values())
        self.exit_code = found.pop() if len(found) == 1 else 1
        hosts = list(self.codes)
        if len(hosts) == 1:
            super().__init__(f"{hosts[0]}: the command exited with {self.codes[hosts[0]]}", hosts[0])
        else:
            where = ", ".join(f"{h} with {c}" for h, c in self.codes.items())
            super().__init__(f"the command exited non-zero on {len(hosts)} hosts: {where}")


class FleetError(DeployError):
    """Some hosts failed; carries each host's error and, per host, what it was left on.

    `hosts`: one dict per host (host, result, release, previous, seconds), as the JSON document has them.
    The exit code is the hosts' own when they agree, else 5.
    """

    def __init__(self, message: str, errors: Mapping[str, BaseException], hosts: Sequence[dict[str, Any]] = ()) -> None:
        self.errors = dict(errors)
        self.hosts = list(hosts)
        codes = {getattr(e, "exit_code", 1) for e in self.errors.values()}
        self.exit_code = codes.pop() if len(codes) == 1 else 5
        details = "; ".join(f"{h}: {short(h, e)}" for h, e in self.errors.items())
        super().__init__(f"{message} ({details})")


def short(host: str, exc: BaseException) -> str:
    """The first line of a host's error, without the 'host: ' it starts with."""
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return msg[len(host) + 2 :] if msg.startswith(f"{host}: ") else msg
