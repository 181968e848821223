# Point `current` at an earlier finished release and reload: one command.
# This phase changes what is live: once started it finishes even if fab is interrupted or the
# connection drops (a closed stdout must not kill it half-way); its EXIT trap unlocks.
trap '' PIPE HUP
require_setup
lock_acquire
trap lock_release EXIT
cur=$(current_id)
target=""
if [ -n "$TO" ]; then
  [ -d "$R/$TO" ] && [ "$(state_of "$TO")" = finished ] || die 4 "release $TO is not a finished release on this host; see: fab releases"
  [ "$TO" = "$cur" ] && die 4 "release $TO is already live"
  target=$TO
else
  for d in "$R"/*/; do
    [ -d "$d" ] || continue
    id=${d%/}; id=${id##*/}
    [ -n "$cur" ] && ! [[ "$id" < "$cur" ]] && continue
    [ "$(state_of "$id")" = finished ] && target=$id
  done
  [ -n "$target" ] || die 4 "no finished release before ${cur:-the live one} to roll back to"
fi
vhost_install "$R/$target/.release/vhost.conf"
[ "$VHOST_CHANGED" = 1 ] && say "vhost installed"
switch_to "$target"
if ! reload_app "$VHOST_CHANGED"; then
  [ "$VHOST_CHANGED" = 1 ] && vhost_restore
  [ -n "$cur" ] && switch_to "$cur"
  die 16 "reloading Apache failed; $cur is live again"
fi
why=$(http_check "$target") || { log_revision rollback "$target" - unhealthy; die 7 "health check failed after the rollback: $why; $target is live"; }
say "switched $cur $target"
log_revision rollback "$target" "$(cat "$R/$target/.release/revision" 2>/dev/null)" ok
