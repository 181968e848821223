# Reload the live release, nothing else.
# This phase changes what is live: once started it finishes even if fab is interrupted or the
# connection drops (a closed stdout must not kill it half-way); its EXIT trap unlocks.
trap '' PIPE HUP
require_setup
[ -L "$CUR" ] || die 8 "nothing deployed yet on this host; run: fab deploy"
lock_acquire
trap lock_release EXIT
reload_app 0 || die 16 "reload failed"
why=$(http_check "$(current_id)") || die 7 "health check failed after the reload: $why"
say "reloaded $(current_id)"
