"""The health check and the app's own word about itself, asked on the host through the vhost (stdlib only).

Inlined into the phase scripts as the shell function `probe` (see deploy/remote/__init__.py) and run by
the host's python3, so that a reload and its check cost one SSH command:
    probe check RELEASE BASE HOST STATUS_PATH PATH STATUS CONTAINS TIMEOUT ATTEMPTS [WARMUP...]
        exit 0 once STATUS_PATH names RELEASE (the new processes answer) and PATH answers as configured,
        after GETting each WARMUP path (a 5xx or no answer there fails too); else print why and exit 1.
    probe status BASE HOST STATUS_PATH PATH STATUS CONTAINS
        print '@@app <json>' and '@@health ok|failed <why>' events for `fab status`.
    probe visitor BASE HOST PATH
        print the status GET PATH answers a visitor (`fab maintenance on` checks it is 503).
The tool's own requests send `X-Fabdeploy-Check: 1`: from the host itself they pass maintenance mode (the
vhost lets them through to the app), so that `fab status` and a `--keep-maintenance` deploy see the app.
Redirects are never followed (a 3xx is the answer, reported with its Location: an app redirecting to its
public https name would otherwise be checked on the internet). Extra request headers (health.headers,
e.g. X-Forwarded-Proto: https) come as JSON in the environment variable HEALTH_HEADERS, never in argv.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

_HEADERS = json.loads(os.environ.get("HEALTH_HEADERS") or "{}")
# A deploy with daemon slots checks the idle slot through the preview route (deploy/remote/slots.sh).
if os.environ.get("PREVIEW_TOKEN"):
    _HEADERS["X-Fabdeploy-Preview"] = os.environ["PREVIEW_TOKEN"]


def get(base: str, host: str, path: str, timeout: float, tool: bool = True) -> tuple[int | None, str]:
    """(status, body) of GET base+path with the vhost's Host header; (None, why) when nothing answered.
    A redirect's body is 'Location: <where>'. `tool`: the request says it is the tool's (see above).
    HTTP/1.0 over a plain socket: no chunked answer, the body ends when Apache closes; http.client would
    import email and ssl, ~30 ms of every deploy's and rollback's check."""
    mark = {"X-Fabdeploy-Check": "1"} if tool else {}
    addr, _, port = base.split("://", 1)[-1].rstrip("/").rpartition(":")
    head = "".join(f"{k}: {v}\r\n" for k, v in {**_HEADERS, **mark, "Host": host}.items())
    try:
        with socket.create_connection((addr.strip("[]"), int(port)), timeout=max(1.0, timeout)) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\n{head}\r\n".encode("latin-1"))
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except (OSError, ValueError) as e:  # refused, timed out, reset: the answer is that there was none
        return None, f"unreachable: {e}"
    header, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    try:
        code = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return None, f"unreachable: not an HTTP answer: {lines[0][:80]!r}"
    if 300 <= code < 400:
        where = next((ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith("location:")), "?")
        return code, f"Location: {where}"
    return code, body.decode(errors="replace")


def answers(code: int | None, body: str, want: str, contains: str) -> bool:
    return code == int(want) and (not contains or contains in body)


def check(
    release: str, base: str, host: str, status_path: str, path: str, want: str, contains: str, timeout: str, attempts: str,
    *warmup: str,
) -> int:
    deadline = time.monotonic() + float(timeout)
    why = "no answer"
    while time.monotonic() < deadline:
        code, body = get(base, host, status_path, deadline - time.monotonic())
        try:
            seen = json.loads(body).get("release") if code == 200 else None
        except ValueError:
            seen = None
        if seen == release:
            break
        why = f"{status_path} answered {code} ({seen or body[:80].strip()}), not release {release}"
        time.sleep(0.2)
    else:
        print(why)
        return 1
    for w in warmup:
        # A warm-up that errors is a release that errors: it fails the check (4xx is the app's own answer).
        code, body = get(base, host, w, deadline - time.monotonic())
        if code is None or code >= 500:
            print(f"warm-up GET {w} answered {code if code is not None else body}")
            return 1
    if not path:
        return 0
    for attempt in range(int(attempts)):
        code, body = get(base, host, path, deadline - time.monotonic())
        if answers(code, body, want, contains):
            return 0
        why = f"GET {path} answered {code}" + (f", body without {contains!r}" if code == int(want) else "")
        if code is not None and 300 <= code < 400:
            why += f" ({body}; redirects are not followed: set health.status: {code} to accept it, or send"
            why += " health.headers such as X-Forwarded-Proto: https)"
        if attempt + 1 == int(attempts) or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    print(why)
    return 1


def status(base: str, host: str, status_path: str, path: str, want: str, contains: str) -> int:
    code, body = get(base, host, status_path, 10)
    app = body if code == 200 else json.dumps({"error": f"{status_path} answered {code}: {body[:200]}"})
    print("@@app " + app.replace("\n", " "))
    if path:
        code, body = get(base, host, path, 10)
        ok = answers(code, body, want, contains)
        extra = "" if ok or code != int(want) else f" without {contains!r}"
        print(f"@@health {'ok' if ok else 'failed'} GET {path} answered {code}{extra}")
    else:
        print(f"@@health {'ok' if code == 200 else 'failed'} GET {status_path} answered {code}")
    return 0


def visitor(base: str, host: str, path: str) -> int:
    code, _ = get(base, host, path, 10, tool=False)
    print(code)
    return 0


if __name__ == "__main__":
    command = {"check": check, "status": status, "visitor": visitor}[sys.argv[1]]
    sys.exit(command(*sys.argv[2:]))  # type: ignore[operator]
