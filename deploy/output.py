"""Progress for people (stderr): one line per step, prefixed by the host."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Reporter:
    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.start = time.monotonic()

    def line(self, host: str, text: str) -> None:
        if not self.quiet:
            print(f"[{host}] {text}", file=self.stream, flush=True)

    def event(self, host: str, event: str) -> None:
        """Show a phase script's '@@' event in words."""
        parts = event.split()
        if not parts:
            return
        kind = parts[0]
        if kind == "step" and len(parts) >= 4:
            try:
                seconds = float(parts[2]) - float(parts[3])
            except ValueError:
                seconds = 0.0
            self.line(host, f"{parts[1]:<16} {' '.join(parts[4:])} ({seconds:.2f}s)".rstrip())
        elif kind in ("release", "current", "lock", "app", "mpm", "log", "m", "python", "venv"):
            return  # data for the tool, shown by the task itself
        else:
            self.line(host, " ".join(parts))
