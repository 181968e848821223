# Reload the live release, nothing else.
# This phase changes what is live: once started it finishes even if fab is interrupted or the
# connection drops (a closed stdout must not kill it half-way); its EXIT trap unlocks.
trap '' PIPE HUP
require_setup
[ -L "$CUR" ] || die 8 "nothing deployed yet on this host; run: fab deploy"
lock_acquire
trap lock_release EXIT
if [ "$SLOTS" -ge 2 ] && [ -L "$SLOTS_DIR/a" ]; then
  # Blue/green: load the live release afresh in a slot that serves nobody (the spare, when there is one),
  # check it there, flip. Nothing that serves is restarted (--strategy graceful restarts every slot instead).
  cur=$(current_id)
  read_map
  if [ "$RELOAD" = graceful ]; then
    graceful_slots || die 16 "reload failed: ${SLOT_ERROR:-graceful}"
  else
    old_live=$LIVE
    stage_release "$cur" || { unstage "$cur"; die 7 "$STAGE_ERROR; nothing was switched"; }
    flip_to "$TARGET" "$cur" || die 9 "could not write $MAP"
    say "reload slots: $TARGET live, $old_live idle"
  fi
  why=$(http_check "$cur") || die 7 "health check failed after the reload: $why"
  say "reloaded $cur"
  exit 0
fi
reload_app 0 || die 16 "reload failed"
why=$(http_check "$(current_id)") || die 7 "health check failed after the reload: $why"
say "reloaded $(current_id)"
