"""Start-up cost: what every `fab` run pays before its first host, against importing Fabric alone.

    python3 -m bench.imports [--runs 7]   (no root, no hosts; a few seconds)

Each row is a fresh process (median, min and max wall time and its CPU): `python3 -c 'import fabric'`,
`python3 -c 'import deploy.tasks'`, `fab --list` and `fab noop` (a task that does nothing) in a project
whose fabfile is the tool's tasks plus `noop`. Then the slowest imports of `fab --list` (python -X importtime).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import compile_tool

REPO_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60  # seconds, one process
FABFILE = """from fabric import task

from deploy.tasks import *  # noqa: F403


@task
def noop(c):
    \"\"\"Do nothing: the cost of a fab run with the tool's tasks loaded.\"\"\"
"""


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(wall s, CPU s, stderr) of one fresh process; a failure ends the benchmark."""
    before = os.times()
    t = time.perf_counter()
    p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    wall = time.perf_counter() - t
    after = os.times()
    if p.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{p.stderr[-2000:]}")
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system), p.stderr


def main() -> int:
    compile_tool()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--top", type=int, default=6, help="how many of the tool's slowest modules to list")
    args = ap.parse_args()
    py = sys.executable
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    cases = [
        ("python3 -c 'import fabric' (the floor)", [py, "-c", "import fabric"]),
        ("python3 -c 'import deploy.tasks'", [py, "-c", "import deploy.tasks"]),
        ("fab --list", [py, "-m", "fabric", "--list"]),
        ("fab noop (a task that does nothing)", [py, "-m", "fabric", "noop"]),
    ]
    with tempfile.TemporaryDirectory(prefix="fabdeploy-imports-") as d:
        project = Path(d)
        (project / "fabfile.py").write_text(FABFILE)
        for _, argv in cases:  # warm the page cache and the bytecode
            run(argv, project, env)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in cases}
        for _ in range(args.runs):
            for name, argv in cases:  # interleaved: a busy moment hits every case alike
                wall, cpu, _ = run(argv, project, env)
                times[name].append((wall, cpu))
        floor = statistics.median(w for w, _ in times[cases[0][0]])
        print(f"# {args.runs} runs each, {os.cpu_count()} cores, Python {sys.version.split()[0]}\n")
        print("| process | median s | min | max | CPU s | x floor |")
        print("|---|---|---|---|---|---|")
        for name, _ in cases:
            walls = [w for w, _ in times[name]]
            med = statistics.median(walls)
            cpu = statistics.median(c for _, c in times[name])
            print(f"| {name} | {med:.3f} | {min(walls):.3f} | {max(walls):.3f} | {cpu:.3f} | {med / floor:.2f} |")
        _, _, err = run([py, "-X", "importtime", "-m", "fabric", "--list"], project, env)
    rows = []  # (cumulative us, depth, module)
    for line in err.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), (len(m.group(3)) - 1) // 2, m.group(4)))
    total = sum(us for us, depth, _ in rows if depth == 0)
    print(f"\n`fab --list` imports (-X importtime, cumulative; all top-level ones: {total / 1000:.0f} ms)")
    tops = [(us, n) for us, d, n in sorted(rows, reverse=True) if d == 0 and us >= 1000]
    print("top level:  " + ", ".join(f"{n} {us / 1000:.0f} ms" for us, n in tops))
    own = sorted((r for r in rows if r[2].split(".")[0] == "deploy"), reverse=True)[: args.top]
    print("the tool's: " + ", ".join(f"{n} {us / 1000:.0f} ms" for us, _, n in own))
    return 0


if __name__ == "__main__":
    sys.exit(main())
