"""`fab logs` on the host: the last lines of one of the app's logs (since a time), then, following, each new one.

Inlined into the logs phase as the shell function `logtail` (see deploy/remote/__init__.py), run by the
host's python3 (stdlib only):
    logtail FILE LINES SINCE_SECONDS FOLLOW
Each line goes out as an '@@out LINE' event; following, a '@@tick' every 2 s lets the command end soon after
the client went away (a write to the closed channel fails). Times are read from Apache's error log lines
([Tue Dec 01 12:17:37.123456 2026], the host's local time) and access log lines ([01/Dec/2026:12:17:37
+0000]); a line without one has its previous line's time.
"""

from __future__ import annotations

import datetime
import os
import re
import sys
import time

ERROR_TIME = re.compile(r"^\[\w{3} (\w{3} +\d{1,2} \d{2}:\d{2}:\d{2})(?:\.\d+)? (\d{4})\]")
ACCESS_TIME = re.compile(r"\[(\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\]")
MAX_BACK = 64 << 20  # read at most this much of the file's end looking for the lines asked for
BLOCK = 1 << 16


def stamp(line: str) -> float | None:
    m = ERROR_TIME.match(line)
    try:
        if m:
            return time.mktime(time.strptime(f"{m.group(1)} {m.group(2)}", "%b %d %H:%M:%S %Y"))
        m = ACCESS_TIME.search(line)
        if m:
            return datetime.datetime.strptime(m.group(1), "%d/%b/%Y:%H:%M:%S %z").timestamp()
    except ValueError:
        return None
    return None


def out(line: str) -> None:
    sys.stdout.write("@@out " + line + "\n")


def last(path: str, n: int, cutoff: float | None) -> int:
    """Send the last `n` lines of `path` not older than `cutoff`; return the offset read up to."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = pos = f.tell()
        data = b""
        while pos > 0 and end - pos < MAX_BACK:
            step = min(BLOCK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
            lines = data.split(b"\n")[1 if pos > 0 else 0 :]
            if cutoff is None and len(lines) > n + 1:
                break
            if cutoff is not None:
                first = next((t for t in (stamp(x.decode(errors="replace")) for x in lines[:50]) if t is not None), None)
                if first is not None and first < cutoff:
                    break
    lines = data.split(b"\n")[1 if pos > 0 else 0 :]
    if lines and lines[-1] == b"":
        lines.pop()
    keep: list[str] = []
    when: float | None = None
    for raw in lines:
        line = raw.decode(errors="replace")
        when = stamp(line) or when
        if cutoff is None or (when is not None and when >= cutoff):
            keep.append(line)
    for line in keep[-n:] if n > 0 else keep:
        out(line)
    sys.stdout.flush()
    return end


def follow(path: str, offset: int) -> None:
    """New lines as they are written; a rotated (new inode) or truncated file is read from its start."""
    ino = os.stat(path).st_ino
    partial = b""
    quiet = time.monotonic()
    while True:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if st.st_ino != ino or st.st_size < offset:
                ino, offset, partial = st.st_ino, 0, b""
            if st.st_size > offset:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
                offset += len(data)
                *lines, partial = (partial + data).split(b"\n")
                for raw in lines:
                    out(raw.decode(errors="replace"))
                sys.stdout.flush()
                quiet = time.monotonic()
        if time.monotonic() - quiet > 2:
            sys.stdout.write("@@tick\n")
            sys.stdout.flush()
            quiet = time.monotonic()
        time.sleep(0.25)


def main(argv: list[str]) -> int:
    path, n, since, keep_going = argv[0], int(argv[1]), int(argv[2] or 0), argv[3] == "1"
    try:
        offset = last(path, n, time.time() - since if since > 0 else None)
        if keep_going:
            follow(path, offset)
    except (BrokenPipeError, KeyboardInterrupt):
        return 0
    except OSError as exc:
        print(f"error: could not read {path}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
