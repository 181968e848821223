# What the host runs: releases, the lock, Apache's MPM, what the live app says of itself, its daemon
# processes, the health check, disk use and who deployed the live release.
require_setup
list_releases
say_lock
say "mpm $(ctl -V 2>/dev/null | sed -n 's/^Server MPM: *//p')"
"$PYTHON" - "$HTTP_BASE" "$SERVER_NAME" "$STATUS_PATH" "$HEALTH_PATH" "$HEALTH_STATUS" "$HEALTH_CONTAINS" <<'PY' 2>&1
import json, sys, urllib.error, urllib.request
base, host, status_path, path, want, contains = sys.argv[1:]

def get(p):
    req = urllib.request.Request(base + p, headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except Exception as e:
        return None, f"unreachable: {e}"

code, body = get(status_path)
print("@@app " + (body if code == 200 else json.dumps({"error": f"{status_path} answered {code}: {body[:200]}"})).replace("\n", " "))
if path:
    code, body = get(path)
    ok = code == int(want) and (not contains or contains in body)
    print(f"@@health {'ok' if ok else 'failed'} GET {path} answered {code}" + ("" if ok or code != int(want) else f" without {contains!r}"))
else:
    print(f"@@health {'ok' if code == 200 else 'failed'} GET {status_path} answered {code}")
PY
pids=$(daemon_pids | paste -sd, -)
[ -n "$pids" ] && ps -o pid=,etimes=,lstart= -p "$pids" 2>/dev/null | sed 's/^ */@@proc /'
say "disk $(du -sk "$R" 2>/dev/null | cut -f1) $(du -sk "$SH/venvs" 2>/dev/null | cut -f1)"
cur=$(current_id)
[ -n "$cur" ] && [ -f "$R/$cur/.release/watched" ] && say "watched $(cat "$R/$cur/.release/watched")"
[ -n "$cur" ] && grep -F " $cur " "$DEPLOY_TO/revisions.log" 2>/dev/null | grep ' ok$' | tail -n 1 | sed 's/^/@@deployed /'
tail -n 5 "$DEPLOY_TO/revisions.log" 2>/dev/null | sed 's/^/@@log /'
true
