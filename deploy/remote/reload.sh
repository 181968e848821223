# Reload the live release, nothing else.
require_setup
[ -L "$CUR" ] || die 4 "nothing deployed yet on this host; run: fab deploy"
lock_acquire
trap lock_release EXIT
reload_app 0 || die 16 "reload failed"
say "reloaded $(current_id)"
