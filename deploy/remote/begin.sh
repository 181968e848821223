# Phase 1 of a deploy: take the lock and say what the host has.
require_setup
lock_acquire
list_releases
# The live release's manifest: the tool sends only what differs and links the rest.
cur=$(current_id)
[ -n "$cur" ] && [ -f "$R/$cur/.release/manifest" ] && sed 's/^/@@m /' "$R/$cur/.release/manifest"
true
