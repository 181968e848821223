"""Benchmarks: each one command that prints numbers (see README "Benchmarks")."""

from __future__ import annotations

import compileall
import signal
import sys
from pathlib import Path


def compile_tool() -> None:
    """Byte-compile the tool's own modules, as installing its package does: from a checkout (and with
    PYTHONDONTWRITEBYTECODE set) every fab process would compile them again, ~0.1 s that users never pay."""
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "deploy"), quiet=1)


def exit_on_sigterm() -> None:
    """A `kill` (SIGTERM) ends the benchmark as Ctrl-C would: its `with` blocks and `finally`s stop the
    sandbox's sshd and Apache and remove its deploy user, which a plain SIGTERM left running."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
