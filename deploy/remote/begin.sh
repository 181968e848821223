# Phase 1 of a deploy: take the lock and say what the host has.
require_setup
# The site is down on purpose (fab maintenance on): a deploy now was most likely not meant to happen.
[ -e "$DEPLOY_TO/maintenance" ] && [ "$KEEP_MAINTENANCE" != 1 ] \
  && die 22 "in maintenance since $(date -u -r "$DEPLOY_TO/maintenance" +%Y-%m-%dT%H:%M:%SZ) (fab maintenance on): deploy refused; fab maintenance off first, or deploy with --keep-maintenance"
lock_acquire
# The import check starts now, importing the installed modules while the release is on its way.
[ "$SERVE" = 1 ] && [ "$IMPORT_AHEAD" = 1 ] && import_ahead
say_facts || { lock_release; die 11 "python $PYTHON not found on this host (setting python)"; }
# A deploy goes on in this same command (prepare, switch: see serve).
if [ "$SERVE" = 1 ]; then serve; fi
