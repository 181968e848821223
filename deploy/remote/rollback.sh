# Point `current` at an earlier finished release and reload: one command.
# This phase changes what is live: once started it finishes even if fab is interrupted or the
# connection drops (a closed stdout must not kill it half-way); its EXIT trap unlocks.
trap '' PIPE HUP
require_setup
[ -L "$CUR" ] || die 8 "nothing deployed yet on this host; run: fab deploy"
lock_acquire
trap lock_release EXIT
cur=$(current_id)
if [ -n "$TO" ]; then
  [ -d "$R/$TO" ] && is_finished "$TO" || die 4 "release $TO is not a finished release on this host; see: fab releases"
  [ "$TO" = "$cur" ] && die 4 "release $TO is already live"
  target=$TO
else
  target=$(rollback_target)
  [ -n "$target" ] || die 4 "no earlier finished release to roll back to from $cur (see: fab releases)"
fi
if [ "$SLOTS" -ge 2 ] && [ -L "$SLOTS_DIR/a" ]; then
  # Blue/green: the target is usually still loaded in the idle slot: check it there and flip, no restart.
  # Else it loads in the spare (no restart either, when the spare waits in its venv) or the idle slot.
  read_map
  leave_slot_c "$cur" || die 7 "$SLOT_ERROR; nothing was switched: $cur is live"
  old_live=$LIVE
  vhost_install "$R/$target/.release/vhost.conf"
  [ "$VHOST_CHANGED" = 1 ] && say "vhost installed"
  how=slots
  rc=0
  holds=0
  slot_holds "$IDLE" "$target" && holds=1
  if [ "$VHOST_CHANGED" = 1 ] || [ "$RELOAD" = graceful ]; then
    how="graceful (every slot restarted)"
    TARGET=$IDLE
    [ "$holds" = 1 ] || TARGET=${SPARE/-/$IDLE}
    LOAD=$TARGET
    { point_slot "$TARGET" "$target" && write_map && graceful_slots && stage_slot "$TARGET" "$target"; } \
      || { rc=1; STAGE_ERROR=${STAGE_ERROR:-release $target ${SLOT_ERROR:-did not load in slot $TARGET}}; }
  elif [ "$holds" = 1 ]; then
    TARGET=$IDLE
    say "step restart:none ${EPOCHREALTIME/,/.} ${EPOCHREALTIME/,/.}"
    stage_slot "$TARGET" "$target" || rc=1
  else
    stage_release "$target" || rc=1
  fi
  if [ "$rc" != 0 ]; then
    unstage "$cur"
    [ "$VHOST_CHANGED" = 1 ] && { vhost_restore; graceful_slots || true; }
    log_revision rollback "$target" - failed
    die 7 "$STAGE_ERROR; nothing was switched: $cur is live"
  fi
  flip_to "$TARGET" "$target" || die 9 "could not write $MAP"
  switch_to "$target"
  say "reload $how: $TARGET live, $old_live idle"
  record_rollback "$cur" "$target"
  say "switched $cur $target"
  log_revision rollback "$target" "$(cat "$R/$target/.release/revision" 2>/dev/null)" ok
  exit 0
fi
vhost_install "$R/$target/.release/vhost.conf"
[ "$VHOST_CHANGED" = 1 ] && say "vhost installed"
switch_to "$target"
if ! reload_app "$VHOST_CHANGED"; then
  # Some processes may run the target already: all of them go back to the release that stays live.
  [ "$VHOST_CHANGED" = 1 ] && vhost_restore
  switch_to "$cur"
  ALL_AT_ONCE=1 reload_app "$VHOST_CHANGED" || true
  log_revision rollback "$target" - failed
  die 16 "reloading Apache failed; $cur is live again"
fi
record_rollback "$cur" "$target"
why=$(http_check "$target") || { log_revision rollback "$target" - unhealthy; die 7 "health check failed after the rollback: $why; $target is live"; }
say "switched $cur $target"
log_revision rollback "$target" "$(cat "$R/$target/.release/revision" 2>/dev/null)" ok
