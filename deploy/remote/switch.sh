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
[ "$(state_of "$ID")" = prepared ] || die 9 "release $ID is not prepared (state: $(state_of "$ID"))"
prev=$(current_id)
if [ "$SLOTS" = 2 ]; then
  # Blue/green: load the new release in the idle slot, check it there, then flip; what is live is
  # touched only by the flip (and by a graceful, when the vhost changed: it restarts both slots).
  install_slot_script "$REL/.release/slot.wsgi" || die 9 "could not install $SLOTS_DIR/app.wsgi"
  live=$(live_slot)
  idle=$(other_slot "$live")
  # The live slot runs what is live; a graceful restarts it, so it must point there (after a deploy with
  # one slot, or a first release, it may not).
  if [ ! -L "$SLOTS_DIR/$live" ] || { [ -n "$prev" ] && [ "$(slot_release "$live")" != "$prev" ]; }; then
    point_slot "$live" "${prev:-$ID}" || die 9 "could not point slot $live"
  fi
  point_slot "$idle" "$ID" || die 9 "could not point slot $idle at $ID"
  [ -f "$MAP" ] || write_map "$live" || die 9 "could not write $MAP"
  vhost_install "$REL/.release/vhost.conf"
  [ "$VHOST_CHANGED" = 1 ] && say "vhost installed"
  t0=$(date +%s.%N)
  staged=0
  how=slots
  if [ "$VHOST_CHANGED" = 1 ] || [ -z "$prev" ] || [ "$RELOAD" = graceful ]; then
    how="graceful (both slots restarted)"
    graceful_slots; rc=$?
  elif [ "$(cat "$REL/.release/staged" 2> /dev/null)" = "$idle" ] \
    && [ "$(slot_marked ready "$idle" "$ID" | wc -l)" -ge "$DAEMON_PROCESSES" ] && [ -z "$(slot_marked failed "$idle")" ]; then
    staged=1 rc=0  # loaded and checked by the prepare phase
  else
    restart_slot "$idle" "$ID"; rc=$?
  fi
  if [ "$rc" != 0 ]; then
    echo failed > "$REL/.release/state"
    # The idle slot keeps the release that failed to load: it serves nobody; the next deploy replaces it.
    if [ "$VHOST_CHANGED" = 1 ]; then vhost_restore; [ -n "$prev" ] && { graceful_slots || true; }; fi
    log_revision deploy "$ID" "$REVISION" failed
    die 7 "release $ID ${SLOT_ERROR:-did not load in slot $idle}; nothing was switched${prev:+: $prev is live}"
  fi
  [ "$HEALTH" = 1 ] && [ "$staged" = 0 ] && say "begin health check (slot $idle, preview)"
  t0=$(date +%s.%N)
  if [ "$staged" = 0 ] && ! why=$(preview_check "$idle" "$ID"); then
    if [ "$NO_ROLLBACK" = 1 ] || [ -z "$prev" ]; then
      write_map "$idle"
      switch_to "$ID"
      echo unhealthy > "$REL/.release/state"
      became_live "$ID"
      log_revision deploy "$ID" "$REVISION" unhealthy
      die 7 "health check failed: $why; release $ID is live (${prev:+--no-rollback}${prev:-nothing to roll back to})"
    fi
    write_map "$live"
    echo failed > "$REL/.release/state"
    if [ "$VHOST_CHANGED" = 1 ]; then vhost_restore; graceful_slots || true; fi
    log_revision deploy "$ID" "$REVISION" failed
    die 7 "health check failed in slot $idle: $why; nothing was switched: $prev is live"
  fi
  [ "$HEALTH" = 1 ] && [ "$staged" = 0 ] && say "step health $(date +%s.%N) $t0"
  write_map "$idle" || die 9 "could not write $MAP"
  switch_to "$ID"
  echo finished > "$REL/.release/state"
  say "reload $how: $idle live, $live idle"
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
t0=$(date +%s.%N)
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
[ "$HEALTH" = 1 ] && say "step health $(date +%s.%N) $t0"
became_live "$ID"
say "switched $prev $ID"
log_revision deploy "$ID" "$REVISION" ok
cleanup "$ID"
