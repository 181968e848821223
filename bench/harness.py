"""What the single-host benchmarks share: a sandbox host reachable on loopback ("sandbox") and through a
50 ms RTT relay ("slow"), a timed fresh `fab` process, and the floor (a fresh process that connects and
runs `true`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.relay import DelayRelay, measure_rtt
from tests.sandbox import REPO_ROOT, DeployUser, Sandbox, random_user

DELAY = 0.025  # each way: ~50 ms RTT


class SlowLinkHost:
    """A sandbox host and a delaying relay in front of its sshd; `with SlowLinkHost() as h:` removes both."""

    def __init__(self) -> None:
        self.user = DeployUser.ensure(random_user())
        self.sb = Sandbox(self.user).start()
        self.relay = DelayRelay((self.sb.bind, self.sb.ssh_port), DELAY).start()
        self.ssh_config = self.sb.root / "bench_ssh_config"
        self.ssh_config.write_text(
            self.sb.ssh_config.read_text()
            + f"Host slow\n    HostName {self.sb.bind}\n    Port {self.relay.port}\n    User {self.user.name}\n"
            f"    IdentityFile {self.sb.key}\n"
        )
        self.env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HOME=str(self.sb.root))

    def __enter__(self) -> SlowLinkHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.relay.stop()
        self.sb.stop()
        self.user.remove()

    @staticmethod
    def alias(link: str) -> str:
        return "sandbox" if link == "loopback" else "slow"

    def describe_link(self) -> str:
        rtt = measure_rtt(DELAY) * 1000
        return f"# link: loopback, and a relay with {DELAY * 1000:.0f} ms each way; measured echo RTT {rtt:.1f} ms"

    def argv(self, alias: str, *args: str) -> list[str]:
        return [sys.executable, "-m", "fabric", "-S", str(self.ssh_config), "-H", alias, *args]

    def fab(self, repo: Path, alias: str, *args: str) -> float:
        """Wall time of one fresh `fab` process; a failure ends the benchmark with fab's stderr."""
        t = time.perf_counter()
        p = subprocess.run(self.argv(alias, *args), cwd=repo, env=self.env, capture_output=True, text=True)
        if p.returncode:
            raise SystemExit(f"fab {' '.join(args)} failed:\n{p.stderr}")
        return time.perf_counter() - t

    def floor(self, alias: str) -> float:
        t = time.perf_counter()
        argv = [sys.executable, "-m", "bench.floor", str(self.ssh_config), alias]
        subprocess.run(argv, cwd=REPO_ROOT, env=self.env, check=True)
        return time.perf_counter() - t
