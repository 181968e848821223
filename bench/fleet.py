"""Fleet benchmark: one `fab -H web1,...,webN deploy` (one .py changed) for N = 1, 2, 5, 10 hosts.

    python3 -m bench.fleet [--runs 3] [--counts 1,2,5,10] [--links loopback,50ms]   (root)

Each host is a network namespace with its own sshd + Apache/mod_wsgi (tests/sandbox.py). The 50 ms
link puts a user-space relay (25 ms each way) in front of every host's sshd. Prints the median time
per host count, its ratio to one host, and the fab process's peak memory (max RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from bench import compile_tool, exit_on_sigterm
from bench.relay import DelayRelay, measure_rtt
from tests.sandbox import REPO_ROOT, DeployUser, Sandbox, app_config, example_repo, random_user


def main() -> int:
    compile_tool()
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--counts", default="1,2,5,10")
    ap.add_argument("--links", default="loopback,50ms")
    ap.add_argument("--reload", default=None, help="reload strategy; touch isolates the tool cost")
    ap.add_argument("--no-health", action="store_true", help="no health check: the app's restart is not waited for")
    args = ap.parse_args()
    counts = [int(n) for n in args.counts.split(",")]
    user = DeployUser.ensure(random_user())
    common = f"/srv/fabdeploy-bench-{os.getpid()}"
    hosts: list[Sandbox] = []
    relays: list[DelayRelay] = []
    rows = []
    try:
        for i in range(max(counts)):
            sb = Sandbox(user, netns=True, host_alias=f"web{i + 1}", common_root=common)
            hosts.append(sb.start())
            relays.append(DelayRelay((sb.bind, sb.ssh_port), 0.025).start())
        base = hosts[0].root / "bench"
        base.mkdir()
        ssh_config = base / "ssh_config"
        text = "".join(sb.ssh_config.read_text() for sb in hosts)
        for i, (sb, r) in enumerate(zip(hosts, relays, strict=True)):
            text += (
                f"Host slow{i + 1}\n    HostName 127.0.0.1\n    Port {r.port}\n    User {user.name}\n    IdentityFile {sb.key}\n"
            )
        ssh_config.write_text(text)
        repo = example_repo(hosts[0], base / "app", "daemon")
        cfg = app_config(hosts[0], listen="*:80", wheels=True)
        if args.reload:
            cfg["reload"] = args.reload
        if args.no_health:
            cfg["health"] = {"enabled": False}
        (repo / "fabric.json").write_text(json.dumps({"deploy": cfg}, indent=2))
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HOME=str(base))
        n_change = [0]

        def fab(names: list[str], *a: str) -> tuple[float, int, float]:
            t = time.perf_counter()
            p = subprocess.Popen(
                [sys.executable, "-m", "fabric", "-S", str(ssh_config), "-H", ",".join(names), *a],
                cwd=repo,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            assert p.stderr is not None
            err = p.stderr.read().decode()
            _, status, usage = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            if p.returncode:
                raise SystemExit(f"fab {' '.join(a)} failed:\n{err}")
            return time.perf_counter() - t, usage.ru_maxrss, usage.ru_utime + usage.ru_stime

        def change() -> None:
            n_change[0] += 1
            views = repo / "movies" / "views.py"
            views.write_text(views.read_text() + f"\n# change {n_change[0]}\n")
            git = "git -c user.email=b@e -c user.name=b"
            subprocess.run(f"git add -A && {git} commit -qm c", shell=True, cwd=repo, check=True)

        all_names = [f"web{i + 1}" for i in range(len(hosts))]
        t_first, _, _ = fab(all_names, "setup")
        t_first2, _, _ = fab(all_names, "deploy")
        print(f"# {len(hosts)} hosts: setup {t_first:.2f}s, first deploy (venvs from shipped wheels) {t_first2:.2f}s")
        health = "off" if args.no_health else "on"
        print(f"# 50ms link: relay RTT {measure_rtt(0.025) * 1000:.1f} ms")
        print(f"# reload: {args.reload or 'default (rolling)'}, health check {health}")
        for link in args.links.split(","):
            prefix = "web" if link == "loopback" else "slow"
            one = None
            for n in counts:
                names = [f"{prefix}{i + 1}" for i in range(n)]
                times, rss, cpu = [], [], []
                for _ in range(args.runs):
                    change()
                    t, m, u = fab(names, "deploy")
                    times.append(t)
                    rss.append(m)
                    cpu.append(u)
                med = statistics.median(times)
                one = one or med
                cpu_med = statistics.median(cpu)
                rows.append((link, n, med, min(times), max(times), med / one, max(rss) / 1024, cpu_med))
                print(
                    f"{link:<9} {n:>2} hosts  median {med:6.2f}s  min {min(times):6.2f}  max {max(times):6.2f}  "
                    f"x{med / one:.2f} of one host  fab max RSS {max(rss) / 1024:.0f} MiB  fab CPU {cpu_med:.2f}s",
                    flush=True,
                )
        print("\n| link | hosts | median s | min | max | x one host | fab max RSS MiB | fab CPU s |")
        print("|---|---|---|---|---|---|---|---|")
        for link, n, med, lo, hi, ratio, mem, cpu_s in rows:
            print(f"| {link} | {n} | {med:.2f} | {lo:.2f} | {hi:.2f} | {ratio:.2f} | {mem:.0f} | {cpu_s:.2f} |")
    finally:
        for r in relays:
            r.stop()
        for sb in hosts:
            sb.stop()
        user.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
