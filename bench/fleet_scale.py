"""Fleet-scale benchmark: the tool's own cost per host, with many light hosts (sshd only, no Apache).

    python3 -m bench.fleet_scale [--counts 1,10,25,50] [--runs 3] [--modes cli,api@10,api@50]   (root; ~6 min)
    python3 -m bench.fleet_scale --offline-only [--offline 10,50,100,500] [--offline-ssh-config wildcard]   (no root)

Starts max(counts) (at most 50) network-namespace hosts running only sshd (tests/sandbox.py, apache=False)
and makes each look deployed: deploy_to with one finished release of the example app (its manifest,
`current`, revisions.log), written by hand; nothing serves HTTP. Then, per host count N and run:

- cli     `fab -H web1,...,webN plan` and `... status` (fresh processes; 10 hosts at a time, --parallel),
- cli+fix the same with trim_cloned_rules() applied (this module with --fab-fixed): the fix, applied from
          outside, that deploy/connect.connection now makes itself (kept to compare older versions),
- api@P   the same through the Python API with parallel=P (`deploy.plan(..., parallel=P)`, `deploy.status`),
          a fresh process too (this module with --api), without Fabric's per-host task calls.

Prints, per task, mode and N: the median wall time, the fab process's CPU (user + system, children
included: os.wait4) and max RSS, and per host above the 1-host run (the floor). Then a straight line
fitted to each and its value at 500 hosts, and whether the per-host cost at the largest count is more
than 1.3x the one at 10 hosts (worse than linear). known_hosts and the ssh_config (-S, one Host block
per host) hold exactly the N hosts of each run, as a fleet of N would. The hosts' own work (sshd, bash,
python) runs on the same cores as fab: wall times are what this machine does, CPU and memory fab's alone.

Last, `--offline` counts (no hosts; `--offline-only` needs no root): the CPU of making the Connections
alone, as `fab -H` does (one config clone per host in deploy.connect.connection, one Connection per host
in Fabric's executor), now and with the ssh_config rules that Fabric 3.2's Config.clone re-reads into the
source config trimmed again; each count is stopped after --offline-timeout seconds.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench import compile_tool, exit_on_sigterm

MAX_HOSTS = 50
FAB_TIMEOUT = 180.0  # seconds, one fab process (50 hosts take a few)
APP = "imdb"


@dataclass(frozen=True)
class Run:
    wall: float  # seconds
    cpu: float  # seconds, user + system, the process and the children it waited for
    rss: float  # MiB, max resident set


def timed(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float = FAB_TIMEOUT, may_time_out: bool = False
) -> tuple[Run, str]:
    """Run argv to the end (killed after `timeout`); its figures and its output. A failure ends the benchmark,
    and so does a timeout unless `may_time_out` (then the Run's wall time is inf)."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        waited: list[tuple[int, int, resource.struct_rusage]] = []
        ended: list[float] = []

        def reap() -> None:
            waited.append(os.wait4(p.pid, 0))
            ended.append(time.perf_counter())

        reaper = threading.Thread(target=reap, daemon=True)
        reaper.start()
        reaper.join(timeout)
        if reaper.is_alive():
            os.killpg(p.pid, signal.SIGKILL)
            reaper.join(10)
            p.returncode = -9
            if may_time_out:
                return Run(float("inf"), float("inf"), 0.0), ""
            raise SystemExit(f"timed out after {timeout:.0f}s: {' '.join(argv[:8])} ...")
        _, status, usage = waited[0]
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if p.returncode:
        raise SystemExit(f"failed (exit {p.returncode}): {' '.join(argv[:8])} ...\n{text[-4000:]}")
    return Run(ended[0] - t0, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024), text


def fake_deployed(deploy_to: Path, owner: str, revision: str, manifest: str, release_id: str) -> None:
    """The layout plan.sh and status.sh read (lib.sh: releases/, shared/, current, a release's .release/)."""
    meta = deploy_to / "releases" / release_id / ".release"
    meta.mkdir(parents=True)
    (meta / "state").write_text("finished\n")
    (meta / "revision").write_text(revision + "\n")
    (meta / "manifest").write_text(manifest)
    (deploy_to / "shared").mkdir()
    (deploy_to / "current").symlink_to(f"releases/{release_id}")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (deploy_to / "revisions.log").write_text(f"{stamp} {owner} deploy {release_id} {revision} ok\n")
    subprocess.run(["chown", "-R", f"{owner}:", str(deploy_to)], check=True, timeout=30)


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares line: (intercept, slope)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return my - slope * mx, slope


def api_main(task: str, parallel: int, hosts: str, ssh_config: str) -> int:
    """`--api`: one task through the Python API (in the app's directory), as a script would run it."""
    import deploy

    p = deploy.project(".", ssh_config=ssh_config)
    conns = p.connections(hosts.split(","))
    if task == "plan":
        results = deploy.plan(conns, p.settings, p.path, parallel=parallel)
    else:
        results = deploy.status(conns, p.settings, parallel=parallel)
    for r in results:
        print(f"{r.host}: {task} {r.result}")
    return 0


def trim_cloned_rules() -> None:
    """The fix this benchmark proposes, applied from outside: Fabric 3.2's Config.clone() re-reads the
    ssh_config files into the config being cloned (fabric/config.py, `self.load_ssh_config()`), so each
    deploy.connect.connection() grows the shared config by every rule again. Drop what the clone added."""
    from fabric import Config, Connection

    from deploy import api, connect

    original = connect.connection

    def trimmed(host: str, config: Config) -> Connection:
        rules = config.base_ssh_config._config
        before = len(rules)
        try:
            return original(host, config)
        finally:
            del rules[before:]

    setattr(connect, "connection", trimmed)  # noqa: B010
    setattr(api, "connection", trimmed)  # noqa: B010 - the name api.connections calls


def fab_fixed(args: list[str]) -> int:
    """`--fab-fixed ARGS`: `fab ARGS` with trim_cloned_rules() applied (the cli+fix mode)."""
    from fabric.main import program

    trim_cloned_rules()
    sys.argv = ["fab", *args]  # deploy.tasks.cli_hosts reads -H from here
    program.run(sys.argv)
    return 0


def offline_run(variant: str, n: int, key: str, layout: str = "per-host") -> int:
    """`--offline-run`: the Connections `fab -H web1,...,webN TASK` makes, no network: deploy.tasks._targets
    (api.connections: one config clone per host) and Fabric's executor (one Connection per -H host, on the
    shared config). The ssh_config has one Host block per host. Prints the CPU seconds and the rules left."""
    from fabric import Config, Connection

    from deploy import api

    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "ssh_config"
        if layout == "wildcard":  # the hosts by name (DNS), one block for all of them
            cfg.write_text(f"Host web*\n    User deploy\n    IdentityFile {key}\n")
        else:
            block = "Host web{i}\n    HostName 10.1.{a}.{b}\n    IdentityFile {key}\n"
            cfg.write_text("".join(block.format(i=i, a=i // 250, b=i % 250, key=key) for i in range(n)))
        if variant == "fixed":
            trim_cloned_rules()
        config = Config(runtime_ssh_path=str(cfg))
        config.load_shell_env()
        names = [f"web{i}" for i in range(n)]
        t = time.process_time()
        first = Connection(names[0], config=config)
        api.connections(names[1:], first.config)
        for h in names[1:]:
            Connection(h, config=config)
        print(f"{time.process_time() - t:.3f} {len(config.base_ssh_config._config)}")
    return 0


def offline(counts: list[int], timeout: float, layout: str = "per-host") -> None:
    """The connection set-up alone, per host count: as the tool does it now, and with the rules trimmed."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    with tempfile.TemporaryDirectory() as d:
        key = Path(d) / "key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
        what = "one ssh_config Host block per host" if layout == "per-host" else "one `Host web*` block for all"
        print(f"\nconnection set-up alone (no network; {what}), CPU seconds:\n")
        print("| hosts | now | ssh_config rules after | if connect.connection trimmed the re-read rules |")
        print("|---|---|---|---|")
        measured: dict[str, list[tuple[int, float]]] = {"now": [], "fixed": []}
        for n in counts:
            cells = []
            for variant in ("now", "fixed"):
                argv = [sys.executable, "-m", "bench.fleet_scale", "--offline-run", variant, str(n), str(key), layout]
                r, text = timed(argv, Path(d), env, timeout=timeout, may_time_out=True)
                cpu, _, rules = text.strip().partition(" ")
                if text:
                    measured[variant].append((n, float(cpu)))
                cells.append((f"{float(cpu):.2f}", rules) if text else (f"> {timeout:.0f} (stopped)", "?"))
            print(f"| {n} | {cells[0][0]} | {cells[0][1]} | {cells[1][0]} |", flush=True)
        for variant, points in measured.items():
            if len(points) >= 2 and points[-1][0] < counts[-1]:
                (n1, c1), (n2, c2) = points[-2:]
                k = math.log(c2 / c1) / math.log(n2 / n1)
                at = counts[-1]
                guess = c2 * (at / n2) ** k
                print(f"{variant}: grows as N^{k:.1f} from {n1} to {n2} hosts; at {at} hosts that is ~{guess:.0f} s CPU")


def main() -> int:
    compile_tool()
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="1,10,25,50", help=f"host counts (at most {MAX_HOSTS}); 1 is always added")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tasks", default="plan,status")
    ap.add_argument(
        "--modes", default="cli,api@10,api@50",
        help="cli (fab), cli+fix (fab with trim_cloned_rules), api@P (the Python API, parallel=P)",
    )
    ap.add_argument(
        "--offline", default="10,50,100,500",
        help="host counts for the connection set-up alone (no hosts, no root; '' skips it)",
    )
    ap.add_argument("--offline-only", action="store_true", help="only that (no root needed)")
    ap.add_argument("--offline-timeout", type=float, default=60.0, help="seconds per offline count and variant")
    ap.add_argument("--offline-ssh-config", choices=("per-host", "wildcard"), default="per-host")
    ap.add_argument("--api", nargs=4, metavar=("TASK", "PARALLEL", "HOSTS", "SSH_CONFIG"), help=argparse.SUPPRESS)
    ap.add_argument("--offline-run", nargs=4, metavar=("VARIANT", "N", "KEY", "LAYOUT"), help=argparse.SUPPRESS)
    if sys.argv[1:2] == ["--fab-fixed"]:
        return fab_fixed(sys.argv[2:])
    args = ap.parse_args()
    if args.api:
        return api_main(args.api[0], int(args.api[1]), args.api[2], args.api[3])
    if args.offline_run:
        return offline_run(args.offline_run[0], int(args.offline_run[1]), args.offline_run[2], args.offline_run[3])
    offline_counts = [int(n) for n in args.offline.split(",") if n.strip()]
    if args.offline_only:
        offline(offline_counts, args.offline_timeout, args.offline_ssh_config)
        return 0
    if os.geteuid() != 0:
        print("needs root (network namespaces, a deploy user, sshd)", file=sys.stderr)
        return 2
    counts = sorted({1, *(int(n) for n in args.counts.split(","))})
    if counts[-1] > MAX_HOSTS or counts[0] < 1:
        print(f"host counts must be 1..{MAX_HOSTS}", file=sys.stderr)
        return 2
    tasks, modes = args.tasks.split(","), args.modes.split(",")

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(f"signal {signum}: stopping")  # the finally below still cleans up

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    from deploy import releases, source
    from tests.sandbox import REPO_ROOT, DeployUser, Sandbox, example_repo, random_user

    user = DeployUser.ensure(random_user())
    common = f"/srv/fabdeploy-scale-{os.getpid()}"
    base = Path(tempfile.mkdtemp(prefix="fabdeploy-scale-"))
    hosts: list[Sandbox] = []
    namespaces: list[str] = []
    try:
        t0 = time.monotonic()
        for i in range(counts[-1]):
            sb = Sandbox(user, netns=True, apache=False, host_alias=f"web{i + 1}", common_root=common, sshd_log_level="INFO")
            hosts.append(sb)
            sb.start()
            namespaces.append(str(sb._ns))
        print(f"# {len(hosts)} light hosts (netns + sshd only) started in {time.monotonic() - t0:.1f}s", flush=True)
        ssh_config = base / "ssh_config"
        ssh_config.write_text("".join(sb.ssh_config.read_text() for sb in hosts))
        repo = example_repo(hosts[0], base / "app", "daemon", listen="*:80")  # one config for every host
        src = source.from_git(repo)
        release_id = releases.new_id(src.short_revision, now=time.time() - 3600)
        for sb in hosts:
            fake_deployed(sb.deploy_to / APP, user.name, src.revision, src.manifest(), release_id)
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HOME=str(base))
        known = base / ".ssh" / "known_hosts"

        def argv(task: str, mode: str, names: list[str]) -> list[str]:
            fab = ["-S", str(ssh_config), "-H", ",".join(names), task]
            if mode == "cli":
                return [sys.executable, "-m", "fabric", *fab]
            if mode == "cli+fix":
                return [sys.executable, "-m", "bench.fleet_scale", "--fab-fixed", *fab]
            par = mode.partition("@")[2] or "10"
            return [sys.executable, "-m", "bench.fleet_scale", "--api", task, par, ",".join(names), str(ssh_config)]

        def check(text: str, names: list[str], task: str, mode: str) -> None:
            """Every host answered as a deployed host does (its one command succeeded)."""
            if mode.startswith("api"):
                want = f"{task} planned" if task == "plan" else f"{task} ok"
            else:
                want = "plan" if task == "plan" else f"live {release_id}"
            missing = [n for n in names if not re.search(rf"^{n}: {want}\b", text, re.M)]
            if missing:
                raise SystemExit(f"{mode} {task} on {len(names)} hosts: no '{want}' from {missing[:5]}:\n{text[-2000:]}")

        all_names = [sb.host_alias for sb in hosts]
        warm, text = timed(argv("plan", "cli", all_names), repo, env)  # also records every host key
        check(text, all_names, "plan", "cli")
        lines = known.read_text().splitlines(keepends=True)
        print(f"# warm-up: fab plan on {len(hosts)} hosts {warm.wall:.2f}s; {len(lines)} host keys recorded", flush=True)
        print(f"# example app: {len(src.files)} files; the remote script of each command: lib.sh and the phase, ~40 KB")

        results: dict[tuple[str, str, int], list[Run]] = {}
        for n in counts:
            names = all_names[:n]
            binds = {sb.bind for sb in hosts[:n]}
            known.write_text("".join(ln for ln in lines if ln.split(" ", 1)[0] in binds))
            ssh_config.write_text("".join(sb.ssh_config.read_text() for sb in hosts[:n]))
            for _ in range(args.runs):
                for task in tasks:
                    for mode in modes:
                        r, text = timed(argv(task, mode, names), repo, env)
                        check(text, names, task, mode)
                        results.setdefault((task, mode, n), []).append(r)
            row = "  ".join(
                f"{t}/{m} {statistics.median(x.wall for x in results[(t, m, n)]):.2f}s" for t in tasks for m in modes
            )
            print(f"# {n:>2} hosts: {row}", flush=True)
        report(results, tasks, modes, counts)
        if offline_counts:
            offline(offline_counts, args.offline_timeout, args.offline_ssh_config)
    finally:
        for sb in hosts:
            sb.stop()
        user.remove()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(common, ignore_errors=True)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout.split()
        ours = sorted(set(namespaces) & set(left))
        print(f"# cleanup: {len(namespaces)} namespaces deleted; still there: {', '.join(ours) or 'none'}")
    return 0


def report(results: dict[tuple[str, str, int], list[Run]], tasks: list[str], modes: list[str], counts: list[int]) -> None:
    big = counts[-1]
    mid = 10 if 10 in counts and big > 10 else None
    print("\n| task | mode | hosts | wall s | CPU s | max RSS MiB | wall ms/host | CPU ms/host | RSS MiB/host |")
    print("|---|---|---|---|---|---|---|---|---|")
    summary: list[str] = []
    worse: list[str] = []
    for task in tasks:
        for mode in modes:
            med = {n: Run(*(statistics.median(getattr(r, f) for r in results[(task, mode, n)]) for f in ("wall", "cpu", "rss")))
                   for n in counts}
            one = med[1]
            for n in counts:
                m = med[n]
                if n == 1:
                    per = "floor | floor | floor"
                else:
                    per = (f"{(m.wall - one.wall) / (n - 1) * 1000:.1f} | {(m.cpu - one.cpu) / (n - 1) * 1000:.1f} | "
                           f"{(m.rss - one.rss) / (n - 1):.2f}")
                print(f"| {task} | {mode} | {n} | {m.wall:.2f} | {m.cpu:.2f} | {m.rss:.0f} | {per} |")
            xs = [float(n) for n in counts]
            proj = []
            for field, unit in (("wall", "s"), ("cpu", "s CPU"), ("rss", "MiB")):
                a, b = fit(xs, [getattr(med[n], field) for n in counts])
                proj.append(f"{a + b * 500:.1f} {unit}")
                if mid and field != "wall":  # wall is waves of `parallel` hosts: a step function, not a line
                    lo = (getattr(med[mid], field) - getattr(one, field)) / (mid - 1)
                    hi = (getattr(med[big], field) - getattr(one, field)) / (big - 1)
                    if lo > 0 and hi > 1.3 * lo:
                        ratio = f"{hi:.4g}/host at {big} hosts, {lo:.4g}/host at {mid} (x{hi / lo:.2f})"
                        worse.append(f"{task}/{mode} {field}: {ratio}")
            summary.append(f"| {task} | {mode} | {' | '.join(proj)} |")
    print("\nprojection to 500 hosts (a straight line fitted to the medians above):\n")
    print("| task | mode | wall | fab CPU | fab max RSS |")
    print("|---|---|---|---|---|")
    print("\n".join(summary))
    if worse:
        print("\nworse than linear (per-host cost above the floor, largest count vs 10 hosts, > 1.3x);")
        print("for these the straight line above is a lower bound:")
        print("\n".join(f"  {w}" for w in worse))
    elif mid:
        print(f"\nnothing grows worse than linearly: per-host CPU and RSS at {big} hosts within 1.3x of those at {mid}")


if __name__ == "__main__":
    sys.exit(main())
