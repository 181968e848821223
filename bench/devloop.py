"""Dev-loop benchmark: `fab plan` against the floor, and `fab watch`'s time from a save to the first
request served by the new code, on loopback and over a 50 ms RTT link.

    python3 -m bench.devloop [--runs 5] [--saves 5]   (root; a sandbox host: real sshd + Apache/mod_wsgi)

plan: wall time of a fresh `fab plan` process after a one-file change (nothing on the host changes), its
SSH commands (from sshd's log) and the ratio to the floor (a fresh process that connects and runs `true`).
watch: a `fab watch --stage dev --interval 0.2` runs; each save rewrites the view's VERSION and the clock
stops when GET /movie (polled every 20 ms, at most 30 s) first answers with it. That includes the poll
interval, the upload, and the daemon processes' restart by the code-change monitor (Django's import).
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import threading
import time

from bench import compile_tool, exit_on_sigterm
from bench.harness import SlowLinkHost
from tests.sandbox import example_repo, set_version


def main() -> int:
    compile_tool()
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="fab plan runs per link")
    ap.add_argument("--saves", type=int, default=5, help="saves per link under fab watch")
    ap.add_argument("--links", default="loopback,50ms")
    args = ap.parse_args()
    rows: list[str] = []
    with SlowLinkHost() as h:
        sb = h.sb
        repo = example_repo(sb, sb.root / "app", "daemon", stages={"dev": {"dev": True}})
        env = h.env
        print(h.describe_link())

        def fab(alias: str, *a: str) -> float:
            return h.fab(repo, alias, *a)

        floor, argv = h.floor, h.argv

        def served() -> str | None:
            status, _, body = sb.get("/movie", host="imdb.test", timeout=5)
            return json.loads(body).get("version") if status == 200 else None

        fab("sandbox", "setup", "--stage", "dev")
        fab("sandbox", "deploy", "--stage", "dev")
        set_version(repo, "planned")  # a committed one-file change for the plan to show
        subprocess.run("git -c user.email=b@e -c user.name=b commit -qam planned", shell=True, cwd=repo, check=True)
        for link in args.links.split(","):
            alias = h.alias(link)
            fl = statistics.median([floor(alias) for _ in range(args.runs)])
            n0 = sb.exec_requests()
            plans = [fab(alias, "plan", "--stage", "dev") for _ in range(args.runs)]
            cmds = (sb.exec_requests() - n0) / args.runs
            p = statistics.median(plans)
            spread = f"{min(plans):.3f} | {max(plans):.3f}"
            rows.append(f"| fab plan | {link} | {p:.3f} s (floor {fl:.3f} s, x{p / fl:.2f}) | {spread} | {cmds:.0f} |")
            print(rows[-1], flush=True)

            proc = subprocess.Popen(
                argv(alias, "watch", "--stage", "dev", "--interval", "0.2", "--seconds", "300"),
                cwd=repo,
                env=env,
                stderr=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
            )
            ready = threading.Event()
            lines: list[str] = []

            def pump(p: subprocess.Popen[str] = proc, ev: threading.Event = ready, out: list[str] = lines) -> None:
                assert p.stderr is not None
                for line in p.stderr:
                    out.append(line)
                    if "watching" in line:
                        ev.set()

            threading.Thread(target=pump, daemon=True).start()
            try:
                if not ready.wait(60):
                    raise SystemExit("fab watch did not start:\n" + "".join(lines))
                took = []
                for i in range(args.saves):
                    version = f"{link}-{i}"
                    t0 = time.perf_counter()
                    set_version(repo, version)
                    while served() != version:
                        if time.perf_counter() - t0 > 30:
                            raise SystemExit(f"save {version} not served in 30 s:\n" + "".join(lines))
                        time.sleep(0.02)
                    took.append(time.perf_counter() - t0)
                    time.sleep(0.5)
            finally:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            w = statistics.median(took)
            rows.append(f"| fab watch: save -> served | {link} | {w:.3f} s | {min(took):.3f} | {max(took):.3f} | 1 per save |")
            print(rows[-1], flush=True)
        print()
        print("| what | link | median | min | max | SSH commands |")
        print("|---|---|---|---|---|---|")
        print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
