# Read-only look at the host for `fab plan` / `deploy --dry-run`: takes no lock, changes nothing.
if [ ! -d "$R" ] || [ ! -d "$SH" ]; then say "setup no"; exit 0; fi
say "setup yes"
[ -f "$LOCK/info" ] && say "lock $(cat "$LOCK/info") now=$(date +%s)"
say_facts || die 11 "python $PYTHON not found on this host (setting python)"
cur=$(current_id)
if [ -n "$cur" ]; then
  v=$(readlink "$R/$cur/.venv" 2>/dev/null) && say "livevenv ${v##*/}"
  [ -r "$R/$cur/.release/app.wsgi" ] && sed 's/^/@@wsgi /' "$R/$cur/.release/app.wsgi"
fi
if [ -r "$APACHE_SITES/$VHOST_NAME" ]; then say "hasvhost"; sed 's/^/@@vhost /' "$APACHE_SITES/$VHOST_NAME"; fi
true
