# Phase 3 of a deploy: switch `current`, reload, log, clean up, unlock. The only phase that changes what is live.
# This phase changes what is live: once started it finishes even if fab is interrupted or the
# connection drops (a closed stdout must not kill it half-way); its EXIT trap unlocks.
trap '' PIPE HUP
REL="$R/$ID"
require_lock
# Claimed once: an abort (give_up) that comes first calls the switch off, one that comes later leaves it be.
mkdir "$LOCK/switching" 2> /dev/null || die 21 "this deploy was called off before its switch; nothing was switched"
# Whatever happens here, this deploy's lock ends with this command.
trap lock_release EXIT
pgrp > "$LOCK/remote_pgid"
read_state "$ID"
[ "$STATE" = prepared ] || die 9 "release $ID is not prepared (state: $STATE)"
read_current; prev=$CURRENT_ID
if [ "$SLOTS" -ge 2 ]; then
  # Blue/green: load the new release in a slot that serves nobody, check it there, then flip; what is live
  # is touched only by the flip (and by a graceful, when the vhost changed: it restarts every slot).
  install_slot_script "$REL/.release/slot.wsgi" || die 9 "could not install $SLOTS_DIR/app.wsgi"
  read_map
  if [ -n "$prev" ] && ! leave_slot_c "$prev"; then
    echo failed > "$REL/.release/state"
    die 7 "$SLOT_ERROR; nothing was switched: $prev is live"
  fi
  # The live slot runs what is live; a graceful restarts it, so it must point there (after a deploy with
  # one slot, or a first release, it may not). A slot with no link could not even start Python.
  if [ ! -L "$SLOTS_DIR/$LIVE" ] || { [ -n "$prev" ] && [ "$(slot_release "$LIVE")" != "$prev" ]; }; then
    point_slot "$LIVE" "${prev:-$ID}" || die 9 "could not point slot $LIVE"
  fi
  for s in $SLOT_NAMES; do [ -L "$SLOTS_DIR/$s" ] || point_slot "$s" "${prev:-$ID}" || die 9 "could not point slot $s"; done
  [ -f "$MAP" ] || write_map || die 9 "could not write $MAP"
  vhost_install "$REL/.release/vhost.conf"
  [ "$VHOST_CHANGED" = 1 ] && say "vhost installed"
  t0=${EPOCHREALTIME/,/.}
  staged=$(cat "$REL/.release/staged" 2> /dev/null)
  how=slots
  if [ "$VHOST_CHANGED" = 1 ] || [ -z "$prev" ] || [ "$RELOAD" = graceful ]; then
    how="graceful (every slot restarted)"
    staged=0 TARGET=${SPARE/-/$IDLE} LOAD=${SPARE/-/$IDLE}
    { point_slot "$TARGET" "$ID" && write_map; } || die 9 "could not point slot $TARGET at $ID"
    graceful_slots; rc=$?
  elif is_slot "$staged" && [ "$staged" != "$LIVE" ] && slot_holds "$staged" "$ID"; then
    TARGET=$staged staged=1 rc=0  # loaded and checked by the prepare phase
  else
    staged=0
    load_release "$ID" && loaded_slot "$TARGET" "$ID"; rc=$?
  fi
  if [ "$rc" != 0 ]; then
    echo failed > "$REL/.release/state"
    # A spare that loaded the release restarts to wait again; with two slots the idle one keeps it (it
    # serves nobody; the next deploy replaces it).
    unstage "$prev"
    if [ "$VHOST_CHANGED" = 1 ]; then vhost_restore; [ -n "$prev" ] && { graceful_slots || true; }; fi
    log_revision deploy "$ID" "$REVISION" failed
    die 7 "release $ID ${SLOT_ERROR:-did not load in slot $TARGET}; nothing was switched${prev:+: $prev is live}"
  fi
  [ "$HEALTH" = 1 ] && [ "$staged" = 0 ] && say "begin health check (slot $TARGET, preview)"
  t0=${EPOCHREALTIME/,/.}
  if [ "$staged" = 0 ] && ! why=$(preview_check "$TARGET" "$ID"); then
    if [ "$NO_ROLLBACK" = 1 ] || [ -z "$prev" ]; then
      flip_to "$TARGET" "$ID"
      switch_to "$ID"
      echo unhealthy > "$REL/.release/state"
      became_live "$ID"
      log_revision deploy "$ID" "$REVISION" unhealthy
      die 7 "health check failed: $why; release $ID is live (${prev:+--no-rollback}${prev:-nothing to roll back to})"
    fi
    unstage "$prev"
    echo failed > "$REL/.release/state"
    if [ "$VHOST_CHANGED" = 1 ]; then vhost_restore; graceful_slots || true; fi
    log_revision deploy "$ID" "$REVISION" failed
    die 7 "health check failed in slot $TARGET: $why; nothing was switched: $prev is live"
  fi
  [ "$HEALTH" = 1 ] && [ "$staged" = 0 ] && say "step health ${EPOCHREALTIME/,/.} $t0"
  old_live=$LIVE
  flip_to "$TARGET" "$ID" || die 9 "could not write $MAP"
  switch_to "$ID"
  echo finished > "$REL/.release/state"
  say "reload $how: $TARGET live, $old_live idle"
  became_live "$ID"
  say "switched $prev $ID"
  log_revision deploy "$ID" "$REVISION" ok
  cleanup "$ID"
  exit 0
fi
vhost_install "$REL/.release/vhost.conf"
[ "$VHOST_CHANGED" = 1 ] && say "vhost installed"
switch_to "$ID"
echo finished > "$REL/.release/state"
need_restart=$VHOST_CHANGED
[ -z "$prev" ] && need_restart=1
if ! reload_app "$need_restart"; then
  echo failed > "$REL/.release/state"
  [ "$VHOST_CHANGED" = 1 ] && vhost_restore
  # Some processes may run the new release already: every one goes back to the previous release.
  if [ -n "$prev" ]; then switch_to "$prev"; ALL_AT_ONCE=1 reload_app "$VHOST_CHANGED" || true; fi
  log_revision deploy "$ID" "$REVISION" failed
  die 16 "reloading Apache failed; ${prev:-nothing} is live again"
fi
t0=${EPOCHREALTIME/,/.}
[ "$HEALTH" = 1 ] && say "begin health check"
if ! why=$(http_check "$ID"); then
  if [ "$NO_ROLLBACK" = 1 ] || [ -z "$prev" ]; then
    # Live, but never a rollback target: its state says it failed its check.
    echo unhealthy > "$REL/.release/state"
    became_live "$ID"
    log_revision deploy "$ID" "$REVISION" unhealthy
    die 7 "health check failed: $why; release $ID stays live (${prev:+--no-rollback}${prev:-nothing to roll back to})"
  fi
  echo failed > "$REL/.release/state"
  [ "$VHOST_CHANGED" = 1 ] && vhost_restore
  switch_to "$prev"
  ALL_AT_ONCE=1 reload_app "$VHOST_CHANGED" || true
  log_revision deploy "$ID" "$REVISION" rolled-back
  die 7 "health check failed: $why; rolled back: $prev is live again"
fi
[ "$HEALTH" = 1 ] && say "step health ${EPOCHREALTIME/,/.} $t0"
became_live "$ID"
say "switched $prev $ID"
log_revision deploy "$ID" "$REVISION" ok
cleanup "$ID"
# The next deploy's import check, kept warm in the venv that is live now.
warm_start
