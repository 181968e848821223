# Create the layout, install and enable the vhost (from stdin), check python and Apache.
mkdir -p "$R" "$SH/venvs" "$SH/run" || die 10 "could not create $DEPLOY_TO (does the deploy user own its parent?)"
touch "$DEPLOY_TO/revisions.log"
# Daemon processes (maybe another user) leave ready.<pid> markers here for rolling reloads.
chmod 1777 "$SH/run"
for p in ${SHARED_DIRS[@]+"${SHARED_DIRS[@]}"}; do mkdir -p "$SH/$p"; done
for p in ${SHARED_FILES[@]+"${SHARED_FILES[@]}"}; do mkdir -p "$(dirname "$SH/$p")"; done
say "layout $DEPLOY_TO"
"$PYTHON" -c 'import sys' 2>/dev/null || die 11 "python $PYTHON not found on this host (setting python)"
tmp=$(mktemp)
cat > "$tmp"
vhost_install "$tmp"
[ "$VHOST_CHANGED" = 1 ] && say "vhost installed"
rm -f "$tmp"
if [ -n "$APACHE_ENABLE" ]; then
  if [ "$APACHE_SUDO" = 1 ]; then sudo -n "$APACHE_ENABLE" "$APP" > /dev/null; else "$APACHE_ENABLE" "$APP" > /dev/null; fi \
    || die 12 "$APACHE_ENABLE $APP failed"
  say "enabled $APP"
fi
configtest || { [ "$VHOST_CHANGED" = 1 ] && vhost_restore; die 15 "apachectl configtest failed with the vhost"; }
say "configtest ok"
