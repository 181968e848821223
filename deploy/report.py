"""Machine-readable results: the one JSON document a task prints on stdout with --json (schema: result.schema.json)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.errors import DeployError
from deploy.output import Reporter, show

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


__all__ = ["SCHEMA_ID", "TaskRun", "error_info", "schema"]
