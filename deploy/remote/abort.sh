# After a failed or interrupted deploy: stop our remote step, mark the release failed (or remove it), free the lock.
give_up "$ID" "$REMOVE"
