# Create the layout, install and enable the vhost (from stdin), check python and Apache. Under the lock:
# a deploy may be running; once a release is live only the switch installs the vhost.
mkdir -p "$R" "$SH/venvs" "$SH/run" || die 10 "could not create $DEPLOY_TO (does the deploy user own its parent?)"
lock_acquire
trap lock_release EXIT
touch "$DEPLOY_TO/revisions.log"
logs_dir
# Daemon processes leave ready.<pid> markers here for rolling reloads: only their group may write.
if [ "$MODE" = daemon ]; then
  daemon_identity || die 12 "could not tell the daemon processes' group: set daemon.group"
  RUN_GROUP=$DAEMON_AS_GROUP
  chgrp "$RUN_GROUP" "$SH/run" 2> /dev/null \
    || die 12 "could not give $SH/run to group $RUN_GROUP (the daemon processes' group): add the deploy user to it: sudo usermod -aG $RUN_GROUP $(id -un)"
  chmod 2770 "$SH/run"
else
  chmod 0755 "$SH/run"
fi
for p in ${SHARED_DIRS[@]+"${SHARED_DIRS[@]}"}; do mkdir -p "$SH/$p"; done
for p in ${SHARED_FILES[@]+"${SHARED_FILES[@]}"}; do mkdir -p "$(dirname "$SH/$p")"; done
say "layout $DEPLOY_TO"
"$PYTHON" -c 'import sys' 2>/dev/null || die 11 "python $PYTHON not found on this host (setting python)"
ensure_map || die 10 "could not create $DEPLOY_TO/slots"
# Beside the releases: the candidate test's sudo rule allows Include $DEPLOY_TO/* (README's sudoers snippet).
tmp=$(mktemp "$SH/.vhost-setup.XXXXXX")
trap 'rm -f "$tmp"; lock_release' EXIT
cat > "$tmp"
candidate_test "$tmp" || die 15 "apachectl configtest failed with the vhost (nothing was installed)"
if [ -L "$CUR" ]; then
  say "vhost live (the next deploy installs a changed one)"
else
  vhost_install "$tmp"
  [ "$VHOST_CHANGED" = 1 ] && say "vhost installed"
fi
if [ -n "$APACHE_ENABLE" ]; then
  if [ "$APACHE_SUDO" = 1 ]; then sudo -n "$APACHE_ENABLE" "$APP" > /dev/null; else "$APACHE_ENABLE" "$APP" > /dev/null; fi \
    || die 12 "$APACHE_ENABLE $APP failed"
  say "enabled $APP"
fi
configtest || { [ "${VHOST_CHANGED:-0}" = 1 ] && vhost_restore; die 15 "apachectl configtest failed with the vhost"; }
say "configtest ok"
