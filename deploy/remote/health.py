"""The health check and the app's own word about itself, asked on the host through the vhost (stdlib only).

Inlined into the phase scripts as the shell function `probe` (see deploy/remote/__init__.py) and run by
the host's python3, so that a reload and its check cost one SSH command:
    probe check RELEASE BASE HOST STATUS_PATH PATH STATUS CONTAINS TIMEOUT ATTEMPTS [WARMUP...]
        exit 0 once STATUS_PATH names RELEASE (the new processes answer) and PATH answers as configured,
        after GETting each WARMUP path; else print why and exit 1.
    probe status BASE HOST STATUS_PATH PATH STATUS CONTAINS
        print '@@app <json>' and '@@health ok|failed <why>' events for `fab status`.
"""

import json
import sys
import time
import urllib.error
import urllib.request


def get(base, host, path, timeout):
    """(status, body) of GET base+path with the vhost's Host header; (None, why) when nothing answered."""
    req = urllib.request.Request(base + path, headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=max(1.0, timeout)) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except Exception as e:  # refused, timed out, reset: the answer is that there was none
        return None, "unreachable: %s" % e


def answers(code, body, want, contains):
    return code == int(want) and (not contains or contains in body)


def check(release, base, host, status_path, path, want, contains, timeout, attempts, *warmup):
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
        why = "%s answered %s (%s), not release %s" % (status_path, code, seen or body[:80].strip(), release)
        time.sleep(0.2)
    else:
        print(why)
        return 1
    for w in warmup:
        get(base, host, w, deadline - time.monotonic())
    if not path:
        return 0
    for attempt in range(int(attempts)):
        code, body = get(base, host, path, deadline - time.monotonic())
        if answers(code, body, want, contains):
            return 0
        why = "GET %s answered %s" % (path, code) + (", body without %r" % contains if code == int(want) else "")
        if attempt + 1 == int(attempts) or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    print(why)
    return 1


def status(base, host, status_path, path, want, contains):
    code, body = get(base, host, status_path, 10)
    app = body if code == 200 else json.dumps({"error": "%s answered %s: %s" % (status_path, code, body[:200])})
    print("@@app " + app.replace("\n", " "))
    if path:
        code, body = get(base, host, path, 10)
        ok = answers(code, body, want, contains)
        extra = "" if ok or code != int(want) else " without %r" % contains
        print("@@health %s GET %s answered %s%s" % ("ok" if ok else "failed", path, code, extra))
    else:
        print("@@health %s GET %s answered %s" % ("ok" if code == 200 else "failed", status_path, code))
    return 0


if __name__ == "__main__":
    sys.exit({"check": check, "status": status}[sys.argv[1]](*sys.argv[2:]))
