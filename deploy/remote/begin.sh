# Phase 1 of a deploy: take the lock and say what the host has.
require_setup
lock_acquire
list_releases
pyver=$("$PYTHON" -c 'import sys; print(sys.version)' 2>/dev/null) || { lock_release; die 11 "python $PYTHON not found on this host (setting python)"; }
say "python $pyver"
for v in "$SH"/venvs/*/.complete; do [ -e "$v" ] && v=${v%/.complete} && say "venv ${v##*/}"; done
# The live release's manifest: the tool sends only what differs and links the rest.
cur=$(current_id)
[ -n "$cur" ] && [ -f "$R/$cur/.release/manifest" ] && sed 's/^/@@m /' "$R/$cur/.release/manifest"
true
