# A deploy's prepare (and its switch) sent ahead: fab made them from what it saw of this host last time
# (deploy/guesses.py) and sent them before the begin's facts came back, a round trip less. They run only if
# the host is still as fab guessed; else they are read and dropped here, and fab sends the prepare it makes
# from the facts. The same decisions as fab's with the facts: the live release and what it was made of (its
# files: the delta, the hooks), the Python (the venv key), that venv complete (no wheels, no uv to ship), and
# a release id later than every release here (deploy.releases.new_id).
if [ -n "$GUESS_CURRENT" ] && [ "$LISTED_CURRENT" = "$GUESS_CURRENT" ] && [ -n "$GUESS_FINGERPRINT" ] \
  && [ "$FACT_FINGERPRINT" = "$GUESS_FINGERPRINT" ] && [ "$PY_VERSION" = "$GUESS_PYTHON" ] \
  && [ -e "$SH/venvs/$GUESS_VENV/.complete" ] && [[ ${GUESS_ID:0:16} > $LISTED_NEWEST ]]; then
  say "ahead used (the host is as the last deploy from this machine left it)"
else
  say "ahead dropped (the host changed since the last deploy from this machine: sent again)"
  head -c "$GUESS_BYTES" > /dev/null || die 10 "could not read past the prepare sent ahead"
fi
