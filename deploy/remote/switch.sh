# Phase 3 of a deploy: switch `current`, reload, log, clean up, unlock. The only phase that changes what is live.
# This phase changes what is live: once started it finishes even if fab is interrupted or the
# connection drops (a closed stdout must not kill it half-way); its EXIT trap unlocks.
trap '' PIPE HUP
REL="$R/$ID"
require_lock
# Whatever happens here, this deploy's lock ends with this command.
trap lock_release EXIT
pgrp > "$LOCK/remote_pgid"
[ "$(state_of "$ID")" = prepared ] || die 9 "release $ID is not prepared (state: $(state_of "$ID"))"
prev=$(current_id)
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
