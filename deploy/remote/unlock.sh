# Remove a lock left behind by a deploy that was killed.
if [ -d "$LOCK" ]; then
  say "lock $(cat "$LOCK/info" 2>/dev/null) now=$(date +%s)"
  lock_release
  say "unlocked"
else
  say "nolock"
fi
