# Remove a lock left behind by a deploy that was killed; refused while its step still runs on the host.
if [ -d "$LOCK" ]; then
  running=$(lock_running)
  say_lock "$running"
  [ "$running" = 1 ] && [ "$FORCE" != 1 ] && exit 3
  rm -rf "$LOCK"
  say "unlocked"
else
  say "nolock"
fi
