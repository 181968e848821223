# What the host runs: releases, the lock, Apache's MPM and what the live app says of itself.
require_setup
list_releases
[ -f "$LOCK/info" ] && say "lock $(cat "$LOCK/info") now=$(date +%s)"
say "mpm $(ctl -V 2>/dev/null | sed -n 's/^Server MPM: *//p')"
say "app $("$PYTHON" - "$STATUS_URL" "$SERVER_NAME" <<'PY' 2>&1 | tr '\n' ' '
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"Host": sys.argv[2]})
try:
    print(urllib.request.urlopen(req, timeout=10).read().decode())
except Exception as exc:
    print("unreachable:", exc)
PY
)"
tail -n 5 "$DEPLOY_TO/revisions.log" 2>/dev/null | sed 's/^/@@log /'
