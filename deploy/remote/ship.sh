# `fab watch` (never production): put saved files (archive on stdin: files/..., ctl/removed, ctl/manifest)
# into the LIVE release and reload. One command per batch of saved files.
# Ctrl-C on `fab watch` closes the connection mid-batch: finish the batch and unlock rather than die.
trap '' PIPE HUP
require_setup
lock_acquire
trap 'rm -rf "${tmp:-}"; lock_release' EXIT
cur=$(current_id)
[ -n "$cur" ] || die 4 "nothing is live on this host yet; run fab deploy first"
REL="$R/$cur"
tmp=$(mktemp -d "$R/.ship.XXXXXX")
tar -xzf - -C "$tmp" --no-same-owner 2> "$tmp.log" || { tail_of "$tmp.log"; rm -f "$tmp.log"; die 10 "unpacking the saved files failed"; }
rm -f "$tmp.log"
old=$(daemon_pids)
n=0
if [ -d "$tmp/files" ]; then
  # A rename, not a write: the old file may be hard-linked into earlier releases, which must not change.
  while IFS= read -r -d '' f; do
    f=${f#./}
    mkdir -p "$(dirname "$REL/$f")" && mv -f "$tmp/files/$f" "$REL/$f" || die 10 "could not replace $f in $REL"
    n=$((n + 1))
  done < <(cd "$tmp/files" && find . \( -type f -o -type l \) -print0)
fi
m=0
if [ -s "$tmp/ctl/removed" ]; then
  while IFS= read -r -d '' f; do rm -f "${REL:?}/$f" && m=$((m + 1)); done < "$tmp/ctl/removed"
fi
[ -f "$tmp/ctl/manifest" ] && mv -f "$tmp/ctl/manifest" "$REL/.release/manifest"
# The release is no longer what its fingerprint names: a deploy of that commit must not be called unchanged
# (nor a prepare sent ahead from the guess of it be taken: ahead.sh).
rm -f "$REL/.release/fingerprint"
date -u +%Y-%m-%dT%H:%M:%SZ > "$REL/.release/watched"
say "shipped $n $m $cur"
t0=${EPOCHREALTIME/,/.}
# With the code-change monitor (dev: true) every process restarts by itself on the new manifest:
# wait for that (bounded), so that the next request gets the new code; otherwise reload as configured.
if [ "$MONITOR" = 1 ] && [ -n "$old" ] && await_replaced "$(printf '%s\n' $old | wc -l)" "$old" > /dev/null; then
  say "reload monitor"
else
  reload_app 0 || die 16 "reloading after the shipped files failed"
fi
say "step reload ${EPOCHREALTIME/,/.} $t0"
