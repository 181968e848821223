# After a failed or interrupted deploy: stop our remote step, mark the release failed, free the lock.
if lock_mine; then
  pg=$(cat "$LOCK/remote_pgid" 2>/dev/null)
  [ -n "$pg" ] && [ "$pg" != "$(pgrp)" ] && kill -TERM -- "-$pg" 2>/dev/null
  if [ -n "$ID" ] && [ -d "$R/$ID" ] && [ "$(state_of "$ID")" != finished ] && [ "$ID" != "$(current_id)" ]; then
    if [ "$REMOVE" = 1 ]; then
      remove_release "$ID" && say "removed $ID"
    else
      echo failed > "$R/$ID/.release/state"
      say "marked $ID failed"
    fi
  fi
  lock_release
  say "unlocked"
fi
