# `fab maintenance on|off`: the page on stdin becomes <deploy_to>/maintenance, which the vhost's rewrite rule
# looks for on every request (503, Retry-After, this page); off removes it. Neither touches the release nor
# reloads Apache: requests already running finish.
require_setup
FLAG="$DEPLOY_TO/maintenance"
if [ "$ACTION" = off ]; then
  if [ -e "$FLAG" ]; then rm -f "$FLAG" || die 23 "could not remove $FLAG"; say "maintenance off"; else say "maintenance was off"; fi
  exit 0
fi
live_vhost="$APACHE_SITES/$VHOST_NAME"
grep -qF "RewriteCond $FLAG -f" "$live_vhost" 2>/dev/null \
  || die 23 "the installed vhost $live_vhost has no maintenance rule (it predates it): deploy once, then fab maintenance on"
{ cat > "$FLAG.tmp" && chmod 0644 "$FLAG.tmp" && mv -f "$FLAG.tmp" "$FLAG"; } || { rm -f "$FLAG.tmp"; die 23 "could not write $FLAG"; }
# As a visitor sees it: a vhost without mod_rewrite (or mod_headers) loaded would ignore the page.
code=$(probe visitor "$HTTP_BASE" "$SERVER_NAME" /)
if [ "$code" != 503 ]; then
  rm -f "$FLAG"
  die 23 "the vhost answered $code, not 503, with the page in place (is mod_rewrite loaded? sudo a2enmod rewrite && sudo $APACHE_CTL graceful); maintenance stays off"
fi
say "maintenance on"
