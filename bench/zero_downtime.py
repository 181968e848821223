"""Zero-downtime benchmark: real `fab reload`s and `fab deploy`s under HTTP load, per strategy and profile.

    python3 -m bench.zero_downtime [--duration 20] [--only slots,rolling] [--runs 1]   (root; ~12 min with defaults)

A sandbox host (real sshd + Apache 2.4/mod_wsgi, event MPM for daemon mode, prefork for embedded)
runs the example app (daemon: processes=2 threads=15). A second process (bench/load.py) sends load;
at 25% of the run a `fab reload`, at 60% a `fab deploy` with a code change (strategy `slots`, the default:
a `fab deploy` at 25%, a `fab rollback` at 60%; `vhost`: a deploy at 25% whose vhost changed, a new server
alias, so that Apache's graceful restarts both slots). Profiles:
  plain      ~200 req/s from 16 connections, a new connection per request
  slow       plain + 4 connections looping on a 2 s view + 2.5/4.5/7 s requests in flight at each action
  keepalive  plain on kept-alive connections
Then deploys of broken releases under plain load, with slots (`broken`: its /movie raises; `import`: it
cannot be imported, import check off so that it reaches the idle slot) and with `daemon.slots: 1`
(`broken-rolling`): how many requests failed, during and in 40 requests after `fab` returned.
Last, the daemon processes' resident memory with one slot, two, and three (two and the spare).
Gap = longest time in which no request completed; "in fab" is the longest gap overlapping a `fab` command
(from its process start to its exit), "quiet" the longest one in the same run with no `fab` running (a
control inside the run). `--nice-client N` runs `fab` under `nice -n N`: here the deploying machine shares
the host's 2 cores, where in production it is another machine. "stale" = /movie requests started after the
deploy command returned that were answered by another release than the new one (must be 0).
`--runs N` repeats each strategy's profiles N times; with `control` and `slots` both chosen, each slots run
follows a control run of the same profile (the same config, no fab), so that the VM's drift hits both alike;
the last table gives each one's median longest gap ("in fab" for a strategy) and its ratio to the control's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import compile_tool, exit_on_sigterm
from tests.sandbox import REPO_ROOT, DeployUser, Sandbox, app_config, example_repo, fab_argv, random_user

PROFILES: dict[str, dict[str, Any]] = {
    "plain": {"connections": 16, "rate": 200, "keepalive": False, "slow_loops": 0},
    "slow": {"connections": 16, "rate": 200, "keepalive": False, "slow_loops": 4},
    "keepalive": {"connections": 16, "rate": 200, "keepalive": True, "slow_loops": 0},
}
HEALTH = {"path": "/movie", "contains": "Godfather", "timeout": 30}


class Host:
    def __init__(self, sb: Sandbox, mode: str, nice: int = 0) -> None:
        self.sb = sb
        self.nice = nice
        self.windows: list[tuple[float, float]] = []  # (start, end) of every fab command, for the gap's place
        self.mode = mode
        self.repo = example_repo(sb, sb.root / "app", mode, health=HEALTH)
        self.env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HOME=str(sb.root))
        self.n = 0

    def fab(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = fab_argv(self.sb, *args)
        if self.nice:
            argv = ["nice", "-n", str(self.nice), *argv]
        t0 = time.time()
        p = subprocess.run(argv, cwd=self.repo, env=self.env, capture_output=True, text=True)
        self.windows.append((t0, time.time()))
        if check and p.returncode:
            raise SystemExit(f"fab {' '.join(args)} failed:\n{p.stderr}")
        return p

    def configure(self, reload: str | None, **over: Any) -> None:
        cfg = app_config(self.sb, mode=self.mode, health=HEALTH)
        if reload and reload != "slots":
            cfg["reload"] = reload
        cfg.update(over)
        (self.repo / "fabric.json").write_text(json.dumps({"deploy": cfg}, indent=2))
        self.commit("config")

    def commit(self, msg: str) -> None:
        git = "git -c user.email=b@e -c user.name=b"
        subprocess.run(f"git add -A && {git} commit --allow-empty -qm {msg}", shell=True, cwd=self.repo, check=True)

    def change_code(self, broken: bool = False, unimportable: bool = False) -> None:
        self.n += 1
        views = self.repo / "movies" / "views.py"
        text = views.read_text().split("\n# bench change")[0]
        text = text.replace('    raise RuntimeError("bench: broken")\n', "").replace("import nosuchmodule_bench  # noqa\n", "")
        if broken:
            text = text.replace('    movies = [{"title"', '    raise RuntimeError("bench: broken")\n    movies = [{"title"')
        if unimportable:
            text = "import nosuchmodule_bench  # noqa\n" + text
        views.write_text(text + f"\n# bench change {self.n}\n")
        self.commit(f"change-{self.n}")

    def memory_kib(self) -> int:
        """Resident memory of the app's live daemon processes (their ready markers; a waiting spare's too)."""
        total = 0
        run = self.sb.deploy_to / "imdb" / "shared" / "run"
        for f in [*run.glob("ready.*"), *run.glob("spare.*")]:
            try:
                status = Path(f"/proc/{f.name.split('.')[1]}/status").read_text()
            except OSError:
                continue
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
        return total

    def current(self) -> str:
        return os.readlink(self.sb.deploy_to / "imdb" / "current").rsplit("/", 1)[-1]


def run_load(
    h: Host, profile: str, duration: float, actions: bool, broken: str | None = None, strategy: str = ""
) -> dict[str, Any]:
    start = time.time() + 1.0
    at_reload, at_deploy = duration * 0.25, duration * 0.6
    spec = {
        "host": h.sb.bind,
        "port": h.sb.http_port,
        "vhost": "imdb.test",
        "duration": duration,
        "start_at": start,
        **PROFILES[profile],
    }
    if profile == "slow" and actions:
        spec["probes"] = [[at - 0.5, sec] for at in (at_reload, at_deploy) for sec in (2.5, 4.5, 7)]
    with tempfile.TemporaryDirectory() as tmp:
        spec_file, out_file = Path(tmp) / "spec.json", Path(tmp) / "out.jsonl"
        spec_file.write_text(json.dumps(spec))
        loader = subprocess.Popen([sys.executable, "-m", "bench.load", str(spec_file), str(out_file)], cwd=REPO_ROOT)
        events: dict[str, Any] = {}

        def act() -> None:
            if broken:
                time.sleep(max(0.0, start + at_reload - time.time()))
                before = h.current()
                h.change_code(broken=broken != "import", unimportable=broken == "import")
                t0 = time.time()
                p = h.fab("deploy", check=False)
                events.update(broken_t0=t0, broken_t1=time.time(), rc=p.returncode, old=before, err=p.stderr.strip()[-300:])
                h.change_code()
                return
            time.sleep(max(0.0, start + at_reload - time.time()))
            if strategy == "vhost":
                # A deploy whose vhost changed (a new server alias): Apache's graceful restarts both slots.
                h.n += 1
                h.configure(None, server_aliases=[f"alias{h.n}.test"])
                h.fab("deploy")
            elif strategy == "slots":
                h.change_code()
                h.fab("deploy")
                time.sleep(max(0.0, start + at_deploy - time.time()))
                h.fab("rollback")
            else:
                h.fab("reload")
                time.sleep(max(0.0, start + at_deploy - time.time()))
                h.change_code()
                h.fab("deploy")
            events.update(deployed_at=time.time(), release=h.current())

        t = threading.Thread(target=act)
        h.windows.clear()
        if actions:
            t.start()
        loader.wait(timeout=duration + 120)
        if actions:
            t.join()
        results = [json.loads(line) for line in out_file.read_text().splitlines()]
    events["windows"] = list(h.windows)
    return analyse(results, start, duration, events)


def analyse(results: list[dict[str, Any]], start: float, duration: float, ev: dict[str, Any]) -> dict[str, Any]:
    movie = [r for r in results if r["path"] == "/movie"]
    ok_lat = sorted((r["t1"] - r["t0"]) * 1000 for r in movie if r["kind"] == "ok")
    kinds: dict[str, int] = {}
    for r in results:
        if r["kind"] != "ok":
            kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    ends = sorted([start] + [r["t1"] for r in results if start <= r["t1"] <= start + duration] + [start + duration])
    gaps = list(zip(ends, ends[1:], strict=False))
    gap = max(b - a for a, b in gaps) * 1000
    windows = ev.get("windows", [])
    inside: list[float] = []
    outside: list[float] = []
    for a, b in gaps:
        (inside if any(a < w1 and b > w0 for w0, w1 in windows) else outside).append(b - a)
    out: dict[str, Any] = {
        "requests": len(results),
        "failed": sum(kinds.values()),
        "kinds": kinds,
        "p50": statistics.median(ok_lat) if ok_lat else 0,
        "p99": ok_lat[int(len(ok_lat) * 0.99) - 1] if ok_lat else 0,
        "max": ok_lat[-1] if ok_lat else 0,
        "gap": gap,
        "gap_in": max(inside, default=0.0) * 1000,
        "gap_quiet": max(outside, default=0.0) * 1000,
    }
    if "deployed_at" in ev:
        out["stale"] = sum(
            1 for r in movie if r["t0"] > ev["deployed_at"] and r["kind"] == "ok" and r["release"] != ev["release"]
        )
    if "broken_t0" in ev:
        bad = [r for r in results if r["kind"] == "5xx" and r["release"] and r["release"] != ev["old"]]
        other = [r for r in results if r["kind"] != "ok" and r not in bad]
        out["broken"] = {
            "rc": ev["rc"],
            "answers_from_broken": len(bad),
            "other_failures": len(other),
            "broken_live_s": (max(r["t1"] for r in bad) - min(r["t0"] for r in bad)) if bad else 0.0,
            "old_serving_again_s": (ev["broken_t1"] - min(r["t0"] for r in bad)) if bad else 0.0,
            "message": ev["err"].splitlines()[-1] if ev["err"] else "",
            "failed_during": sum(1 for r in results if r["kind"] != "ok" and ev["broken_t0"] <= r["t0"] <= ev["broken_t1"]),
            "failed_after": sum(1 for r in results if r["kind"] != "ok" and r["t0"] > ev["broken_t1"]),
        }
    return out


def row(mode: str, strategy: str, profile: str, m: dict[str, Any]) -> str:
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(m["kinds"].items())) or "-"
    stale = m.get("stale", "-")
    return (
        f"| {mode} | {strategy} | {profile} | {m['requests']} | {m['failed']} ({kinds}) | "
        f"{m['p50']:.0f} / {m['p99']:.0f} / {m['max']:.0f} | {m['gap']:.0f} | "
        f"{m['gap_in']:.0f} / {m['gap_quiet']:.0f} | {stale} |"
    )


def main() -> int:
    compile_tool()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--nice-client", type=int, default=0, help="run every fab under nice -n N (0: as is)")
    ap.add_argument(
        "--only", help="comma-separated: control,slots,vhost,touch,graceful,rolling,embedded,broken,import,memory"
    )
    ap.add_argument("--runs", type=int, default=1, help="runs of each strategy's profiles (the gaps' medians at the end)")
    args = ap.parse_args()
    exit_on_sigterm()
    only = set(args.only.split(",")) if args.only else None
    user = DeployUser.ensure(random_user())
    lines = [
        "| mode | strategy | profile | requests | failed (kinds) | ms p50 / p99 / max | gap ms | gap in fab / quiet | stale |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    broken_reports: dict[str, dict[str, Any]] = {}
    gaps: dict[tuple[str, str, str], list[float]] = {}  # (mode, strategy, profile) -> longest gap of each run

    def record(mode: str, strategy: str, profile: str, m: dict[str, Any]) -> None:
        lines.append(row(mode, strategy, profile, m))
        print(lines[-1], flush=True)
        gaps.setdefault((mode, strategy, profile), []).append(m["gap"] if strategy == "control" else m["gap_in"])
    memory: dict[int, int] = {}
    try:
        plans = [
            ("daemon", "event", [
                "control", "slots", "vhost", "touch", "graceful", "rolling", "broken", "import", "broken-rolling",
                "memory",
            ]),
            ("embedded", "prefork", ["control", "graceful"]),
        ]
        for mode, mpm, strategies in plans:
            wanted = (only or set()) & (set(strategies) if mode == "daemon" else {"embedded"})
            if only and not wanted:
                continue
            with Sandbox(user, mpm=mpm) as sb:
                h = Host(sb, mode, args.nice_client)
                h.fab("setup")
                h.fab("deploy")
                for strategy in strategies:
                    if only and strategy not in only and not (mode == "embedded" and "embedded" in only):
                        continue
                    if strategy == "memory":
                        for slots in (1, 2, 3):
                            h.configure(None, daemon={**app_config(sb)["daemon"], "slots": slots})  # type: ignore[dict-item]
                            h.fab("deploy")
                            time.sleep(3)
                            memory[slots] = h.memory_kib()
                        continue
                    if strategy == "vhost":
                        h.configure(None)
                        h.fab("deploy")
                        time.sleep(2)
                        for profile in PROFILES:
                            m = run_load(h, profile, args.duration, True, strategy="vhost")
                            lines.append(row(mode, "slots, vhost changed", profile, m))
                            print(lines[-1], flush=True)
                        continue
                    paired = strategy == "slots" and (not only or "control" in only)
                    if strategy == "control" and mode == "daemon" and (not only or "slots" in only):
                        continue  # run beside each slots run instead
                    if strategy in ("broken", "import", "broken-rolling"):
                        h.configure(
                            "rolling" if strategy == "broken-rolling" else None, import_check=strategy != "import"
                        )
                        h.fab("deploy")
                        time.sleep(2)
                        m = run_load(h, "plain", args.duration, True, broken="import" if strategy == "import" else "view")
                        broken_reports[strategy] = m["broken"]
                        lines.append(row(mode, f"{strategy} deploy", "plain", m))
                        print(lines[-1], flush=True)
                        continue
                    h.configure(None if strategy == "control" else strategy)
                    h.fab("deploy")  # the config change goes live before the load starts
                    time.sleep(2)
                    for _ in range(args.runs):
                        for profile in PROFILES:
                            if paired:
                                record(mode, "control", profile, run_load(h, profile, args.duration, False))
                            m = run_load(h, profile, args.duration, strategy != "control", strategy=strategy)
                            record(mode, strategy, profile, m)
    finally:
        user.remove()
    print("\n" + "\n".join(lines))
    for name, b in broken_reports.items():
        print(
            f"\n{name} deploy: exit {b['rc']}, failed requests {b['failed_during']} during the deploy and"
            f" {b['failed_after']} after it returned; the broken release answered {b['answers_from_broken']}"
            f" (live {b['broken_live_s']:.2f}s)\n  {b['message']}"
        )
    if args.runs > 1 or any(len(v) > 1 for v in gaps.values()):
        print("\n| mode | strategy | profile | longest gap per run, ms | median | x control's median |")
        print("|---|---|---|---|---|---|")
        for (mode, strategy, profile), vals in gaps.items():
            med = statistics.median(vals)
            ctl = gaps.get((mode, "control", profile))
            ratio = f"{med / statistics.median(ctl):.2f}" if ctl and strategy != "control" else "-"
            runs = ", ".join(f"{v:.0f}" for v in vals)
            print(f"| {mode} | {strategy} | {profile} | {runs} | {med:.0f} | {ratio} |")
    for slots, kib in memory.items():
        print(f"daemon memory with {slots} slot(s): {kib / 1024:.0f} MiB resident (processes=2 per slot)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
