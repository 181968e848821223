# What the host runs: releases, the lock, Apache's MPM, what the live app says of itself, its daemon
# processes (its slots, the import check kept warm), the health check, disk use and who deployed the live
# release.
require_setup
list_releases
say_lock
[ -e "$DEPLOY_TO/maintenance" ] && say "maintenance $(date -u -r "$DEPLOY_TO/maintenance" +%Y-%m-%dT%H:%M:%SZ)"
say "mpm $(ctl -V 2>/dev/null | sed -n 's/^Server MPM: *//p')"
HEALTH_HEADERS=$HEALTH_HEADERS probe status "$HTTP_BASE" "$SERVER_NAME" "$STATUS_PATH" "$HEALTH_PATH" "$HEALTH_STATUS" "$HEALTH_CONTAINS" 2>&1
pids=$(daemon_pids | paste -sd, -)
[ -n "$pids" ] && ps -o pid=,etimes=,lstart= -p "$pids" 2>/dev/null | sed 's/^ */@@proc /'
if [ "$SLOTS" -ge 2 ] && [ -L "$SLOTS_DIR/a" ]; then
  read_map
  for s in $SLOT_NAMES; do
    pids=$(echo $(slot_pids "$s" ready spare) | tr ' ' ,)
    rss=$(for p in ${pids//,/ }; do cat "/proc/$p/status" 2> /dev/null; done | awk '/^VmRSS:/ { s += $2 } END { print s + 0 }')
    role=idle
    [ "$s" = "$LIVE" ] && role=live
    [ "$s" = "$SPARE" ] && role=spare
    say "slot $s $(slot_release "$s") $role ${pids:--} $rss"
  done
fi
# The import check kept warm for the next deploy (no slots): its pid, memory and venv.
if warm_pid "$WARM/ready" && read -r venv _ 2> /dev/null < "$WARM/info"; then
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$WARM_PID/status" 2> /dev/null)
  say "warm $WARM_PID ${rss:-0} ${venv##*/}"
fi
say "disk $(du -sk "$R" 2>/dev/null | cut -f1) $(du -sk "$SH/venvs" 2>/dev/null | cut -f1)"
cur=$LISTED_CURRENT  # the live release the listing named
[ -n "$cur" ] && [ -f "$R/$cur/.release/watched" ] && say "watched $(cat "$R/$cur/.release/watched")"
[ -n "$cur" ] && grep -F " $cur " "$DEPLOY_TO/revisions.log" 2>/dev/null | grep ' ok$' | tail -n 1 | sed 's/^/@@deployed /'
tail -n 5 "$DEPLOY_TO/revisions.log" 2>/dev/null | sed 's/^/@@log /'
true
