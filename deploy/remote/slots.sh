# Blue/green daemon slots (daemon.slots 2 or 3): WSGIDaemonProcess groups APP-a, APP-b (and APP-c), each
# running the release its link slots/<slot> points at. slots/live.map (a RewriteMap txt: file; Apache
# re-reads it when its mtime changes) names the roles (live, idle, spare), the spare let load, and the
# preview slot and token: requests from the host itself carrying the token reach that slot (the check
# before a flip).
SLOTS_DIR="$DEPLOY_TO/slots"
MAP="$SLOTS_DIR/live.map"
# daemon.slots 3 adds a spare: its processes start Python only and wait (slot.wsgi) until the map lets them
# load; a deploy points it at the release and lets it load, with no restart, so no wait for Apache's
# 1-second respawn tick. After the flip the slot with the previous-but-one release restarts as the spare.
SLOT_NAMES="a b"
[ "${SLOTS:-1}" = 3 ] && SLOT_NAMES="a b c"

map_get() {  # bash builtins only, like the marker functions (lib.sh)
  local k v
  while read -r k v; do [ "$k" = "$1" ] && { echo "$v"; return 0; }; done 2> /dev/null < "$MAP"
  return 0
}
is_slot() { [ -n "$1" ] && case " $SLOT_NAMES " in *" $1 "*) return 0 ;; esac; return 1; }
live_slot() { local s; s=$(map_get live); is_slot "$s" || s=a; echo "$s"; }
slot_release() { local t; t=$(readlink "$SLOTS_DIR/$1" 2> /dev/null) || return 0; echo "${t##*/}"; }

# The roles, from the map: LIVE serves, IDLE keeps the release that was live before (a rollback flips to
# it), SPARE is the third slot (- with two); LOAD, a spare allowed to load; PREVIEW and TOKEN, the route.
read_map() {
  local s
  LIVE=$(live_slot)
  IDLE=$(map_get idle)
  if ! is_slot "$IDLE" || [ "$IDLE" = "$LIVE" ]; then
    for s in $SLOT_NAMES; do [ "$s" != "$LIVE" ] && IDLE=$s && break; done
  fi
  LOAD=$(map_get load)
  is_slot "$LOAD" || LOAD=-
  PREVIEW=$IDLE TOKEN=-
  spare_of
}
spare_of() {
  local s
  SPARE=-
  for s in $SLOT_NAMES; do [ "$s" != "$LIVE" ] && [ "$s" != "$IDLE" ] && SPARE=$s; done
  return 0
}

point_slot() {  # slot release
  { [ -d "$SLOTS_DIR" ] || mkdir -p "$SLOTS_DIR"; } && ln -sfn "../releases/$2" "$SLOTS_DIR/$1.tmp" && mv -T "$SLOTS_DIR/$1.tmp" "$SLOTS_DIR/$1"
}

# A temp file renamed over the map, so that Apache (and a waiting spare) reads the old map or the new one.
write_map() {
  spare_of
  printf 'live %s\nidle %s\nspare %s\nload %s\npreview %s\ntoken %s\n' \
    "$LIVE" "$IDLE" "$SPARE" "${LOAD:--}" "${PREVIEW:-$IDLE}" "${TOKEN:--}" > "$MAP.tmp" && mv -f "$MAP.tmp" "$MAP"
}

install_slot_script() {  # $1 = the rendered stub every slot runs (.release/slot.wsgi)
  same_text "$1" "$SLOTS_DIR/app.wsgi" && return 0
  mkdir -p "$SLOTS_DIR" || return 1
  cp "$1" "$SLOTS_DIR/app.wsgi.tmp" && mv -f "$SLOTS_DIR/app.wsgi.tmp" "$SLOTS_DIR/app.wsgi"
}

# Live processes of slot $2 with a $1 marker (ready|failed|spare|loading), of release $3 when given.
slot_marked() {
  local p
  for p in $(marked_pids "$1"); do
    read_marker "$SH/run/$1.$p"
    [ "$M_GROUP" = "$APP-$2" ] || continue
    [ -z "${3:-}" ] || [ "$M_RELEASE" = "$3" ] || continue
    echo "$p"
  done
}

# Live processes of slot $1 with any of the markers named after it.
slot_pids() {
  local slot=$1 kind
  shift
  for kind; do slot_marked "$kind" "$slot"; done
}

# Slot $1 has release $2 loaded in DAEMON_PROCESSES processes, and none failed.
slot_holds() {
  [ "$(slot_release "$1")" = "$2" ] && [ "$(slot_marked ready "$1" "$2" | wc -l)" -ge "$DAEMON_PROCESSES" ] \
    && [ -z "$(slot_marked failed "$1")" ]
}

# Wait until DAEMON_PROCESSES processes of slot $1, none of the pids in $3, have loaded release $2. One
# that failed to load it ends the wait at once with the app's own error.
await_slot() {
  local slot=$1 rel=$2 old=" ${3:-} " since=${AFTER_TICKS:-0} p f n deadline
  deadline=$(($EPOCHSECONDS + ROLL_TIMEOUT))
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
      read_marker "$SH/run/ready.$p"
      # After a graceful only its new processes count (one of the old generation may load, then go).
      [ "$M_STARTED" -ge "$since" ] 2> /dev/null || continue
      if [ "$M_RELEASE" = "$rel" ]; then n=$((n + 1)); continue; fi
      # A process that loaded another release: it started before the slot was pointed at $rel (an Apache
      # graceful meanwhile: logrotate, certbot, a test) and was not among those signalled. Restart it too,
      # else the wait runs into its timeout (seen in CI: "not loaded by slot b in 80s").
      say "slot $slot: process $p runs $M_RELEASE, not $rel: restarting it"
      signal_daemon "$p" && old="$old$p "
    done
    [ "$n" -ge "$DAEMON_PROCESSES" ] && return 0
    if [ "$EPOCHSECONDS" -ge "$deadline" ]; then
      SLOT_ERROR="was not loaded by slot $slot in ${ROLL_TIMEOUT}s"
      say "reload failed slots: release $rel $SLOT_ERROR"
      tail -n 12 "$DEPLOY_TO/logs/error.log" 2> /dev/null | sed 's/^/  | /' >&2
      ls -l "$SH/run" 2> /dev/null | sed 's/^/  | run: /' >&2
      ps -eo pid,ppid,etimes,args 2> /dev/null | grep -F "wsgi:$APP" | grep -v grep | sed 's/^/  | ps: /' >&2
      return 1
    fi
    sleep 0.01  # a spare that imported ahead loads in ~20 ms
  done
}

# Restart every process of slot $1 at once (it serves nobody): signal them (KICKED: their pids, '' when
# none ran) and return at once (loaded_slot waits); Apache respawns them on its next 1-second tick, meanwhile the caller may do other work.
kick_slot() {
  local slot=$1 p deadline
  KICK_T0=${EPOCHREALTIME/,/.}
  # Just after a graceful (logrotate, certbot, an earlier step) the slot's processes may still be loading:
  # give them a few seconds to say ready or failed before concluding that none runs.
  deadline=$(($EPOCHSECONDS + 10))
  while :; do
    KICKED=$(echo $(slot_pids "$slot" ready failed spare loading))
    [ -n "$KICKED" ] || [ "$EPOCHSECONDS" -ge "$deadline" ] && break
    sleep 0.1
  done
  for p in $(slot_marked failed "$slot"); do rm -f "$SH/run/failed.$p"; done
  for p in $KICKED; do signal_daemon "$p" || { say "reload failed signal $p"; return 1; }; done
}

# The second half: wait until slot $1's new processes have loaded release $2 (after kick_slot, or after
# a spare was let load: LOADING=spare).
loaded_slot() {
  local slot=$1 rel=$2
  if [ "${LOADING:-}" = spare ]; then
    # A spare that has not loaded in SPARE_TIMEOUT seconds (a process stuck while importing) is not
    # waited for any longer: its processes restart, and the new ones load the release at start.
    if ! ROLL_TIMEOUT=${SPARE_TIMEOUT:-20} await_slot "$slot" "$rel" 2> /dev/null; then
      [ -n "$(slot_marked failed "$slot" "$rel")" ] && { await_slot "$slot" "$rel"; return 1; }
      say "slot $slot: the spare did not load $rel in ${SPARE_TIMEOUT:-20}s: restarting it"
      kick_slot "$slot" && await_slot "$slot" "$rel" "$KICKED" || return 1
    fi
  elif [ -z "$KICKED" ]; then
    # No process of the slot has loaded anything: Apache restarts them on its own (a slot whose release
    # was gone cannot start Python), and now that the link is good they load the release by themselves.
    ROLL_TIMEOUT=15 await_slot "$slot" "$rel" || {
      SLOT_ERROR="could not be loaded: no process of slot $slot runs (fab reload --strategy graceful starts them)"
      return 1
    }
  else
    await_slot "$slot" "$rel" "$KICKED" || return 1
  fi
  say "step restart:$slot ${EPOCHREALTIME/,/.} $KICK_T0"
}

# The environment release $1's WSGI script sets, but its id and settings module (bash builtins only): what a
# spare pointed at that release set before importing ahead (slot.wsgi's _preimport).
env_lines() {
  local l
  while IFS= read -r l; do
    case $l in
      'os.environ["DEPLOY_RELEASE"]'* | 'os.environ["DJANGO_SETTINGS_MODULE"]'*) ;;
      'os.environ['*) printf '%s\n' "$l" ;;
    esac
  done < "$R/$1/.release/app.wsgi"
}

# The spare's DAEMON_PROCESSES processes wait, with Python started in venv $1, having imported ahead under
# the environment release $2 sets; they get a moment when they are still starting (a deploy right after
# the last one restarted the spare).
spare_waits() {
  local want=$1 rel=$2 p n bad deadline envs=
  SPARE_WHY="is not running"
  [ "$SPARE" != - ] || return 1
  deadline=$(($EPOCHSECONDS + 3))
  while :; do
    n=0 bad=0
    for p in $(slot_marked spare "$SPARE"); do
      read_marker "$SH/run/spare.$p"
      if [ "$M_VENV" != "$want" ]; then SPARE_WHY="waits in another venv" bad=1
      elif [ "$M_RELEASE" != "$rel" ] && [ "$envs" != "$M_RELEASE" ] \
        && ! { [ -f "$R/$M_RELEASE/.release/app.wsgi" ] && [ "$(env_lines "$M_RELEASE")" = "$(env_lines "$rel")" ]; }; then
        SPARE_WHY="imported ahead under another environment" bad=1
      else envs=$M_RELEASE n=$((n + 1)); fi
    done
    if [ "$bad" = 0 ]; then
      # Loaded processes, unless the last flip signalled them (restarting: they will wait in a moment).
      for p in $(slot_pids "$SPARE" ready failed loading); do
        grep -qxF "$p" "$SLOTS_DIR/$SPARE.restarting" 2> /dev/null || { SPARE_WHY="has a release loaded" bad=1; }
      done
    fi
    [ "$bad" = 1 ] && return 1
    [ "$n" -ge "$DAEMON_PROCESSES" ] && return 0
    [ "$EPOCHSECONDS" -ge "$deadline" ] && return 1
    sleep 0.05
  done
}

# Start loading release $1 in a slot that serves nobody and return (loaded_slot waits): TARGET is that
# slot. The spare, when its processes wait in the release's venv: it loads with no restart. Else the
# spare (the idle slot, with two) restarts.
load_release() {
  local rel=$1
  TARGET=$SPARE
  [ "$TARGET" = - ] && TARGET=$IDLE
  point_slot "$TARGET" "$rel" || { SLOT_ERROR="could not point slot $TARGET at $rel"; return 1; }
  if [ "$TARGET" = "$SPARE" ]; then
    if spare_waits "$(readlink -f "$R/$rel/.venv")" "$rel"; then
      LOADING=spare KICK_T0=${EPOCHREALTIME/,/.}
      LOAD=$TARGET
      write_map || { SLOT_ERROR="could not write $MAP"; return 1; }
      return 0
    fi
    say "slot $TARGET: the spare ${SPARE_WHY:-does not wait}: restarting it"
  fi
  # Signalled first, let load after: a waiting process must not load the release in the wrong venv.
  LOADING=restart
  kick_slot "$TARGET" || { SLOT_ERROR="could not be loaded in slot $TARGET: signalling its processes failed"; return 1; }
  LOAD=$TARGET
  write_map || { SLOT_ERROR="could not write $MAP"; return 1; }
}

# Slot $1 (holding release $2, checked) serves; the one that served keeps its release loaded, for a
# rollback. With a spare, the slot left over restarts, to wait as the next spare in $2's venv.
flip_to() {
  [ "$1" = "$LIVE" ] && return 0
  IDLE=$LIVE LIVE=$1 LOAD=- TOKEN=- PREVIEW=
  write_map || return 1
  respawn_spare "$2"
}

# The spare (pointed at release $1, for its venv) restarts if its processes loaded a release; not waited for.
respawn_spare() {
  local p pids
  [ "$SPARE" != - ] || return 0
  point_slot "$SPARE" "$1" || return 1
  # Loading ones too (a failed load of a sibling called the deploy off): marked loading, they are found.
  pids=$(echo $(slot_pids "$SPARE" ready failed loading))
  [ -n "$pids" ] || return 0
  for p in $(slot_marked failed "$SPARE"); do rm -f "$SH/run/failed.$p"; done
  printf '%s\n' $pids > "$SLOTS_DIR/$SPARE.restarting"
  for p in $pids; do signal_daemon "$p" || true; done
  say "slot $SPARE restarts, to wait as the spare"
}

# A staged release that is not flipped to: the map names the live slot again; a spare that loaded it
# restarts, to wait again (pointed at live release $1).
unstage() {
  LOAD=- TOKEN=- PREVIEW=
  write_map || return 1
  [ -n "$1" ] && respawn_spare "$1"
  return 0
}

# daemon.slots went from 3 to 2 while slot c serves: the vhost about to be installed has no slot c. First
# the live release $1 moves to slot a or b, loaded, checked and flipped to under the vhost still installed.
leave_slot_c() {
  local names=$SLOT_NAMES
  [ "$(map_get live)" = c ] && [ "$names" = "a b" ] || return 0
  # Only while the installed vhost runs slot c (after daemon.slots 1, no slot runs: the graceful starts them).
  grep -q "WSGIDaemonProcess $APP-c " "$APACHE_SITES/$VHOST_NAME" 2> /dev/null || return 0
  say "daemon.slots 2: slot c serves, and goes: $1 moves to another slot first"
  SLOT_NAMES="a b c"
  read_map
  stage_release "$1" && flip_to "$TARGET" "$1"
  local rc=$?
  SLOT_NAMES=$names
  [ "$rc" = 0 ] || { SLOT_ERROR=${STAGE_ERROR:-could not move off slot c}; return 1; }
  read_map
}

# Apache re-reads its config (changed vhost, first release, --strategy graceful): every process of every
# slot restarts; wait until each slot but a waiting spare has loaded the release it points at.
graceful_slots() {
  # AFTER_TICKS: seen by await_slot (bash's dynamic scope), gone when this returns.
  local old s AFTER_TICKS=0
  old=$(marked_pids ready)
  rm -f "$SH"/run/failed.* 2> /dev/null
  configtest || { say "reload failed graceful"; return 1; }
  AFTER_TICKS=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", $1 * hz }' /proc/uptime)
  ctl graceful > /dev/null 2>&1 || { say "reload failed graceful"; return 1; }
  for s in $SLOT_NAMES; do
    [ "$s" = "$SPARE" ] && [ "$LOAD" != "$s" ] && continue
    # Seen in CI, rarely: after a first graceful no process of a slot ever says anything. One more graceful
    # (harmless: nothing of this app serves yet, or it restarts the same releases) has always started them.
    if ! ROLL_TIMEOUT=20 await_slot "$s" "$(slot_release "$s")" "$old"; then
      say "slot $s not loaded 20 s after the graceful: one more graceful"
      old=$(marked_pids ready)
      ctl graceful > /dev/null 2>&1 || { say "reload failed graceful"; return 1; }
      await_slot "$s" "$(slot_release "$s")" "$old" || return 1
    fi
  done
  say "reload graceful (every slot restarted)"
}

# The health check and warm-up through Apache on the preview route: they reach slot $1, which must
# answer as release $2. The token is new for every check and leaves the map with the next write.
preview_check() {
  PREVIEW=$1 TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  write_map || { echo "could not write $MAP"; return 1; }
  PREVIEW_TOKEN=$TOKEN http_check "$2"
}

# Check release $2, loaded in slot $1 (after load_release or kick_slot: $3 = loading, wait for it first),
# on the preview route, before any flip (a deploy's prepare or switch, a reload, a rollback). A failure
# leaves STAGE_ERROR, one line that says why, and a map naming the live slot again.
stage_slot() {
  local why t0
  if [ "${3:-}" = loading ]; then
    loaded_slot "$1" "$2" || { STAGE_ERROR="release $2 ${SLOT_ERROR:-did not load in slot $1}"; return 1; }
  fi
  [ "$HEALTH" = 1 ] && say "begin health check (slot $1, preview)"
  t0=${EPOCHREALTIME/,/.}
  why=$(preview_check "$1" "$2") || { STAGE_ERROR="health check failed in slot $1: $why"; return 1; }
  [ "$HEALTH" = 1 ] && say "step health ${EPOCHREALTIME/,/.} $t0"
  return 0
}

# Load release $1 in a slot that serves nobody and check it there (reload, rollback --to): TARGET.
stage_release() {
  load_release "$1" || { STAGE_ERROR="release $1 ${SLOT_ERROR:-did not load}"; return 1; }
  stage_slot "$TARGET" "$1" loading
}

# The map must exist before Apache reads a vhost naming it (setup, and the candidate test of a prepare on
# a host set up before slots); a new map serves slot a.
ensure_map() {
  [ "$SLOTS" -ge 2 ] || return 0
  [ -d "$SLOTS_DIR" ] || mkdir -p "$SLOTS_DIR" || return 1
  [ -f "$MAP" ] && [ -n "$(map_get preview)" ] && return 0
  read_map && write_map
}

# Remove release $1; a slot that serves nobody pointing at it is pointed at the live release first (a slot
# whose release is gone cannot even start Python: it would never load the next one).
remove_release() {
  local s
  if [ -d "$SLOTS_DIR" ]; then
    for s in a b c; do
      [ "$(slot_release "$s")" = "$1" ] && [ -n "$(current_id)" ] && [ "$(current_id)" != "$1" ] && point_slot "$s" "$(current_id)"
    done
  fi
  rm -rf "${R:?}/$1"
}
