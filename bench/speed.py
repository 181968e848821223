"""Speed benchmark: deploy scenarios on loopback and over a 50 ms RTT link, as ratios to the floor.

    python3 -m bench.speed [--runs 5] [--installers uv,pip] [--scenarios py,rollback]   (root; a sandbox host:
    real sshd + Apache/mod_wsgi)

Each figure is the wall time of a fresh `fab` process, as a user would see it; its ratio is to the floor
measured beside its own runs (one floor right before each run: the VM's speed drifts within a minute). The
floor row is the median of the floors of the link's first minute. The slow link is a
user-space relay holding each chunk 25 ms each way (this kernel has no netem); its RTT is measured
and printed. Commands are counted from sshd's log ('request exec' / 'subsystem request').
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import compile_tool, exit_on_sigterm
from bench.harness import SlowLinkHost
from tests.sandbox import example_repo, slot_roles, waiting_spare


def main() -> int:
    compile_tool()
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--links", default="loopback,50ms")
    ap.add_argument("--reload", default=None, help="reload strategy (default: the tool's, slots)")
    ap.add_argument("--no-health", action="store_true", help="no health check after the reload")
    ap.add_argument("--no-import-check", action="store_true", help="import_check: false (the app not imported first)")
    ap.add_argument("--no-warm", action="store_true", help="import_warm: false (no import check kept warm between deploys)")
    ap.add_argument(
        "--installers", default="uv,pip",
        help="the venv builds (first deploy, requirements changed) are measured per installer, on loopback;"
        " the first one is used for every other scenario",
    )
    ap.add_argument(
        "--scenarios", default="first,warm,nochange,live,py,req,rollback,installers",
        help="which to run: first (deploy), warm (first deploy, uv cache warm), nochange (--force), live (a deploy"
        " of what is live), py (one .py changed), req (requirements changed), rollback, installers",
    )
    ap.add_argument(
        "--back-to-back", action="store_true",
        help="no settling between runs: a deploy may come while the last flip's spare is still restarting",
    )
    args = ap.parse_args()
    scenarios = set(args.scenarios.split(","))
    rows: list[tuple[str, str, list[float], float, float]] = []
    with SlowLinkHost() as h:
        sb = h.sb
        over: dict[str, Any] = {}
        if args.reload:
            over["reload"] = args.reload
        if args.no_health:
            over["health"] = {"enabled": False}
        if args.no_import_check:
            over["import_check"] = False
        if args.no_warm:
            over["import_warm"] = False
        installers = args.installers.split(",")
        over["installer"] = installers[0]
        repo = example_repo(sb, sb.root / "app", "daemon", **over)

        def set_installer(name: str) -> None:
            cfg = json.loads((repo / "fabric.json").read_text())
            cfg["deploy"]["installer"] = name
            (repo / "fabric.json").write_text(json.dumps(cfg, indent=2))
        print(h.describe_link())
        print(
            f"# reload: {args.reload or 'default (slots)'}; health check {'off' if args.no_health else 'on'};"
            f" import check {'off' if args.no_import_check else 'on'}{'' if args.no_warm else ' (kept warm without slots)'}"
        )

        def fab(alias: str, *a: str) -> float:
            return h.fab(repo, alias, *a)

        floor = h.floor

        def commit(change: Callable[[], None], msg: str) -> None:
            change()
            git = "git -c user.email=b@e -c user.name=b"
            subprocess.run(f"git add -A && {git} commit -qm {msg}", shell=True, cwd=repo, check=True)

        def bump_view(n: list[int] = [0]) -> None:  # noqa: B006 - a counter across calls
            n[0] += 1
            views = repo / "movies" / "views.py"
            views.write_text(views.read_text() + f"\n# change {n[0]}\n")

        def bump_requirements(n: list[int] = [0]) -> None:  # noqa: B006
            n[0] += 1
            req = repo / "requirements.txt"
            req.write_text(req.read_text() + f"# change {n[0]}\n")

        deploy_to = sb.deploy_to / "imdb"
        floors: dict[str, float] = {}

        def settle(timeout: float = 5.0) -> None:
            """Untimed, before each run: the host as a deploy minutes after the last finds it, the spare
            slot's processes waiting, having imported ahead (the last flip restarted it: ~1 s, Apache's
            respawn tick, then the imports); without slots, the import check kept warm ready."""
            deadline = time.monotonic() + timeout
            warm = deploy_to / "shared" / "run" / "warm"
            while time.monotonic() < deadline:
                spare = slot_roles(deploy_to).get("spare", "-") == "-" or waiting_spare(deploy_to, "imdb", ahead=True) is not None
                if spare and (not warm.exists() or (warm / "ready").exists()):
                    return
                time.sleep(0.1)

        for link in args.links.split(","):
            alias = h.alias(link)

            def measure(
                name: str,
                before: Callable[[], None] | None,
                task: Callable[[], list[str]],
                alias: str = alias,
                link: str = link,
            ) -> None:
                times, cmds, floors_here = [], [], []
                for _ in range(args.runs):
                    if before:
                        before()
                    if not args.back_to_back:
                        settle()
                    # A floor next to each run: this VM's speed drifts within a minute (0.26-0.38 s floors
                    # on loopback in one hour), and a ratio is only fair to the floor of its own moment.
                    floors_here.append(floor(alias))
                    argv = task()
                    n0 = sb.exec_requests()
                    times.append(fab(alias, *argv) if argv[0] != "@first" else fab(alias, "setup") + fab(alias, "deploy"))
                    cmds.append(sb.exec_requests() - n0)
                fl = statistics.median(floors_here)
                rows.append((name, link, times, statistics.median(cmds), fl))
                print(
                    f"{name:<28} {link:<9} median {statistics.median(times):6.3f}s  min {min(times):6.3f}  "
                    f"max {max(times):6.3f}  commands {statistics.median(cmds):.0f}  "
                    f"x{statistics.median(times) / fl:.2f} floor ({fl:.3f}s, beside these runs)",
                    flush=True,
                )

            floor_s = floors[link] = statistics.median([floor(alias) for _ in range(args.runs)])
            rows.append(("floor (process+connect+true)", link, [floor_s], 1, floor_s))
            print(f"{'floor (process+connect+true)':<28} {link:<9} median {floor_s:6.3f}s", flush=True)

            def wipe() -> None:
                shutil.rmtree(deploy_to, ignore_errors=True)
                (sb.sites_dir / "imdb.conf").unlink(missing_ok=True)

            def wipe_but_tools() -> None:
                """A fresh app directory but for tools/ (uv and its cache): a first deploy with a warm cache."""
                tools, kept = deploy_to / "tools", sb.root / "kept-tools"
                if tools.exists():
                    shutil.rmtree(kept, ignore_errors=True)
                    shutil.move(tools, kept)
                wipe()
                if kept.exists():
                    deploy_to.mkdir(parents=True)
                    shutil.move(kept, tools)
                    subprocess.run(["chown", "-R", f"{sb.user.name}:", str(deploy_to)], check=True)

            if not (deploy_to / "current").is_symlink():  # what every other scenario starts from
                fab(alias, "setup")
                fab(alias, "deploy")
            if "first" in scenarios:
                measure("first deploy (setup+deploy)", wipe, lambda: ["@first"])
            if "warm" in scenarios:
                measure("first deploy, uv cache warm", wipe_but_tools, lambda: ["@first"])
            if "nochange" in scenarios:
                measure("redeploy, nothing changed", None, lambda: ["deploy", "--force"])
            if "live" in scenarios:
                measure("deploy of what is live", None, lambda: ["deploy"])  # says 'unchanged', no release
            if "py" in scenarios:
                measure("redeploy, one .py changed", lambda: commit(bump_view, "view"), lambda: ["deploy"])
            if "req" in scenarios:
                measure("redeploy, requirements chg", lambda: commit(bump_requirements, "req"), lambda: ["deploy"])
            if "rollback" in scenarios:
                fab(alias, "deploy", "--force")  # two releases at least
                ids = sorted(d.name for d in (deploy_to / "releases").iterdir())
                targets = [ids[-1], ids[-2]]
                # Flip before each run: every rollback goes to the release that is not live.
                def rollback_to(t: list[str] = targets) -> list[str]:
                    return ["rollback", f"--to={t[0]}"]

                measure("rollback", targets.reverse, rollback_to)
            if link != "loopback" or "installers" not in scenarios:
                continue
            # The venv builds per installer (the package cache is warm after the first run of each).
            for name in installers:
                set_installer(name)
                measure(f"first deploy [{name}]", wipe, lambda: ["@first"])
                measure(f"requirements chg [{name}]", lambda: commit(bump_requirements, "req"), lambda: ["deploy"])
            set_installer(installers[0])
        print()
        print("| scenario | link | median s | min | max | SSH commands | floor s (beside its runs) | x floor |")
        print("|---|---|---|---|---|---|---|---|")
        for name, link, times, cmds, fl in rows:
            print(
                f"| {name} | {link} | {statistics.median(times):.3f} | {min(times):.3f} | {max(times):.3f} | "
                f"{cmds:.0f} | {fl:.3f} | {statistics.median(times) / fl:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
