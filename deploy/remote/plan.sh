# Read-only look at the host for `fab plan` / `deploy --dry-run`: takes no lock, changes nothing.
if [ ! -d "$R" ] || [ ! -d "$SH" ]; then say "setup no"; exit 0; fi
say "setup yes"
say_lock
say_facts || die 11 "python $PYTHON not found on this host (setting python)"
cur=$LISTED_CURRENT  # the live release the listing named
if [ -n "$cur" ]; then
  v=$(readlink "$R/$cur/.venv" 2>/dev/null) && say "livevenv ${v##*/}"
  [ -r "$R/$cur/.release/app.wsgi" ] && sed 's/^/@@wsgi /' "$R/$cur/.release/app.wsgi"
fi
if [ "$SLOTS" -ge 2 ] && [ -L "$SLOTS_DIR/a" ]; then
  read_map
  say "liveslot $LIVE"
  say "nextslot ${SPARE/-/$IDLE}$([ "$SPARE" != - ] && echo " spare")"
fi
# Without the <IfDefine> lines the switch wraps it in (vhost_wrapped): the rendered vhost, as installed.
if [ -r "$APACHE_SITES/$VHOST_NAME" ]; then
  say "hasvhost"
  sed -e "1{/^<IfDefine !$CHECK_DEFINE>\$/d}" -e '${/^<\/IfDefine>$/d}' "$APACHE_SITES/$VHOST_NAME" | sed 's/^/@@vhost /'
fi
true
