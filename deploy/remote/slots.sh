# Blue/green daemon slots (daemon.slots 2): two WSGIDaemonProcess groups, APP-a and APP-b, each running
# the release its link slots/<slot> points at. slots/live.map (a RewriteMap txt: file; Apache re-reads
# it when its mtime changes) names the slot that serves, the idle one, and a preview token: requests
# from the host itself carrying the token reach the idle slot (the check before a flip).
SLOTS_DIR="$DEPLOY_TO/slots"
MAP="$SLOTS_DIR/live.map"

live_slot() { local s; s=$(sed -n 's/^live //p' "$MAP" 2> /dev/null | head -n 1); echo "${s:-a}"; }
other_slot() { if [ "$1" = a ]; then echo b; else echo a; fi; }
slot_release() { local t; t=$(readlink "$SLOTS_DIR/$1" 2> /dev/null) || return 0; echo "${t##*/}"; }

point_slot() {  # slot release
  mkdir -p "$SLOTS_DIR" && ln -sfn "../releases/$2" "$SLOTS_DIR/$1.tmp" && mv -T "$SLOTS_DIR/$1.tmp" "$SLOTS_DIR/$1"
}

# The flip: a temp file renamed over the map, so that Apache reads the old map or the new one, never half.
write_map() {  # live-slot [token]
  printf 'live %s\nidle %s\ntoken %s\n' "$1" "$(other_slot "$1")" "${2:--}" > "$MAP.tmp" && mv -f "$MAP.tmp" "$MAP"
}

install_slot_script() {  # $1 = the rendered stub both slots run (.release/slot.wsgi)
  mkdir -p "$SLOTS_DIR" || return 1
  cmp -s "$1" "$SLOTS_DIR/app.wsgi" && return 0
  cp "$1" "$SLOTS_DIR/app.wsgi.tmp" && mv -f "$SLOTS_DIR/app.wsgi.tmp" "$SLOTS_DIR/app.wsgi"
}

# Live processes of slot $2 with a $1 marker (ready|failed), of release $3 when given.
slot_marked() {
  local p f
  for p in $(marked_pids "$1"); do
    f="$SH/run/$1.$p"
    grep -qxF "group $APP-$2" "$f" 2> /dev/null || continue
    [ -z "${3:-}" ] || grep -qxF "release $3" "$f" 2> /dev/null || continue
    echo "$p"
  done
}

# Wait until DAEMON_PROCESSES processes of slot $1, none of the pids in $3, have loaded release $2. One
# that failed to load it ends the wait at once with the app's own error.
await_slot() {
  local slot=$1 rel=$2 old=" ${3:-} " p f n deadline
  deadline=$(($(date +%s) + ROLL_TIMEOUT))
  while :; do
    for p in $(slot_marked failed "$slot" "$rel"); do
      f="$SH/run/failed.$p"
      SLOT_ERROR="could not be loaded in slot $slot (daemon process $p): $(sed -n 's/^error //p' "$f" | tail -n 1)"
      say "reload failed slots: release $rel $SLOT_ERROR"
      sed -n 's/^  */  | /p' "$f" | tail -n 8 >&2
      return 1
    done
    n=0
    for p in $(slot_marked ready "$slot"); do
      [[ "$old" == *" $p "* ]] && continue
      if grep -qxF "release $rel" "$SH/run/ready.$p" 2> /dev/null; then n=$((n + 1)); continue; fi
      # A process that loaded another release: it started before the slot was pointed at $rel (an Apache
      # graceful meanwhile: logrotate, certbot, a test) and was not among those signalled. Restart it too,
      # else the wait runs into its timeout (seen in CI: "not loaded by slot b in 80s").
      say "slot $slot: process $p runs $(sed -n 's/^release //p' "$SH/run/ready.$p" 2> /dev/null), not $rel: restarting it"
      signal_daemon "$p" && old="$old$p "
    done
    [ "$n" -ge "$DAEMON_PROCESSES" ] && return 0
    if [ "$(date +%s)" -ge "$deadline" ]; then
      SLOT_ERROR="was not loaded by slot $slot in ${ROLL_TIMEOUT}s"
      say "reload failed slots: release $rel $SLOT_ERROR"
      tail -n 12 "$DEPLOY_TO/logs/error.log" 2> /dev/null | sed 's/^/  | /' >&2
      ls -l "$SH/run" 2> /dev/null | sed 's/^/  | run: /' >&2
      ps -eo pid,ppid,etimes,args 2> /dev/null | grep -F "wsgi:$APP" | grep -v grep | sed 's/^/  | ps: /' >&2
      return 1
    fi
    sleep 0.05
  done
}

# Restart every process of slot $1 at once (it serves nobody) and wait for release $2 to be loaded.
restart_slot() { kick_slot "$1" && loaded_slot "$1" "$2"; }

# The first half of restart_slot: signal slot $1's processes (KICKED: their pids, '' when none ran) and
# return at once; Apache respawns them on its next 1-second tick, meanwhile the caller may do other work.
kick_slot() {
  local slot=$1 p deadline
  KICK_T0=$(date +%s.%N)
  # Just after a graceful (logrotate, certbot, an earlier step) the slot's processes may still be loading:
  # give them a few seconds to say ready or failed before concluding that none runs.
  deadline=$(($(date +%s) + 10))
  while :; do
    KICKED=$(echo $(slot_marked ready "$slot") $(slot_marked failed "$slot"))
    [ -n "$KICKED" ] || [ "$(date +%s)" -ge "$deadline" ] && break
    sleep 0.1
  done
  for p in $(slot_marked failed "$slot"); do rm -f "$SH/run/failed.$p"; done
  for p in $KICKED; do signal_daemon "$p" || { say "reload failed signal $p"; return 1; }; done
}

# The second half: wait until slot $1's new processes have loaded release $2.
loaded_slot() {
  local slot=$1 rel=$2
  if [ -z "$KICKED" ]; then
    # No process of the slot has loaded anything: Apache restarts them on its own (a slot whose release
    # was gone cannot start Python), and now that the link is good they load the release by themselves.
    ROLL_TIMEOUT=15 await_slot "$slot" "$rel" || {
      SLOT_ERROR="could not be loaded: no process of slot $slot runs (fab reload --strategy graceful starts them)"
      return 1
    }
  else
    await_slot "$slot" "$rel" "$KICKED" || return 1
  fi
  say "step restart:$slot $(date +%s.%N) $KICK_T0"
}

# Apache re-reads its config (changed vhost, first release, --strategy graceful): every process of both
# slots restarts; wait until each slot has loaded the release it points at.
graceful_slots() {
  local old s
  old=$(marked_pids ready)
  rm -f "$SH"/run/failed.* 2> /dev/null
  configtest || { say "reload failed graceful"; return 1; }
  ctl graceful > /dev/null 2>&1 || { say "reload failed graceful"; return 1; }
  for s in a b; do
    # Seen in CI, rarely: after a first graceful no process of a slot ever says anything. One more graceful
    # (harmless: nothing of this app serves yet, or it restarts the same releases) has always started them.
    if ! ROLL_TIMEOUT=20 await_slot "$s" "$(slot_release "$s")" "$old"; then
      say "slot $s not loaded 20 s after the graceful: one more graceful"
      old=$(marked_pids ready)
      ctl graceful > /dev/null 2>&1 || { say "reload failed graceful"; return 1; }
      await_slot "$s" "$(slot_release "$s")" "$old" || return 1
    fi
  done
  say "reload graceful (both slots)"
}

# The health check and warm-up through Apache on the preview route: they reach slot $1, which must
# answer as release $2. The token is new for every check and leaves the map with the next write.
preview_check() {
  local token
  token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  write_map "$(live_slot)" "$token" || { echo "could not write $MAP"; return 1; }
  PREVIEW_TOKEN=$token http_check "$2"
}

# Load release $2 in idle slot $1 and check it there, on the preview route, before any flip (a deploy's
# prepare or switch, a reload, a rollback). $3 says how far the load is: '' (restart the slot now), kicked
# (kick_slot ran: wait for it), loaded (it is loaded). A failure leaves STAGE_ERROR, one line that says
# why, and a map naming the live slot again.
stage_slot() {
  local why t0
  case "${3:-}" in
    loaded) ;;
    kicked) loaded_slot "$1" "$2" || { STAGE_ERROR="release $2 ${SLOT_ERROR:-did not load in slot $1}"; return 1; } ;;
    *) restart_slot "$1" "$2" || { STAGE_ERROR="release $2 ${SLOT_ERROR:-did not load in slot $1}"; return 1; } ;;
  esac
  [ "$HEALTH" = 1 ] && say "begin health check (slot $1, preview)"
  t0=$(date +%s.%N)
  why=$(preview_check "$1" "$2") || { write_map "$(live_slot)"; STAGE_ERROR="health check failed in slot $1: $why"; return 1; }
  [ "$HEALTH" = 1 ] && say "step health $(date +%s.%N) $t0"
  return 0
}

# The map must exist before Apache reads a vhost naming it (setup, and the candidate test of a prepare on
# a host set up before slots); a new map serves slot a.
ensure_map() {
  [ "$SLOTS" = 2 ] || return 0
  mkdir -p "$SLOTS_DIR" && { [ -f "$MAP" ] || write_map a; }
}

# Remove release $1; an idle slot pointing at it is pointed at the live release first (a slot whose
# release is gone cannot even start Python: it would never load the next one).
remove_release() {
  local s
  if [ -d "$SLOTS_DIR" ]; then
    for s in a b; do
      [ "$(slot_release "$s")" = "$1" ] && [ -n "$(current_id)" ] && [ "$(current_id)" != "$1" ] && point_slot "$s" "$(current_id)"
    done
  fi
  rm -rf "${R:?}/$1"
}
